#!/usr/bin/env sh
# lossd over the Open Inference Protocol's REST front, with nothing but curl.
# Start a server with it:  lossd serve --http-port 8000    (or: docker compose up)
# Then:                    LOSSD_HTTP=localhost:8000 sh examples/curl.sh
set -eu
LOSSD_HTTP="${LOSSD_HTTP:-localhost:8000}"
call() { curl -sS --fail-with-body "$@"; echo; }

echo "# ready"
call "$LOSSD_HTTP/v2/health/ready"

echo "# mse of [1, 2, 3, 4] against zeros"
call "$LOSSD_HTTP/v2/models/mse/infer" -H 'Content-Type: application/json' -d '{
  "inputs": [{"name": "input",  "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]},
             {"name": "target", "shape": [4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}'

echo "# cross_entropy and its gradient with respect to the logits"
call "$LOSSD_HTTP/v2/models/cross_entropy/infer" -H 'Content-Type: application/json' -d '{
  "inputs": [{"name": "input",  "shape": [2, 3], "datatype": "FP32", "data": [[2, 0.5, -1], [0.1, 0.2, 0.3]]},
             {"name": "target", "shape": [2],    "datatype": "INT64", "data": [0, 2]}],
  "parameters": {"label_smoothing": 0.1},
  "outputs": [{"name": "loss"}, {"name": "grad_input"}]}'

echo "# huber with delta 0.5, unreduced"
call "$LOSSD_HTTP/v2/models/huber/infer" -H 'Content-Type: application/json' -d '{
  "inputs": [{"name": "input",  "shape": [3], "datatype": "FP64", "data": [0.1, 1.0, 3.0]},
             {"name": "target", "shape": [3], "datatype": "FP64", "data": [0.0, 0.0, 0.0]}],
  "parameters": {"delta": 0.5, "reduction": "none"}}'

echo "# a refusal: JSON naming the field, with the HTTP status of its gRPC code (400 here)"
curl -sS -o /dev/stdout -w '\nHTTP %{http_code}\n' "$LOSSD_HTTP/v2/models/mse/infer" -d '{
  "inputs": [{"name": "input",  "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]},
             {"name": "target", "shape": [3], "datatype": "FP32", "data": [0, 0, 0]}]}'
