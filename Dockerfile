# syntax=docker/dockerfile:1
# lossd image: the wheel built in one stage, installed on a PyTorch runtime in the next.
# BASE_IMAGE must provide Python >= 3.10 and torch >= 2.4; the default carries CUDA.
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos protos
COPY losses losses
COPY server server
COPY client client
COPY bench bench
COPY cli cli
COPY scoring scoring
COPY integrations integrations
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${BASE_IMAGE}
COPY --from=build /wheels /tmp/wheels
# torch comes with the base image; pip only adds what is missing (the server extra; pyarrow for `lossd score`).
RUN pip install --no-cache-dir "$(ls /tmp/wheels/*.whl)[server,score]" && rm -rf /tmp/wheels \
    && useradd --create-home --uid 10001 lossd
USER lossd
ENV LOSSD_HOST=0.0.0.0 \
    LOSSD_PORT=50051 \
    LOSSD_METRICS_HOST=0.0.0.0 \
    LOSSD_METRICS_PORT=8909 \
    PYTHONUNBUFFERED=1
# 8000: the REST front, when LOSSD_HTTP_PORT=8000 turns it on (compose and the manifests do).
EXPOSE 50051 8909 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD lossd health --address "127.0.0.1:${LOSSD_PORT}" || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["lossd", "serve"]
