"""torch's own module tests, replayed: every loss sample of torch.testing._internal.common_modules.module_db
(seeded) goes through lossd's validation and evaluation and must equal the torch module's output (NaN where torch
gives NaN), or be refused for one of lossd's documented domains: class weights >= 0 (configuration, not data) and
margin_ranking's targets in {-1, +1}. KLDivLoss's samples, with targets outside [0, 1] and NaN, all match."""

from __future__ import annotations

import collections
import warnings
from typing import Any

import pytest
import torch

from lossd.losses import REGISTRY, InvalidRequestError, evaluate, validate

# LinearCrossEntropyLoss's samples drive the module's own Linear layer and chunking options: lossd's
# linear_cross_entropy takes the layer's weight and bias as inputs instead, and is checked by the catalog.
SKIPPED = ("LinearCrossEntropyLoss",)
# (loss module, field, words of the refusal): inputs outside a domain lossd documents.
DOCUMENTED = {("CrossEntropyLoss", "inputs[weight]", "is negative"), ("NLLLoss", "inputs[weight]", "is negative"),
              ("MultiMarginLoss", "inputs[weight]", "is negative"),
              ("MultiLabelSoftMarginLoss", "inputs[weight]", "is negative"),
              ("MarginRankingLoss", "inputs[target]", "is not -1 or +1")}


def _samples() -> list[tuple[Any, Any]]:
    """Every loss sample of torch's module_db, seeded. Imported here, not at collection: torch's test module turns
    off the setting of torch.backends flags for the rest of the process, which conftest does once first."""
    common_modules = pytest.importorskip("torch.testing._internal.common_modules",
                                         reason="torch's module tests need expecttest (the test extra)")
    torch.manual_seed(0)
    out = []
    for info in common_modules.module_db:
        name = info.module_cls.__name__
        if not name.endswith("Loss") or name in SKIPPED:
            continue
        samples = info.module_inputs_func(info, device="cpu", dtype=torch.float64, requires_grad=False,
                                          training=True)
        out += [(info, sample) for sample in samples]
    return out


def _lossd(info: Any, sample: Any) -> torch.Tensor:
    spec, preset = REGISTRY.resolve(info.module_cls.__name__)
    kwargs = dict(sample.constructor_input.kwargs)
    reduction = kwargs.pop("reduction", "mean")
    tensors = dict(zip((r.name for r in spec.roles), sample.forward_input.args, strict=False))
    params = {}
    for key, value in kwargs.items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        else:
            params[key] = value
    tensors = {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(v) for k, v in tensors.items()}
    return evaluate(validate(spec, tensors, params, reduction, preset=preset)).loss


def _outcome(info: Any, sample: Any) -> str:
    """"match", "documented refusal", or what went wrong."""
    name = info.module_cls.__name__
    module = info.module_cls(*sample.constructor_input.args, **sample.constructor_input.kwargs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own notice that KLDivLoss's 'mean' will change
        expected = module(*sample.forward_input.args, **sample.forward_input.kwargs)
    try:
        got = _lossd(info, sample)
    except InvalidRequestError as refused:
        violation = refused.violations[0]
        if any(name == n and violation.field == f and words in violation.description for n, f, words in DOCUMENTED):
            return "documented refusal"
        return f"refused: {violation}"
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)} against torch's {tuple(expected.shape)}"
    same = torch.allclose(got, expected.to(got.dtype), rtol=1e-7, atol=1e-10, equal_nan=True)
    return "match" if same else f"value {got.flatten()[:3].tolist()} against torch's {expected.flatten()[:3].tolist()}"


@pytest.fixture(scope="module")
def outcomes() -> dict[str, collections.Counter[str]]:
    by_module: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for info, sample in _samples():
        by_module[info.module_cls.__name__][_outcome(info, sample)] += 1
    return by_module


def test_every_torch_loss_sample_matches_or_is_outside_a_documented_domain(outcomes: Any) -> None:
    """19 loss modules' samples: each equals torch's output (NaN where torch's is NaN), or lossd refuses it for a
    domain it documents (negative class weights, a margin_ranking target of 0)."""
    unexpected = {name: {k: v for k, v in counts.items() if k not in ("match", "documented refusal")}
                  for name, counts in outcomes.items()}
    assert {name: bad for name, bad in unexpected.items() if bad} == {}
    assert len(outcomes) == 19 and sum(c["match"] for c in outcomes.values()) >= 240


def test_every_kl_div_sample_matches_torch(outcomes: Any) -> None:
    """KLDivLoss's 10 samples, 8 with targets outside [0, 1] (torch answers NaN where P < 0): all match."""
    assert outcomes["KLDivLoss"] == collections.Counter({"match": 10})
