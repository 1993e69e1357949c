"""The Open Inference Protocol over HTTP/REST (--http-port): a real aiohttp server on loopback, called with the
standard library's HTTP client. Answers equal lossd.v1's; every refusal is JSON with the status of its code."""

from __future__ import annotations

import http.client as httpclient
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from certs import Authority, make_authority
from test_metrics import sample, scrape
from test_security import _slow_registry

from lossd.client import LossClient
from lossd.server import BackgroundServer, ServerSettings
from lossd.server.errors import HTTP_STATUS, MAX_MESSAGE_CHARS, MAX_VIOLATIONS, ServerBusyError, to_failure
from lossd.server.rest_codec import HEADER_LENGTH

ROOT = Path(__file__).resolve().parent.parent
X = [1.0, 2.0, 3.0, 4.0]


def call(address: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         tls: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; (status, headers, body). A dict or list body is sent as JSON."""
    host, port = address.rsplit(":", 1)
    conn = (httpclient.HTTPSConnection(host, int(port), context=tls, timeout=30) if tls else
            httpclient.HTTPConnection(host, int(port), timeout=30))
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    try:
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def infer_body(inputs: dict[str, tuple[list[Any] | np.ndarray, str]], outputs: tuple[str, ...] = (),
               **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [{"name": n, "shape": list(np.shape(d)), "datatype": t,
                                        "data": np.asarray(d).reshape(-1).tolist()} for n, (d, t) in inputs.items()]}
    if outputs:
        body["outputs"] = [{"name": n} for n in outputs]
    if parameters:
        body["parameters"] = parameters
    return body


@pytest.fixture(scope="module")
def http(server: BackgroundServer) -> str:
    assert server.http_address is not None
    return server.http_address


def _json(address: str, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    status, _, data = call(address, method, path, body, **kw)
    return status, json.loads(data)


def test_health_and_server_metadata(http: str, server: BackgroundServer) -> None:
    assert _json(http, "GET", "/v2/health/live") == (200, {"live": True})
    assert _json(http, "GET", "/v2/health/ready") == (200, {"ready": True})
    status, meta = _json(http, "GET", "/v2")
    assert status == 200 and (meta["name"], meta["extensions"]) == ("lossd", ["binary_tensor_data", "parameters"])


def test_model_metadata_lists_roles_and_what_v2_cannot_say_in_parameters(http: str) -> None:
    """The V2 fields, and per tensor every datatype it takes, its shape rule and whether it is optional."""
    status, meta = _json(http, "GET", "/v2/models/cross_entropy")
    assert status == 200 and meta["platform"] == "lossd_torch" and meta["versions"] == ["1"]
    target = meta["inputs"][1]
    assert (target["name"], target["datatype"], target["shape"]) == ("target", "INT64", [-1])
    assert "FP32" in target["parameters"]["datatypes"] and "class indices" in target["parameters"]["shape_rule"]
    assert [o["name"] for o in meta["outputs"]] == ["loss", "grad_input", "grad_target", "hess_input", "hess_target"]
    assert "label_smoothing" in [p["name"] for p in meta["parameters"]["params"]]


def test_model_ready_answers_for_an_alias_and_404_for_an_unknown_name(http: str) -> None:
    assert _json(http, "GET", "/v2/models/MSELoss/ready") == (200, {"name": "mse", "ready": True})
    assert _json(http, "GET", "/v2/models/mse/versions/1/ready")[0] == 200
    status, body = _json(http, "GET", "/v2/models/nope/ready")
    assert status == 404 and "unknown loss 'nope'" in body["error"]


def test_json_infer_equals_lossd_compute_and_answers_in_json(http: str, client: LossClient) -> None:
    status, headers, data = call(http, "POST", "/v2/models/mse/infer",
                                 infer_body({"input": (X, "FP32"), "target": ([0.0] * 4, "FP32")}, ("loss",)))
    assert status == 200 and headers["content-type"].startswith("application/json")
    reply = json.loads(data)
    expected = client.compute("mse", input=np.array(X, np.float32), target=np.zeros(4, np.float32))
    assert reply["outputs"] == [{"name": "loss", "datatype": "FP32", "shape": [], "data": [expected]}]
    assert reply["model_name"] == "mse" and reply["parameters"]["reduction"] == "mean"


def test_nested_json_data_is_read_row_major(http: str, client: LossClient) -> None:
    logits = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
    body = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": logits},
                       {"name": "target", "shape": [2], "datatype": "INT64", "data": [0, 2]}]}
    status, reply = _json(http, "POST", "/v2/models/cross_entropy/infer", body)
    expected = client.compute("cross_entropy", input=np.array(logits, np.float32), target=np.array([0, 2]))
    assert status == 200 and reply["outputs"][0]["data"] == [pytest.approx(expected, rel=1e-7)]


def test_json_gradient_equals_lossd_gradient(http: str, client: LossClient) -> None:
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], np.float32)
    body = infer_body({"input": (logits, "FP32"), "target": ([0, 2], "INT64")}, ("loss", "grad_input"),
                      label_smoothing=0.1)
    status, reply = _json(http, "POST", "/v2/models/cross_entropy/infer", body)
    _, grads = client.gradient("cross_entropy", input=logits, target=np.array([0, 2]), label_smoothing=0.1)
    assert status == 200 and [o["name"] for o in reply["outputs"]] == ["loss", "grad_input"]
    assert np.array(reply["outputs"][1]["data"], np.float32).tobytes() == grads["input"].reshape(-1).tobytes()
    assert reply["outputs"][1]["shape"] == [2, 3]


@pytest.mark.parametrize("wrt", [["input", "target"], '["input", "target"]'])
def test_wrt_is_a_json_list_or_a_json_string(http: str, wrt: Any) -> None:
    body = infer_body({"input": ([1.0, 2.0], "FP32"), "target": ([0.5, 0.0], "FP32")}, ("grad_target",), wrt=wrt)
    status, reply = _json(http, "POST", "/v2/models/mse/infer", body)
    assert status == 200 and reply["outputs"][0]["data"] == [-0.5, -2.0]


def _binary_body(inputs: dict[str, tuple[np.ndarray, str]], outputs: tuple[str, ...]) -> tuple[bytes, str]:
    header = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": t,
                          "parameters": {"binary_data_size": a.nbytes}} for n, (a, t) in inputs.items()],
              "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs]}
    head = json.dumps(header).encode()
    return head + b"".join(a.tobytes() for a, _ in inputs.values()), str(len(head))


def test_binary_tensor_extension_both_ways(http: str, client: LossClient) -> None:
    """Inputs after a JSON header of Inference-Header-Content-Length bytes; binary outputs the same way back,
    equal to lossd.v1's to the bit."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(50_000).astype(np.float32), rng.standard_normal(50_000).astype(np.float32)
    body, length = _binary_body({"input": (x, "FP32"), "target": (y, "FP32")}, ("loss", "grad_input"))
    status, headers, data = call(http, "POST", "/v2/models/mse/infer", body,
                                 {"Content-Type": "application/octet-stream", HEADER_LENGTH: length})
    assert status == 200, data[:300]
    size = int(headers[HEADER_LENGTH.lower()])
    reply = json.loads(data[:size])
    sizes = [o["parameters"]["binary_data_size"] for o in reply["outputs"]]
    loss = np.frombuffer(data[size:size + sizes[0]], np.float32)
    grad = np.frombuffer(data[size + sizes[0]:], np.float32)
    expected, grads = client.gradient("mse", input=x, target=y)
    assert sizes == [4, 200_000] and loss.tobytes() == np.float32(expected).tobytes()
    assert grad.tobytes() == grads["input"].tobytes()


def test_binary_data_output_asks_for_every_output_as_binary(http: str) -> None:
    body = infer_body({"input": ([1.0, 3.0], "FP32"), "target": ([0.0, 0.0], "FP32")}, binary_data_output=True)
    status, headers, data = call(http, "POST", "/v2/models/mse/infer", body)
    size = int(headers[HEADER_LENGTH.lower()])
    assert status == 200 and np.frombuffer(data[size:], np.float32).tolist() == [5.0]


def _error(http: str, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, dict[str, Any]]:
    status, headers, data = call(http, method, path, body, **kw)
    assert headers["content-type"].startswith("application/json"), data[:200]
    return status, json.loads(data)


def test_malformed_json_is_400_naming_the_body(http: str) -> None:
    status, body = _error(http, "POST", "/v2/models/mse/infer", b"{not json")
    assert status == 400 and body["details"][0]["field"] == "body" and "not valid JSON" in body["error"]


def test_a_refusal_has_lossd_v1s_message_and_fields(http: str, client: LossClient) -> None:
    """A shape mismatch: 400, lossd.v1's INVALID_ARGUMENT message, the violated field in details."""
    status, body = _error(http, "POST", "/v2/models/mse/infer",
                          infer_body({"input": (X, "FP32"), "target": ([0.0] * 3, "FP32")}))
    assert status == 400
    assert body["error"] == "invalid request: inputs[target]: shape (3,) must equal the shape of input (4,)"
    assert [d["field"] for d in body["details"]] == ["inputs[target]"]


def test_an_unknown_model_is_404(http: str) -> None:
    status, body = _error(http, "POST", "/v2/models/msee/infer", infer_body({"input": (X, "FP32")}))
    assert status == 404 and "did you mean 'mse'" in body["error"]


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/v3/nothing", 404), ("DELETE", "/v2", 405),
                                                         ("GET", "/v2/models/mse/infer", 405)])
def test_http_layer_refusals_are_json(http: str, method: str, path: str, status: int) -> None:
    got, body = _error(http, method, path)
    assert got == status and body["error"]


def test_an_oversized_url_is_414_in_json(http: str) -> None:
    """A 100,000-character model name: the URL is refused before anything is looked up, in JSON, briefly."""
    status, headers, data = call(http, "GET", "/v2/models/" + "x" * 100_000)
    assert status == 414 and headers["content-type"].startswith("application/json")
    assert len(data) < 200 and "at most 8192" in json.loads(data)["error"]


def test_a_long_model_name_is_404_with_the_name_clipped(http: str) -> None:
    status, body = _error(http, "POST", "/v2/models/" + "y" * 5000 + "/infer", infer_body({"input": (X, "FP32")}))
    assert status == 404 and len(body["error"]) <= MAX_MESSAGE_CHARS and "more characters" in body["error"]


def test_a_thousand_unknown_roles_list_at_most_100_details(http: str) -> None:
    inputs = {f"role_{i:04d}": ([1.0], "FP32") for i in range(1000)}
    inputs["input"] = inputs["target"] = ([1.0], "FP32")
    status, body = _error(http, "POST", "/v2/models/mse/infer", infer_body(inputs))
    assert status == 400 and len(body["details"]) <= MAX_VIOLATIONS
    assert body["details"][-1] == {"field": "...", "description": f"and {1000 - (len(body['details']) - 1)} more "
                                                                  f"violations"}


def test_a_malformed_request_line_is_400_in_json(http: str) -> None:
    """What aiohttp's own parser refuses is JSON too."""
    host, port = http.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"NOT A REQUEST LINE\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 400 ", head) and b"application/json" in head
    assert json.loads(body)["error"].startswith("malformed HTTP request")


def test_request_ids_are_echoed(http: str) -> None:
    body = infer_body({"input": (X, "FP32"), "target": (X, "FP32")})
    _, headers, _ = call(http, "POST", "/v2/models/mae/infer", body, {"x-request-id": "rest-42"})
    assert headers["x-request-id"] == "rest-42"
    _, headers, _ = call(http, "POST", "/v2/models/nope/infer", body)
    assert re.fullmatch(r"[0-9a-f]+", headers["x-request-id"])  # a refusal always carries one


def test_rest_calls_are_counted_under_their_own_method_label(http: str, server: BackgroundServer) -> None:
    port = server.server.metrics_port
    labels = {"method": "HttpModelInfer", "loss": "mae", "code": "OK"}
    before = sample(scrape(port), "lossd_requests_total", **labels)
    call(http, "POST", "/v2/models/mae/infer", infer_body({"input": (X, "FP32"), "target": (X, "FP32")}))
    assert sample(scrape(port), "lossd_requests_total", **labels) - before == 1


def test_the_openapi_document_lists_every_route(http: str) -> None:
    status, doc = _json(http, "GET", "/v2/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{model}",
                                 "/v2/models/{model}/ready", "/v2/models/{model}/infer"}


def test_the_http_status_of_each_code_is_the_readmes_table() -> None:
    """The README's error table gives, beside each gRPC code, the status lossd.server.errors.HTTP_STATUS maps
    it to (429 for a busy server)."""
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([0-9][0-9, or]*) \|", (ROOT / "README.md").read_text(), re.MULTILINE))
    for code, status in HTTP_STATUS.items():
        if code.name in ("OK",):
            continue
        assert code.name in rows, f"README error table lacks {code.name}"
        assert str(status) in rows[code.name]
    assert "429" in rows["RESOURCE_EXHAUSTED"] and to_failure(ServerBusyError("busy")).http_status == 429


@pytest.fixture(scope="module")
def small_server() -> Iterator[BackgroundServer]:
    """A REST front with a 1 MiB message limit."""
    settings = ServerSettings(port=0, metrics_port=0, http_port=0, device="cpu", max_message_mb=1)
    with BackgroundServer(settings) as srv:
        yield srv


def test_an_oversized_body_is_413_in_json(small_server: BackgroundServer) -> None:
    assert small_server.http_address
    status, body = _error(small_server.http_address, "POST", "/v2/models/mse/infer", b"x" * (2 << 20))
    assert status == 413 and "at most 1048576" in body["error"]


def test_a_busy_server_is_429_and_a_cut_off_computation_504() -> None:
    release, entered = threading.Event(), threading.Event()
    settings = ServerSettings(port=0, metrics_port=0, http_port=0, device="cpu", inline_bytes=0, max_in_flight=1,
                              max_deadline_seconds=1.0)
    body = infer_body({"input": ([3.0], "FP32"), "target": ([1.0], "FP32")})
    with BackgroundServer(settings, registry=_slow_registry(release, entered)) as srv:
        assert srv.http_address
        answers: list[int] = []
        first = threading.Thread(target=lambda: answers.append(call(srv.http_address, "POST",  # type: ignore[arg-type]
                                                                    "/v2/models/slow/infer", body)[0]))
        first.start()
        assert entered.wait(timeout=20)
        status, refused = _error(srv.http_address, "POST", "/v2/models/slow/infer", body)
        first.join(timeout=20)
        release.set()
        assert status == 429 and "busy" in refused["error"]
        assert answers == [504]


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return make_authority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_server(authority: Authority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """TLS with client certificates required, and bearer tokens (health exempt)."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text("s3cret\n")
    settings = ServerSettings(port=0, metrics_port=0, http_port=0, device="cpu",
                              tls_cert=authority.path("server.pem"), tls_key=authority.path("server.key"),
                              tls_client_ca=authority.path("ca.pem"), auth_tokens_file=tokens, auth_exempt_health=True)
    with BackgroundServer(settings) as srv:
        yield srv


def _tls(authority: Authority, with_certificate: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(authority.path("ca.pem")))
    if with_certificate:
        context.load_cert_chain(authority.path("client.pem"), authority.path("client.key"))
    return context


def test_mtls_and_a_token_compute(secure_server: BackgroundServer, authority: Authority) -> None:
    """A real TLS handshake with a client certificate, and a bearer token: the loss comes back."""
    assert secure_server.http_address
    status, reply = _json(secure_server.http_address, "POST", "/v2/models/mae/infer",
                          infer_body({"input": ([3.0], "FP32"), "target": ([1.0], "FP32")}),
                          headers={"Authorization": "Bearer s3cret"}, tls=_tls(authority))
    assert status == 200 and reply["outputs"][0]["data"] == [2.0]


def test_a_missing_token_is_401_in_json_and_health_is_exempt(secure_server: BackgroundServer,
                                                              authority: Authority) -> None:
    assert secure_server.http_address
    status, headers, data = call(secure_server.http_address, "POST", "/v2/models/mae/infer",
                                 infer_body({"input": ([3.0], "FP32")}), tls=_tls(authority))
    assert status == 401 and headers["www-authenticate"] == "Bearer" and "bearer token" in json.loads(data)["error"]
    assert _json(secure_server.http_address, "GET", "/v2/health/ready", tls=_tls(authority))[0] == 200


def test_a_client_without_a_certificate_fails_the_handshake(secure_server: BackgroundServer,
                                                             authority: Authority) -> None:
    assert secure_server.http_address
    with pytest.raises((ssl.SSLError, ConnectionError)):
        call(secure_server.http_address, "GET", "/v2/health/live", tls=_tls(authority, with_certificate=False))


def test_a_gzip_compressed_body_is_read_inflated(http: str) -> None:
    """Content-Encoding gzip (tritonclient's request_compression_algorithm): the inflated JSON is read."""
    import gzip

    body = gzip.compress(json.dumps(infer_body({"input": ([3.0], "FP32"), "target": ([1.0], "FP32")})).encode())
    status, reply = _json(http, "POST", "/v2/models/mae/infer", body, headers={"Content-Encoding": "gzip"})
    assert status == 200 and reply["outputs"][0]["data"] == [2.0]
