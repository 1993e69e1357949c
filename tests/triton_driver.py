"""Runs in a virtual environment of its own holding tritonclient[grpc,http] from PyPI, unchanged (its generated
``inference`` messages cannot share a process with lossd's server): calls a lossd server over both of
tritonclient's protocols and prints what came back, as JSON, for tests/test_tritonclient.py to check."""

import json
import sys

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], np.float32)
CLASSES = np.array([0, 2], np.int64)
X = np.array([1.0, 2.0, 3.0, 4.0], np.float32)


def metadata(answer):
    if isinstance(answer, dict):  # tritonclient.http answers the JSON itself
        return {key: answer[key] for key in ("name", "inputs", "outputs") if key in answer} | {
            "inputs": [[t["name"], t["datatype"], t["shape"]] for t in answer["inputs"]],
            "outputs": [[t["name"], t["datatype"], t["shape"]] for t in answer["outputs"]]}
    return {"name": answer.name, "inputs": [[t.name, t.datatype, list(t.shape)] for t in answer.inputs],
            "outputs": [[t.name, t.datatype, list(t.shape)] for t in answer.outputs]}


def tensor(module, name, array, datatype, **binary):
    t = module.InferInput(name, list(array.shape), datatype)
    t.set_data_from_numpy(array, **binary)
    return t


def calls(module, address):
    client = module.InferenceServerClient(address)
    out = {"live": client.is_server_live(), "ready": client.is_server_ready(),
           "model_ready": client.is_model_ready("mse"), "alias_ready": client.is_model_ready("MSELoss"),
           "unknown_ready": client.is_model_ready("no_such_loss"),
           "metadata": metadata(client.get_model_metadata("cross_entropy"))}
    server = client.get_server_metadata()
    out["server"] = server["name"] if isinstance(server, dict) else server.name
    result = client.infer("mse", [tensor(module, "input", X, "FP32"), tensor(module, "target", X * 0, "FP32")])
    out["mse"] = result.as_numpy("loss").tolist()
    wanted = [module.InferRequestedOutput("loss"), module.InferRequestedOutput("grad_input")]
    result = client.infer("cross_entropy", [tensor(module, "input", LOGITS, "FP32"),
                                            tensor(module, "target", CLASSES, "INT64")],
                          outputs=wanted, parameters={"label_smoothing": 0.1})
    out["cross_entropy"] = [result.as_numpy("loss").tolist(), result.as_numpy("grad_input").tolist()]
    half = X.astype(np.float16)
    result = client.infer("mse", [tensor(module, "input", half, "FP16"), tensor(module, "target", half * 0, "FP16")])
    out["mse_fp16"] = [result.as_numpy("loss").dtype.name, result.as_numpy("loss").tolist()]
    if module is triton_http:  # JSON tensors both ways, not the binary extension
        json_only = {"binary_data": False}
        result = client.infer("mse", [tensor(module, "input", X, "FP32", **json_only),
                                      tensor(module, "target", X * 0, "FP32", **json_only)],
                              outputs=[module.InferRequestedOutput("loss", binary_data=False)])
        out["mse_json"] = result.as_numpy("loss").tolist()
    try:
        client.infer("mse", [tensor(module, "input", X, "FP32"), tensor(module, "target", X[:3], "FP32")])
    except InferenceServerException as exc:
        out["refused"] = [str(exc.status()), exc.message()]
    try:
        client.get_model_metadata("no_such_loss")
    except InferenceServerException as exc:
        out["unknown"] = [str(exc.status()), exc.message()]
    return out


if __name__ == "__main__":
    print(json.dumps({"grpc": calls(triton_grpc, sys.argv[1]), "http": calls(triton_http, sys.argv[2])}))
