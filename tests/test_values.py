"""Loss values through the real gRPC path equal torch.nn.functional on the same inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import raw_tensor

from lossd.client import LossClient
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc

N, C = 6, 4
DTYPES = [np.float32, np.float64]
TOL: dict[type, dict[str, float]] = {
    np.float32: {"rtol": 1.3e-6, "atol": 1e-5},
    np.float64: {"rtol": 1e-7, "atol": 1e-7},
}
Maker = Callable[[np.random.Generator, type], dict[str, np.ndarray]]


def _pair(shape: tuple[int, ...] = (N, 3)) -> Maker:
    return lambda rng, dt: {"input": (2 * rng.normal(size=shape)).astype(dt),
                            "target": rng.normal(size=shape).astype(dt)}


def _ce(shape: tuple[int, ...] = (N, C), index_dtype: type = np.int64, ignore: tuple[int, ...] = (),
        ignore_value: int = -100, weight: bool = False) -> Maker:
    def make(rng: np.random.Generator, dt: type) -> dict[str, np.ndarray]:
        target = rng.integers(0, C, size=(shape[0], *shape[2:]) if len(shape) > 1 else ())
        target = np.asarray(target)
        for i in ignore:
            target[i] = ignore_value
        out = {"input": rng.normal(size=shape).astype(dt), "target": target.astype(index_dtype)}
        if weight:
            out["weight"] = rng.uniform(0.5, 2.0, size=C).astype(dt)
        return out

    return make


def _ce_probs(rng: np.random.Generator, dt: type) -> dict[str, np.ndarray]:
    target = rng.dirichlet(np.ones(C), size=N)
    return {"input": rng.normal(size=(N, C)).astype(dt), "target": target.astype(dt)}


def _bce(soft: bool = False, weight: bool = False, pos_weight: bool = False) -> Maker:
    def make(rng: np.random.Generator, dt: type) -> dict[str, np.ndarray]:
        target = rng.uniform(0, 1, size=(N, C)) if soft else rng.integers(0, 2, size=(N, C))
        out = {"input": (2 * rng.normal(size=(N, C))).astype(dt), "target": target.astype(dt)}
        if weight:
            out["weight"] = rng.uniform(0.2, 2.0, size=(N, 1)).astype(dt)
        if pos_weight:
            out["pos_weight"] = rng.uniform(0.5, 3.0, size=C).astype(dt)
        return out

    return make


def _case(name: str, loss: str, make: Maker, ref: Callable[..., torch.Tensor],
          **params: Any) -> dict[str, Any]:
    return {"id": name, "loss": loss, "make": make, "ref": ref, "params": params}


CASES = [
    _case("mse", "mse", _pair(), F.mse_loss),
    _case("mae", "mae", _pair(), F.l1_loss),
    _case("huber", "huber", _pair(), F.huber_loss),
    _case("huber_delta_0.5", "huber", _pair(), F.huber_loss, delta=0.5),
    _case("huber_delta_2.0", "huber", _pair(), F.huber_loss, delta=2.0),
    _case("ce", "cross_entropy", _ce(), F.cross_entropy),
    _case("ce_class_weight", "cross_entropy", _ce(weight=True), F.cross_entropy),
    _case("ce_label_smoothing", "cross_entropy", _ce(), F.cross_entropy, label_smoothing=0.1),
    _case("ce_ignore_default", "cross_entropy", _ce(ignore=(1, 4)), F.cross_entropy),
    _case("ce_ignore_custom", "cross_entropy", _ce(ignore=(0, 2), ignore_value=3), F.cross_entropy,
          ignore_index=3),
    _case("ce_weight_ignore_smoothing", "cross_entropy", _ce(ignore=(3,), weight=True), F.cross_entropy,
          label_smoothing=0.1),
    _case("ce_spatial", "cross_entropy", _ce(shape=(2, C, 3, 5)), F.cross_entropy),
    _case("ce_unbatched", "cross_entropy", _ce(shape=(C,)), F.cross_entropy),
    _case("ce_probabilities", "cross_entropy", _ce_probs, F.cross_entropy),
    _case("ce_int32_target", "cross_entropy", _ce(index_dtype=np.int32), F.cross_entropy),
    _case("ce_uint8_target", "cross_entropy", _ce(index_dtype=np.uint8), F.cross_entropy),
    _case("bce", "bce_with_logits", _bce(), F.binary_cross_entropy_with_logits),
    _case("bce_pos_weight", "bce_with_logits", _bce(pos_weight=True), F.binary_cross_entropy_with_logits),
    _case("bce_weight_n1", "bce_with_logits", _bce(weight=True), F.binary_cross_entropy_with_logits),
    _case("bce_soft_targets", "bce_with_logits", _bce(soft=True), F.binary_cross_entropy_with_logits),
]
BY_ID = {c["id"]: c for c in CASES}


def _torch(arrays: dict[str, np.ndarray], float_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for name, a in arrays.items():
        t = torch.from_numpy(np.array(a))
        out[name] = t.to(float_dtype or t.dtype) if t.is_floating_point() else t.long()
    return out


def _reference(case: dict[str, Any], arrays: dict[str, np.ndarray], reduction: str,
               float_dtype: torch.dtype | None = None) -> torch.Tensor:
    return case["ref"](**_torch(arrays, float_dtype), reduction=reduction, **case["params"])


def _param(value: Any) -> pb.ParamValue:
    return pb.ParamValue(integer=value) if isinstance(value, int) else pb.ParamValue(number=value)


def _raw_request(case: dict[str, Any], inputs: dict[str, pb.Tensor], reduction: str,
                 **kw: Any) -> pb.ComputeRequest:
    params = {k: _param(v) for k, v in case["params"].items()}
    return pb.ComputeRequest(loss=case["loss"], inputs=inputs, params=params, reduction=reduction, **kw)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_loss_value_matches_torch(client: LossClient, rng: np.random.Generator, case: dict[str, Any],
                                  dtype: type, reduction: str) -> None:
    """Each loss case over gRPC equals torch.nn.functional per dtype and reduction; 'none' keeps dtype."""
    arrays = case["make"](rng, dtype)
    got = client.compute(case["loss"], reduction=reduction, **arrays, **case["params"])
    want = _reference(case, arrays, reduction).numpy()
    if reduction == "none":
        assert isinstance(got, np.ndarray)
        assert got.dtype == np.dtype(dtype)
        assert got.shape == want.shape
    else:
        assert isinstance(got, float)
    np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize(("alias", "canonical"), [
    ("MSELoss", "mse"), ("mean_squared_error", "mse"), ("Mean_Squared-Error", "mse"), ("L1Loss", "mae"),
    ("mean absolute error", "mae"), ("HuberLoss", "huber"), ("HUBER", "huber"),
    ("CrossEntropyLoss", "ce"), ("cross-entropy", "ce"), ("BCEWithLogitsLoss", "bce"),
    ("Bce_With_Logits", "bce"),
])
def test_alias_gives_canonical_value(client: LossClient, rng: np.random.Generator, alias: str,
                                     canonical: str) -> None:
    """A loss alias or case/underscore/hyphen variant gives the same value as the canonical name."""
    case = BY_ID[canonical]
    arrays = case["make"](rng, np.float64)
    via_alias = client.compute(alias, **arrays, **case["params"])
    assert via_alias == client.compute(case["loss"], **arrays, **case["params"])
    np.testing.assert_allclose(via_alias, _reference(case, arrays, "mean").item(), **TOL[np.float64])


@pytest.mark.parametrize(("loss", "expected"), [("mse", 0.375), ("mae", 0.5)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_tutorial_worked_example(client: LossClient, loss: str, expected: float, dtype: type) -> None:
    """Tutorial example pred [2.5, 0, 2, 8] vs true [3, -0.5, 2, 7]: MSE 0.375, MAE 0.5, as in torch."""
    pred = np.array([2.5, 0.0, 2.0, 8.0], dtype=dtype)
    true = np.array([3.0, -0.5, 2.0, 7.0], dtype=dtype)
    ref = F.mse_loss if loss == "mse" else F.l1_loss
    assert ref(torch.from_numpy(pred), torch.from_numpy(true)).item() == expected
    assert client.compute(loss, input=pred, target=true) == expected


HALF_CASES = ["mse", "mae", "huber_delta_0.5", "ce_class_weight", "ce_probabilities", "bce_pos_weight"]


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case_id", HALF_CASES)
def test_float16_computed_in_float32_answered_in_float16(stub: pb_grpc.LossServiceStub,
                                                         rng: np.random.Generator, case_id: str,
                                                         reduction: str) -> None:
    """float16 inputs are computed in float32; the float16 reply equals torch's float32 result rounded."""
    case = BY_ID[case_id]
    arrays = case["make"](rng, np.float16)
    response = stub.Compute(_raw_request(case, {k: raw_tensor(v) for k, v in arrays.items()}, reduction))
    assert response.loss.dtype == pb.DTYPE_FLOAT16
    got = np.frombuffer(response.loss.raw_data, dtype="<f2").reshape(tuple(response.loss.shape))
    want = _reference(case, arrays, reduction, torch.float32).to(torch.float16).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-3, atol=1e-5)


def _bf16(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: torch.from_numpy(v).to(torch.bfloat16) if v.dtype.kind == "f" else v
            for k, v in arrays.items()}


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case_id", HALF_CASES)
def test_bfloat16_via_client_matches_float32_rounded(client: LossClient, rng: np.random.Generator,
                                                     case_id: str, reduction: str) -> None:
    """bfloat16 torch tensors are accepted; the answer is torch's float32 result rounded to bfloat16."""
    case = BY_ID[case_id]
    inputs = _bf16(case["make"](rng, np.float32))
    got = client.compute(case["loss"], reduction=reduction, **inputs, **case["params"])
    as_f32 = {k: v.float() if isinstance(v, torch.Tensor) else torch.from_numpy(v).long()
              for k, v in inputs.items()}
    want = case["ref"](**as_f32, reduction=reduction, **case["params"]).to(torch.bfloat16).float().numpy()
    if reduction == "none":
        assert isinstance(got, np.ndarray)
        assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2**-7, atol=1e-5)


def test_bfloat16_reply_dtype_is_bfloat16(stub: pb_grpc.LossServiceStub, rng: np.random.Generator) -> None:
    """A raw bfloat16 request is answered with a bfloat16 tensor holding the float32 result rounded."""
    x, y = (torch.from_numpy(rng.normal(size=(N, 3))).to(torch.bfloat16) for _ in range(2))

    def wire(t: torch.Tensor) -> pb.Tensor:
        bits = t.view(torch.int16).numpy().astype("<i2")
        return pb.Tensor(dtype=pb.DTYPE_BFLOAT16, shape=list(t.shape), raw_data=bits.tobytes())

    response = stub.Compute(pb.ComputeRequest(loss="mse", inputs={"input": wire(x), "target": wire(y)}))
    assert response.loss.dtype == pb.DTYPE_BFLOAT16
    bits = np.frombuffer(response.loss.raw_data, dtype="<i2").copy()
    got = torch.from_numpy(bits).view(torch.bfloat16).item()
    assert got == F.mse_loss(x.float(), y.float()).to(torch.bfloat16).item()


def _listed(a: np.ndarray) -> pb.Tensor:
    field = {"f": "float_val" if a.dtype == np.float32 else "double_val", "i": "int64_val"}[a.dtype.kind]
    return pb.Tensor(dtype=raw_tensor(a).dtype, shape=list(a.shape), **{field: a.ravel().tolist()})


def _decode(t: pb.Tensor) -> np.ndarray:
    dtype = "<f4" if t.dtype == pb.DTYPE_FLOAT32 else "<f8"
    return np.frombuffer(t.raw_data, dtype=dtype).reshape(tuple(t.shape))


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case_id", ["mse", "ce_class_weight", "bce_pos_weight"])
def test_typed_list_request_equals_raw_bytes(stub: pb_grpc.LossServiceStub, rng: np.random.Generator,
                                             case_id: str, dtype: type, reduction: str) -> None:
    """Inputs sent as float_val/double_val/int64_val lists give exactly the value raw bytes give."""
    case = BY_ID[case_id]
    arrays = case["make"](rng, dtype)
    listed = stub.Compute(_raw_request(case, {k: _listed(v) for k, v in arrays.items()}, reduction))
    raw = stub.Compute(_raw_request(case, {k: raw_tensor(v) for k, v in arrays.items()}, reduction))
    np.testing.assert_array_equal(_decode(listed.loss), _decode(raw.loss))
    np.testing.assert_allclose(_decode(raw.loss), _reference(case, arrays, reduction).numpy(), **TOL[dtype])


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_values_encoding_reply_uses_typed_list(stub: pb_grpc.LossServiceStub, rng: np.random.Generator,
                                               dtype: type, reduction: str) -> None:
    """With ENCODING_VALUES the reply carries float_val (float32) or double_val (float64), not raw_data."""
    case = BY_ID["huber_delta_0.5"]
    inputs = {k: raw_tensor(v) for k, v in case["make"](rng, dtype).items()}
    listed = stub.Compute(_raw_request(case, inputs, reduction, response_encoding=pb.ENCODING_VALUES))
    raw = stub.Compute(_raw_request(case, inputs, reduction))
    assert listed.loss.raw_data == b""
    values = listed.loss.float_val if dtype == np.float32 else listed.loss.double_val
    other = listed.loss.double_val if dtype == np.float32 else listed.loss.float_val
    assert len(other) == 0
    assert tuple(listed.loss.shape) == tuple(raw.loss.shape)
    expected = _decode(raw.loss)
    np.testing.assert_array_equal(np.asarray(values, dtype=dtype).reshape(expected.shape), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_empty_batch_mean_is_nan_sum_is_zero(client: LossClient, dtype: type) -> None:
    """MSE over shape (0,) gives NaN for mean and 0 for sum, as torch does, and an empty array for none."""
    empty = np.zeros(0, dtype=dtype)
    assert np.isnan(F.mse_loss(torch.from_numpy(empty), torch.from_numpy(empty)).item())
    assert np.isnan(client.compute("mse", input=empty, target=empty, reduction="mean"))
    assert client.compute("mse", input=empty, target=empty, reduction="sum") == 0.0
    none = client.compute("mse", input=empty, target=empty, reduction="none")
    assert none.shape == (0,)
    assert none.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_nan_input_flows_through(client: LossClient, dtype: type) -> None:
    """A NaN input element makes the reduced MSE NaN and only its own unreduced element NaN (no clamping)."""
    x = np.array([1.0, np.nan, 3.0], dtype=dtype)
    y = np.array([1.0, 2.0, 2.0], dtype=dtype)
    assert np.isnan(client.compute("mse", input=x, target=y, reduction="mean"))
    assert np.isnan(client.compute("mse", input=x, target=y, reduction="sum"))
    np.testing.assert_array_equal(client.compute("mse", input=x, target=y, reduction="none"),
                                  np.array([0.0, np.nan, 1.0], dtype=dtype))
