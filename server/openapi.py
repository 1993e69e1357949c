"""The OpenAPI 3.1 document of the REST front (served at ``GET /v2/openapi.json``)."""

from __future__ import annotations

from typing import Any

_TENSOR = {
    "type": "object", "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string", "description": "A role of the loss (inputs) or loss / grad_<role> (outputs)."},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": ["BOOL", "UINT8", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64"]},
        "parameters": {"type": "object", "properties": {
            "binary_data_size": {"type": "integer", "description": "Bytes of this tensor in the binary part."}}},
        "data": {"type": "array", "description": "Row-major values (nested lists are flattened)."},
    },
}
_ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string"},
    "details": {"type": "array", "items": {"type": "object", "properties": {
        "field": {"type": "string"}, "description": {"type": "string"}}}},
}}
_ERRORS = {
    str(status): {"description": text,
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for status, text in [(400, "INVALID_ARGUMENT: a field is wrong (details name it)"),
                         (401, "UNAUTHENTICATED: missing or unknown bearer token"),
                         (404, "NOT_FOUND: no such loss"),
                         (413, "RESOURCE_EXHAUSTED: over a size limit"),
                         (429, "RESOURCE_EXHAUSTED: the server is busy; retry later"),
                         (503, "UNAVAILABLE: the server is shutting down"),
                         (504, "DEADLINE_EXCEEDED: the computation ran past the server's limit")]
}
_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"},
          "description": "A loss name or alias."}


def _get(summary: str, schema: dict[str, Any], model: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}, **_ERRORS},
    }
    if model:
        operation["parameters"] = [_MODEL]
    return {"get": operation}


def openapi_document(version: str) -> dict[str, Any]:
    """The document, for this server's ``version``."""
    infer = {
        "summary": "Compute a loss (outputs: loss) or its gradients (outputs: grad_<role>)",
        "parameters": [_MODEL, {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
                                "schema": {"type": "integer"},
                                "description": "Binary tensor extension: the JSON header's length in bytes."}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": {"description": "The requested outputs", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}, **_ERRORS},
    }
    flag = {"type": "object", "properties": {"live": {"type": "boolean"}, "ready": {"type": "boolean"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lossd: the Open Inference Protocol (KServe V2) over REST", "version": version},
        "paths": {
            "/v2": _get("Server metadata", {"type": "object"}),
            "/v2/health/live": _get("Liveness", flag),
            "/v2/health/ready": _get("Readiness", flag),
            "/v2/models/{model}": _get("A loss's inputs, outputs and parameters", {"type": "object"}, True),
            "/v2/models/{model}/ready": _get("Whether a loss can be computed", flag, True),
            "/v2/models/{model}/infer": {"post": infer},
        },
        "components": {"schemas": {
            "Tensor": _TENSOR,
            "Error": _ERROR,
            "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object", "description": "The loss's parameters, reduction and wrt."},
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
                "outputs": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "parameters": {"type": "object"}}}},
            }},
            "InferResponse": {"type": "object", "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                "parameters": {"type": "object"},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
            }},
        }},
    }
