"""The Open Inference Protocol over HTTP/REST (``--http-port``), on the server's own asyncio loop (aiohttp).

Routes: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{loss}``, ``/v2/models/{loss}/ready``,
``POST /v2/models/{loss}/infer`` (each model route also under ``/versions/{v}``), and ``GET /v2/openapi.json``.
Tensors travel as JSON ``data`` or with Triton's binary tensor extension (a JSON header of
``Inference-Header-Content-Length`` bytes, then the raw bytes of each binary tensor in order).

Infer and metadata calls go through the loss servicer's one path, as lossd.v1 and the V2 gRPC service do:
the same validation, limits, metrics (their own method labels, ``Http*``), tracing and request ids. Every
error, the HTTP layer's own included, is ``{"error": "..."}`` with the status that matches its gRPC code
(lossd.server.errors.HTTP_STATUS).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from lossd.losses import LossdError
from lossd.server.errors import MAX_MESSAGE_CHARS, RpcFailure, clip, to_failure
from lossd.server.inference import EXTENSIONS, SERVER_NAME, InferenceModels, InferReply
from lossd.server.logs import REQUEST_ID
from lossd.server.openapi import openapi_document
from lossd.server.rest_codec import (
    HEADER_LENGTH,
    Received,
    dumps,
    encode_reply,
    error_body,
    model_metadata_json,
    parse_infer_body,
    read_body,
)
from lossd.server.security import token_matches
from lossd.server.servicer import LossServicer

log = logging.getLogger("lossd.server")

SERVICE = "inference.http"  # the span service name of REST calls
MAX_URL_BYTES = 8192
# aiohttp's own line and header limits, far above MAX_URL_BYTES so that lossd words the refusal of a long URL;
# past them, its parser's refusal is answered in JSON as well (_JsonErrorHandler).
_PARSER_LIMIT = 1 << 20
_HEALTH = ("/v2/health/live", "/v2/health/ready")


class _Refused(Exception):
    """A call refused by the servicer's one error path, carrying its failure (status, message, violations)."""

    def __init__(self, failure: RpcFailure, request_id: str) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.request_id = request_id


class _HttpCall:
    """What the servicer needs of a gRPC context, for one HTTP request: its headers as metadata (request id,
    traceparent), the request id to echo, and refusal by exception."""

    def __init__(self, request: web.Request) -> None:
        self._metadata = tuple((k.lower(), v) for k, v in request.headers.items())
        self.request_id: str | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None  # HTTP carries no deadline (Triton's timeout parameter is ignored)

    def set_trailing_metadata(self, metadata: Any) -> None:
        for key, value in metadata:
            if key == REQUEST_ID:
                self.request_id = value

    def refuse(self, failure: RpcFailure, request_id: str) -> None:
        raise _Refused(failure, request_id)


def _json_error(status: int, message: str, request_id: str | None = None,
                violations: tuple[tuple[str, str], ...] = ()) -> web.Response:
    response = web.json_response(error_body(clip(message, MAX_MESSAGE_CHARS), violations), status=status, dumps=dumps)
    if request_id:
        response.headers[REQUEST_ID] = request_id
    return response


class RestFront:
    """The REST front of one server; ``await start(host, port)``, then ``await stop()``."""

    def __init__(self, servicer: LossServicer, models: InferenceModels, *, max_body_bytes: int,
                 token_digests: tuple[bytes, ...] | None = None, exempt_health: bool = False,
                 on_reject: Callable[[str], None] = lambda reason: None) -> None:
        self._servicer = servicer
        self._models = models
        self._digests = token_digests
        self._exempt_health = exempt_health
        self._on_reject = on_reject
        self._max_body = max_body_bytes
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        """The aiohttp application: routes and the middleware that words every refusal as JSON."""
        app = web.Application(client_max_size=self._max_body, middlewares=[self._guard])
        model = "/v2/models/{model}"
        versioned = "/v2/models/{model}/versions/{version}"
        app.add_routes([
            web.get("/v2", self._server_metadata),
            web.get("/v2/health/live", self._live),
            web.get("/v2/health/ready", self._ready),
            web.get("/v2/openapi.json", self._openapi),
            *(route for base in (model, versioned) for route in (
                web.get(base, self._model_metadata),
                web.get(base + "/ready", self._model_ready),
                web.post(base + "/infer", self._infer),
            )),
        ])
        return app

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Serve on ``host:port`` (0: a free port); returns the bound port."""
        runner = _Runner(self.app(), access_log=None, handle_signals=False, max_line_size=_PARSER_LIMIT,
                         max_field_size=_PARSER_LIMIT)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_port=True)
        await site.start()
        self._runner = runner
        sockets = runner.addresses
        self.port = int(sockets[0][1]) if sockets else port
        return self.port

    async def stop(self) -> None:
        """Close the listening socket and the open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        """Limits on the URL, bearer tokens, and every error as JSON with its status."""
        if len(request.raw_path) > MAX_URL_BYTES:
            return _json_error(414, f"the URL is {len(request.raw_path)} bytes long; this server takes at most "
                                    f"{MAX_URL_BYTES}")
        if self._digests is not None and not (self._exempt_health and request.path in _HEALTH):
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if not (scheme.lower() == "bearer" and token and token_matches(token.strip(), self._digests)):
                self._on_reject("unauthenticated")
                response = _json_error(401, "missing or unknown bearer token (send 'Authorization: Bearer "
                                            "<token>')")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        length = request.content_length
        if length is not None and length > self._max_body:
            return _json_error(413, f"the request body is {length} bytes; this server takes at most "
                                    f"{self._max_body} (max_message_mb)")
        try:
            return await handler(request)
        except _Refused as refused:
            f = refused.failure
            return _json_error(f.http_status, f.message, refused.request_id, f.violations)
        except LossdError as exc:  # refused while the body was read, before the call began
            f = to_failure(exc)
            return _json_error(f.http_status, f.message, None, f.violations)
        except web.HTTPRequestEntityTooLarge:
            return _json_error(413, f"the request body is over this server's limit of {self._max_body} bytes "
                                    f"(max_message_mb)")
        except web.HTTPMethodNotAllowed as exc:
            return _json_error(405, f"{request.method} is not allowed on {clip(request.path, 200)}; allowed: "
                                    f"{', '.join(sorted(exc.allowed_methods))}")
        except web.HTTPNotFound:
            return _json_error(404, f"no such path: {clip(request.path, 200)} (GET /v2/openapi.json lists "
                                    f"the routes)")
        except web.HTTPException as exc:
            return _json_error(exc.status, exc.reason)

    async def _call(self, request: web.Request, method: str, loss: str | None, received: Any,
                    work: Callable[[Any], tuple[Any, int]],
                    batched: Callable[[Any], Awaitable[tuple[Any, int]]] | None = None) -> tuple[Any, str | None]:
        call = _HttpCall(request)
        result = await self._servicer.serve(method, loss, received, call, work, batched, service=SERVICE)
        return result, call.request_id

    async def _server_metadata(self, request: web.Request) -> web.Response:
        def work(_: Any) -> tuple[dict[str, Any], int]:
            return {"name": SERVER_NAME, "version": self._models.server_version, "extensions": list(EXTENSIONS)}, 0
        body, request_id = await self._call(request, "HttpServerMetadata", None, Received(b"", None, "", ""), work)
        return _json(body, request_id)

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True}, dumps=dumps)

    async def _ready(self, request: web.Request) -> web.Response:
        if self._servicer.draining:
            return _json_error(503, "the server is shutting down; retry on another server")
        return web.json_response({"ready": True}, dumps=dumps)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(self._models.server_version), dumps=dumps)

    async def _model_metadata(self, request: web.Request) -> web.Response:
        name, version = request.match_info["model"], request.match_info.get("version", "")

        def work(_: Any) -> tuple[dict[str, Any], int]:
            return model_metadata_json(self._models, name, version), 0
        body, request_id = await self._call(request, "HttpModelMetadata", name, Received(b"", None, name, version),
                                            work)
        return _json(body, request_id)

    async def _model_ready(self, request: web.Request) -> web.Response:
        name, version = request.match_info["model"], request.match_info.get("version", "")

        def work(_: Any) -> tuple[dict[str, Any], int]:
            return {"name": self._models.spec(name, version).name, "ready": True}, 0
        body, request_id = await self._call(request, "HttpModelReady", name, Received(b"", None, name, version),
                                            work)
        return _json(body, request_id)

    async def _infer(self, request: web.Request) -> web.Response:
        name, version = request.match_info["model"], request.match_info.get("version", "")
        received = Received(await read_body(request), request.headers.get(HEADER_LENGTH), name, version)
        binary: dict[str, bool] = {}

        def work(r: Received) -> tuple[InferReply, int]:
            return self._models.infer(parse_infer_body(r, binary))

        async def batched(r: Received) -> tuple[InferReply, int]:
            return await self._models.infer_batched(parse_infer_body(r, binary))
        reply, request_id = await self._call(request, "HttpModelInfer", name, received, work, batched)
        return encode_reply(reply, binary, request_id)


class _JsonErrorHandler(RequestHandler):  # type: ignore[misc]
    """aiohttp's connection handler, answering what its HTTP parser refuses (a malformed request line, an
    oversized header) in JSON like every other refusal, instead of text."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs, and raises if a reply was already sent
        if isinstance(exc, LineTooLong):
            status, text = 414, f"the request line or a header is over {_PARSER_LIMIT} bytes"
        elif status >= 500:
            text = "internal error; the server logged the details"
        else:
            text = f"malformed HTTP request: {clip(message or HTTPStatus(status).phrase, 300)}"
        response = web.json_response(error_body(text), status=status, dumps=dumps)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # the same server, making the handler above for each connection
        return server


def _json(body: dict[str, Any], request_id: str | None) -> web.Response:
    response = web.json_response(body, dumps=dumps)
    if request_id:
        response.headers[REQUEST_ID] = request_id
    return response


def tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """The REST front's TLS, from the gRPC port's files; with ``client_ca``, client certificates required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
