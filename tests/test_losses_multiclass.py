"""Loss-specific behaviour of the multiclass, distribution, sequence and segmentation families: the tutorial's
relations (catalog §1), torch equivalences, edge shapes and refusals the catalog-wide suite cannot express."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossd.client import InvalidArgumentError, LossClient
from lossd.losses import REGISTRY

RNG = np.random.default_rng(1234)


def _logits(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a).copy())


def _refused(client: LossClient, loss: str, **kwargs: object) -> list[str]:
    with pytest.raises(InvalidArgumentError) as err:
        client.compute(loss, **kwargs)  # type: ignore[arg-type]
    return err.value.fields


# ---------------------------------------------------------------------------------------------- nll

def test_nll_of_log_softmax_equals_cross_entropy_on_spatial_inputs(client: LossClient) -> None:
    """nll(log_softmax(x)) == torch cross_entropy(x) for (N, C, d1, d2) with weights and an ignored pixel."""
    x, y, w = _logits(2, 4, 3, 2), RNG.integers(0, 4, (2, 3, 2)), RNG.uniform(0.5, 2, 4)
    y[0, 1, 1] = -100
    logp = F.log_softmax(_t(x), dim=1).numpy()
    for reduction in ("mean", "sum", "none"):
        got = client.compute("NLLLoss", inputs={"input": logp, "target": y, "weight": w}, reduction=reduction)
        want = F.cross_entropy(_t(x), _t(y), weight=_t(w), reduction=reduction).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    got = client.compute("nll", inputs={"input": logp, "target": y}, reduction="none")
    assert got.shape == (2, 3, 2)


def test_nll_accepts_an_unbatched_input(client: LossClient) -> None:
    """An unbatched (C,) input with a () target gives a 0-d loss equal to -input[target]."""
    logp = F.log_softmax(_t(_logits(5)), dim=0).numpy()
    got = client.compute("nll", inputs={"input": logp, "target": np.array(3)}, reduction="none")
    assert np.shape(got) == ()
    assert float(got) == pytest.approx(-logp[3], rel=1e-12)


def test_nll_refuses_a_class_index_out_of_range(client: LossClient) -> None:
    """A target index >= C (and not ignore_index) is refused on inputs[target]."""
    logp = F.log_softmax(_t(_logits(3, 4)), dim=1).numpy()
    assert _refused(client, "nll", inputs={"input": logp, "target": np.array([0, 4, 1])}) == ["inputs[target]"]


# ---------------------------------------------------------------------------------------- label smoothing

@pytest.mark.parametrize("eps", [0.1, 0.25])
def test_label_smoothing_others_equals_torch_with_rescaled_eps(client: LossClient, eps: float) -> None:
    """'others'(eps) == torch cross_entropy(label_smoothing = eps * K / (K - 1)) (catalog §1 item 3)."""
    x, y = _logits(8, 5), RNG.integers(0, 5, 8)
    got = client.compute("label_smoothing_cross_entropy", inputs={"input": x, "target": y}, params={"smoothing": eps})
    want = F.cross_entropy(_t(x), _t(y), label_smoothing=eps * 5 / 4).item()
    assert got == pytest.approx(want, rel=1e-12)


def test_label_smoothing_uniform_equals_torch_label_smoothing(client: LossClient) -> None:
    """distribution='uniform' is torch's convention: cross_entropy(label_smoothing=eps)."""
    x, y = _logits(6, 4), RNG.integers(0, 4, 6)
    got = client.compute("ls_ce", inputs={"input": x, "target": y}, params={"distribution": "uniform"},
                         reduction="sum")
    assert got == pytest.approx(F.cross_entropy(_t(x), _t(y), label_smoothing=0.1, reduction="sum").item(), rel=1e-12)


def test_label_smoothing_matches_the_tutorial_code(client: LossClient) -> None:
    """The tutorial's LabelSmoothingCrossEntropy (fill eps/(K-1), scatter 1-eps), re-run with its docstring fixed."""
    x, y, eps = _t(_logits(8, 10)), _t(RNG.integers(0, 10, 8)), 0.1
    smoothed = torch.full_like(x, eps / 9).scatter_(1, y.unsqueeze(1), 1 - eps)
    per_row = -(smoothed * F.log_softmax(x, dim=-1)).sum(dim=-1)
    got = client.compute("LabelSmoothingCrossEntropy", inputs={"input": x.numpy(), "target": y.numpy()},
                         reduction="none")
    np.testing.assert_allclose(got, per_row.numpy(), rtol=1e-12)


def test_label_smoothing_others_refuses_a_single_class(client: LossClient) -> None:
    """'others' divides eps by C - 1, so C = 1 is refused on inputs[input]."""
    inputs = {"input": _logits(3, 1), "target": np.zeros(3, int)}
    fields = _refused(client, "label_smoothing_cross_entropy", inputs=inputs)
    assert fields == ["inputs[input]"]


def test_adaptive_label_smoothing_gradient_treats_eps_as_constant(client: LossClient) -> None:
    """The gradient is (softmax(x) - q) / N with q built from the detached eps_i (the tutorial's intent)."""
    x, y = _logits(5, 4), RNG.integers(0, 4, 5)
    p = torch.softmax(_t(x), dim=1).numpy()
    eps = np.maximum(0.1 * (1 - p[np.arange(5), y]), 0.01)
    q = np.repeat((eps / 3)[:, None], 4, axis=1)
    q[np.arange(5), y] = 1 - eps
    _, grads = client.gradient("AdaptiveLabelSmoothing", inputs={"input": x, "target": y}, wrt=["input"])
    np.testing.assert_allclose(grads["input"], (p - q) / 5, rtol=1e-10, atol=1e-12)


def test_adaptive_label_smoothing_floors_confident_rows_at_min_smoothing(client: LossClient) -> None:
    """When every row is confident, eps_i = min_smoothing and the loss equals label smoothing at that eps."""
    x, y = _logits(4, 3), np.array([0, 1, 2, 0])
    x[np.arange(4), y] += 12.0  # p_y ~ 1, so base * (1 - p_y) < min
    inputs = {"input": x, "target": y}
    got = client.compute("adaptive_label_smoothing", inputs=inputs, params={"min_smoothing": 0.05})
    want = client.compute("label_smoothing_cross_entropy", inputs=inputs, params={"smoothing": 0.05})
    assert got == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------------------------------- multi margin

def test_categorical_hinge_equals_the_tutorial_manual_version(client: LossClient) -> None:
    """categorical_hinge resolves to multi_margin and equals the tutorial's categorical_hinge_manual."""
    x, y = _t(_logits(4, 5)), torch.tensor([0, 2, 1, 3])
    margins = x - x[torch.arange(4), y].unsqueeze(1) + 1.0
    margins[torch.arange(4), y] = 0
    manual = torch.mean(torch.clamp(margins, min=0)).item()
    assert REGISTRY.get("CategoricalHinge").name == "multi_margin"
    got = client.compute("categorical_hinge", inputs={"input": x.numpy(), "target": y.numpy()})
    assert got == pytest.approx(manual, rel=1e-12)
    assert got == pytest.approx(F.multi_margin_loss(x, y).item(), rel=1e-12)


def test_multi_margin_squared_weighted_equals_torch(client: LossClient) -> None:
    """p=2, margin=0.7 and class weights reproduce torch's MultiMarginLoss for every reduction."""
    x, y, w = _logits(6, 4), RNG.integers(0, 4, 6), RNG.uniform(0.5, 2, 4)
    for reduction in ("mean", "sum", "none"):
        got = client.compute("MultiMarginLoss", inputs={"input": x, "target": y, "weight": w},
                             params={"p": 2, "margin": 0.7}, reduction=reduction)
        want = F.multi_margin_loss(_t(x), _t(y), p=2, margin=0.7, weight=_t(w), reduction=reduction).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_multi_margin_accepts_an_unbatched_input(client: LossClient) -> None:
    """A (C,) score vector with a () target gives torch's value and a 0-d 'none' loss."""
    x = _logits(5)
    got = client.compute("multi_margin", inputs={"input": x, "target": np.array(2)}, reduction="none")
    assert np.shape(got) == ()
    assert float(got) == pytest.approx(F.multi_margin_loss(_t(x), torch.tensor(2)).item(), rel=1e-12)


# ------------------------------------------------------------------------------- linear cross-entropy

def test_linear_cross_entropy_equals_cross_entropy_of_linear_with_gradients(client: LossClient) -> None:
    """Value and gradients (input, linear_weight, linear_bias) equal autograd of cross_entropy(linear(x, W, b))."""
    x, w, b, y = _logits(6, 4), _logits(3, 4), _logits(3), RNG.integers(0, 3, 6)
    leaves = [_t(a).requires_grad_() for a in (x, w, b)]
    ref = F.cross_entropy(F.linear(*leaves), _t(y), label_smoothing=0.1)
    want = torch.autograd.grad(ref, leaves)
    value, grads = client.gradient("linear_cross_entropy",
                                   inputs={"input": x, "linear_weight": w, "linear_bias": b, "target": y},
                                   params={"label_smoothing": 0.1}, wrt=["input", "linear_weight", "linear_bias"])
    assert value == pytest.approx(ref.item(), rel=1e-12)
    for role, g in zip(("input", "linear_weight", "linear_bias"), want, strict=True):
        np.testing.assert_allclose(grads[role], g.numpy(), rtol=1e-10, atol=1e-12)


def test_linear_cross_entropy_accepts_an_unbatched_input(client: LossClient) -> None:
    """An (in,) input with a () target gives a 0-d loss."""
    x, w = _logits(4), _logits(3, 4)
    got = client.compute("linear_cross_entropy", inputs={"input": x, "linear_weight": w, "target": np.array(1)},
                         reduction="none")
    assert np.shape(got) == ()
    assert float(got) == pytest.approx(F.cross_entropy(F.linear(_t(x), _t(w)), torch.tensor(1)).item(), rel=1e-12)


def test_linear_cross_entropy_refuses_ignore_index_with_probability_targets(client: LossClient) -> None:
    """ignore_index applies only to index targets; with probabilities it is refused on params[ignore_index]."""
    probs = torch.softmax(_t(_logits(2, 3)), dim=1).numpy()
    fields = _refused(client, "linear_cross_entropy",
                      inputs={"input": _logits(2, 4), "linear_weight": _logits(3, 4), "target": probs},
                      params={"ignore_index": -100})
    assert fields == ["params[ignore_index]"]


# -------------------------------------------------------------------------------------------- kl_div

def test_kl_div_tutorial_manual_sum_is_n_times_batchmean(client: LossClient) -> None:
    """The tutorial's manual kl_divergence sums over the batch: N (= 4) times the batchmean value (§1 item 9)."""
    logq = F.log_softmax(_t(_logits(4, 5)), dim=1)
    p = torch.softmax(_t(_logits(4, 5)), dim=1)
    manual = torch.sum(p * torch.log(p / logq.exp())).item()
    batchmean = client.compute("kl_div", inputs={"input": logq.numpy(), "target": p.numpy()}, reduction="batchmean")
    assert batchmean == pytest.approx(F.kl_div(logq, p, reduction="batchmean").item(), rel=1e-12)
    assert manual / batchmean == pytest.approx(4.0, rel=1e-12)


def test_kl_div_default_is_torch_mean_over_every_element(client: LossClient) -> None:
    """The default reduction is torch's 'mean' (sum / numel), i.e. batchmean / C for (N, C) inputs."""
    logq = F.log_softmax(_t(_logits(3, 5)), dim=1).numpy()
    p = torch.softmax(_t(_logits(3, 5)), dim=1).numpy()
    inputs = {"input": logq, "target": p}
    assert client.compute("kl_div", inputs=inputs) == pytest.approx(
        client.compute("kl_div", inputs=inputs, reduction="batchmean") / 5, rel=1e-12)


def test_kl_div_takes_any_target_as_torch_does(client: LossClient) -> None:
    """Targets outside [0, 1] (and positive log-targets) are not refused: the formula as it stands, NaN where
    P < 0, as torch's KLDivLoss answers (its own module tests send such targets)."""
    logq = np.log(np.full((2, 2), 0.5))
    for target, log_target in ((np.array([[0.5, 0.5], [1.2, -0.2]]), False), (np.array([[0.1, -1.0], [-1.0, -1.0]]),
                                                                             True)):
        got = client.compute("kl_div", inputs={"input": logq, "target": target}, params={"log_target": log_target},
                             reduction="none")
        want = F.kl_div(_t(logq), _t(target), reduction="none", log_target=log_target).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


# -------------------------------------------------------------------------------------- distillation

def test_distillation_equals_the_tutorial_distillation_loss(client: LossClient) -> None:
    """The default (T = 4, alpha = 0) equals T^2 * kl_div(log_softmax(s/T), softmax(t/T), 'batchmean')."""
    s, t = _logits(4, 6) * 3, _logits(4, 6) * 3
    want = F.kl_div(F.log_softmax(_t(s) / 4, dim=1), F.softmax(_t(t) / 4, dim=1), reduction="batchmean") * 16
    assert client.compute("kd", inputs={"student": s, "teacher": t}) == pytest.approx(want.item(), rel=1e-12)


def test_distillation_alpha_mixes_cross_entropy_and_needs_labels(client: LossClient) -> None:
    """alpha > 0 needs labels (refused on inputs[labels] without them); labels with alpha = 0 are refused too."""
    s, t, y = _logits(3, 4), _logits(3, 4), np.array([0, 3, 1])
    kd = client.compute("distillation", inputs={"student": s, "teacher": t}, params={"temperature": 2.0})
    mixed = client.compute("distillation", inputs={"student": s, "teacher": t, "labels": y},
                           params={"temperature": 2.0, "alpha": 0.25})
    ce = F.cross_entropy(_t(s), _t(y)).item()
    assert mixed == pytest.approx(0.25 * ce + 0.75 * kd, rel=1e-12)
    assert _refused(client, "distillation", inputs={"student": s, "teacher": t}, params={"alpha": 0.5}) == [
        "inputs[labels]"]
    assert _refused(client, "distillation", inputs={"student": s, "teacher": t, "labels": y}) == ["inputs[labels]"]


# ----------------------------------------------------------------------------------------------- ctc

def _ctc_inputs() -> dict[str, np.ndarray]:
    return {"log_probs": F.log_softmax(_t(_logits(8, 3, 5)), dim=2).numpy(),
            "targets": np.array([[1, 2, 2], [3, 0, 0], [4, 1, 0]]),
            "input_lengths": np.array([8, 6, 5]), "target_lengths": np.array([3, 1, 2])}


def test_ctc_values_equal_torch_in_every_reduction(client: LossClient) -> None:
    """Padded and concatenated targets give torch's ctc_loss for mean (÷ target length), sum and none."""
    a = _ctc_inputs()
    concat = {**a, "targets": np.array([1, 2, 2, 3, 4, 1])}
    for reduction in ("mean", "sum", "none"):
        want = F.ctc_loss(*(_t(a[k]) for k in ("log_probs", "targets", "input_lengths", "target_lengths")),
                          reduction=reduction).numpy()
        np.testing.assert_allclose(client.compute("CTCLoss", inputs=a, reduction=reduction), want, rtol=1e-12)
        np.testing.assert_allclose(client.compute("ctc", inputs=concat, reduction=reduction), want, rtol=1e-12)


def test_ctc_gradient_through_log_softmax_equals_torch(client: LossClient) -> None:
    """Chained through log_softmax, the log_probs gradient gives torch's logits gradient."""
    logits = _t(_logits(8, 3, 5)).requires_grad_()
    a = {**_ctc_inputs(), "log_probs": F.log_softmax(logits, dim=2).detach().numpy()}
    loss = F.ctc_loss(F.log_softmax(logits, dim=2), *(_t(a[k]) for k in ("targets", "input_lengths",
                                                                          "target_lengths")))
    (want,) = torch.autograd.grad(loss, [logits])
    _, grads = client.gradient("ctc", inputs=a, wrt=["log_probs"])
    g = _t(grads["log_probs"])
    through = g - torch.softmax(logits.detach(), dim=2) * g.sum(dim=2, keepdim=True)
    np.testing.assert_allclose(through.numpy(), want.numpy(), rtol=1e-9, atol=1e-12)


def test_ctc_accepts_an_unbatched_sequence(client: LossClient) -> None:
    """(T, C) log_probs with (S,) targets and () lengths give a 0-d loss equal to torch's."""
    lp = F.log_softmax(_t(_logits(6, 4)), dim=1)
    inputs = {"log_probs": lp.numpy(), "targets": np.array([1, 3]), "input_lengths": np.array(6),
              "target_lengths": np.array(2)}
    got = client.compute("ctc", inputs=inputs, reduction="none")
    assert np.shape(got) == ()
    want = F.ctc_loss(lp, torch.tensor([1, 3]), torch.tensor(6), torch.tensor(2), reduction="none").item()
    assert float(got) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(("change", "field"), [
    ({"input_lengths": np.array([9, 6, 5])}, "inputs[input_lengths]"),
    ({"target_lengths": np.array([4, 1, 2])}, "inputs[target_lengths]"),
    ({"targets": np.array([[1, 0, 2], [3, 0, 0], [4, 1, 0]])}, "inputs[targets]"),
    ({"targets": np.array([[1, 2, 5], [3, 0, 0], [4, 1, 0]])}, "inputs[targets]"),
    ({"targets": np.array([1, 2, 2, 3, 4])}, "inputs[target_lengths]"),
    ({"targets": np.zeros((2, 3), int)}, "inputs[targets]"),
    ({"log_probs": np.zeros((0, 3, 5))}, "inputs[log_probs]"),
])
def test_ctc_refuses_what_torch_would_reject_or_misread(client: LossClient, change: dict, field: str) -> None:
    """Lengths beyond T or S, blank/out-of-range labels, a wrong concatenated total and shape mismatches."""
    assert _refused(client, "ctc", inputs={**_ctc_inputs(), **change}) == [field]


def test_ctc_refuses_a_blank_outside_the_classes(client: LossClient) -> None:
    """blank must lie in [0, C); blank = C is refused on params[blank]."""
    assert _refused(client, "ctc", inputs=_ctc_inputs(), params={"blank": 5}) == ["params[blank]"]


# --------------------------------------------------------------------------------------- segmentation

def test_dice_matches_the_tutorial_on_4d_and_extends_to_3d_volumes(client: LossClient) -> None:
    """The tutorial's DiceLoss (sigmoid, sums over dims (2, 3)); 5-D volumes give (N, C) under 'none'."""
    x, t = _t(_logits(2, 3, 4, 4)), _t((RNG.uniform(size=(2, 3, 4, 4)) > 0.5).astype(float))
    p = torch.sigmoid(x)
    inter = torch.sum(p * t, dim=(2, 3))
    union = torch.sum(p, dim=(2, 3)) + torch.sum(t, dim=(2, 3))
    seed = 1.0 - torch.mean((2.0 * inter + 1e-6) / (union + 1e-6))
    assert client.compute("DiceLoss", inputs={"input": x.numpy(), "target": t.numpy()}) == pytest.approx(
        seed.item(), rel=1e-12)
    vol = {"input": _logits(2, 3, 2, 3, 2), "target": (RNG.uniform(size=(2, 3, 2, 3, 2)) > 0.5).astype(float)}
    assert client.compute("dice", inputs=vol, reduction="none").shape == (2, 3)


def test_dice_refuses_an_input_without_spatial_dimensions(client: LossClient) -> None:
    """(N, C) has nothing to sum over; it is refused on inputs[input]."""
    assert _refused(client, "dice", inputs={"input": _logits(2, 3), "target": np.ones((2, 3))}) == ["inputs[input]"]


def test_combo_equals_the_tutorial_combo_loss(client: LossClient) -> None:
    """ComboLoss = dice_weight * DiceLoss + bce_weight * BCEWithLogitsLoss (mean), both on logits."""
    x, t = _logits(2, 2, 3, 3), (RNG.uniform(size=(2, 2, 3, 3)) > 0.5).astype(float)
    dice = client.compute("dice", inputs={"input": x, "target": t})
    bce = F.binary_cross_entropy_with_logits(_t(x), _t(t)).item()
    got = client.compute("combo", inputs={"input": x, "target": t}, params={"dice_weight": 0.7, "bce_weight": 0.4})
    assert got == pytest.approx(0.7 * dice + 0.4 * bce, rel=1e-12)
