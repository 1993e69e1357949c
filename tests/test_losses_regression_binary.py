"""Regression and binary losses: the tutorial's worked numbers, alias presets, edge shapes and refusals
that the catalog-wide suite cannot express."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossd.client import InvalidArgumentError, LossClient

# The tutorial's regression example (§2.1, §2.2) and its outlier extension.
Y_TRUE = np.array([3.0, -0.5, 2.0, 7.0])
Y_PRED = np.array([2.5, 0.0, 2.0, 8.0])
Y_TRUE_OUTLIER = np.array([3.0, -0.5, 2.0, 7.0, 100.0])
Y_PRED_OUTLIER = np.array([2.5, 0.0, 2.0, 8.0, 5.0])


def _refused(client: LossClient, loss: str, **kwargs: object) -> list[str]:
    with pytest.raises(InvalidArgumentError) as err:
        client.compute(loss, **kwargs)  # type: ignore[arg-type]
    return err.value.fields


# ------------------------------------------------------------------------------- the tutorial's numbers


def test_seed_mse_and_mae_examples(client: LossClient) -> None:
    """The tutorial's MSE 0.375 and MAE 0.5 on its four-point example."""
    assert client.compute("MSELoss", input=Y_PRED, target=Y_TRUE) == pytest.approx(0.375, abs=1e-12)
    assert client.compute("L1Loss", input=Y_PRED, target=Y_TRUE) == pytest.approx(0.5, abs=1e-12)


def test_seed_outlier_example(client: LossClient) -> None:
    """Adding the outlier (100 vs 5) gives the tutorial's MSE 1805.3 and MAE 19.4."""
    assert client.compute("mse", input=Y_PRED_OUTLIER, target=Y_TRUE_OUTLIER) == pytest.approx(1805.3, rel=1e-12)
    assert client.compute("mae", input=Y_PRED_OUTLIER, target=Y_TRUE_OUTLIER) == pytest.approx(19.4, rel=1e-12)


def test_seed_bce_gradient_example(client: LossClient) -> None:
    """The tutorial's BCE gradient sigmoid(x) - y for x = (2.5, 3.0, 1.8), y = 1: -0.075858, -0.047426, -0.141851."""
    x, y = np.array([2.5, 3.0, 1.8]), np.ones(3)
    _, grads = client.gradient("BCEWithLogitsLoss", input=x, target=y, reduction="sum")
    np.testing.assert_allclose(grads["input"], [-0.075858, -0.047426, -0.141851], atol=5e-7)


def test_seed_hinge_is_zero_beyond_the_margin(client: LossClient) -> None:
    """The tutorial's correctly classified scores (2.5, 3.0, 1.8) give a zero hinge loss and a zero gradient."""
    x, y = np.array([2.5, 3.0, 1.8]), np.ones(3)
    value, grads = client.gradient("hinge", input=x, target=y, reduction="none", grad_output=np.ones(3))
    np.testing.assert_array_equal(value, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(grads["input"], [0.0, 0.0, 0.0])


def test_seed_hinge_and_squared_hinge_example(client: LossClient) -> None:
    """On the tutorial's hinge example the hinge is 1.3/4 = 0.325 and the squared hinge 0.77/4 = 0.1925."""
    x, y = np.array([0.8, -0.2, 1.5, -0.7]), np.array([1.0, -1.0, 1.0, -1.0])
    assert client.compute("hinge", input=x, target=y) == pytest.approx(0.325, rel=1e-12)
    assert client.compute("squared_hinge", input=x, target=y) == pytest.approx(0.1925, rel=1e-12)


def test_seed_exponential_example(client: LossClient) -> None:
    """On the tutorial's example (2, -1, 0.5, -2) vs (1, -1, 1, -1) the loss is (2e^-2 + e^-1 + e^-0.5) / 4."""
    x, y = np.array([2.0, -1.0, 0.5, -2.0]), np.array([1.0, -1.0, 1.0, -1.0])
    expected = (2 * math.exp(-2) + math.exp(-1) + math.exp(-0.5)) / 4
    assert client.compute("adaboost", input=x, target=y) == pytest.approx(expected, rel=1e-12)


def test_seed_log_cosh_example(client: LossClient) -> None:
    """On the tutorial's four-point example log-cosh is (2 log cosh 0.5 + log cosh 1) / 4."""
    expected = (2 * math.log(math.cosh(0.5)) + math.log(math.cosh(1.0))) / 4
    assert client.compute("LogCosh", input=Y_PRED, target=Y_TRUE) == pytest.approx(expected, rel=1e-12)


def test_quantile_at_one_half_is_half_the_mae(client: LossClient) -> None:
    """Pinball at q = 0.5 is 0.5 * MAE (the tutorial's docstring says MAE)."""
    q = client.compute("quantile", input=Y_PRED_OUTLIER, target=Y_TRUE_OUTLIER, params={"quantile": 0.5})
    assert q == pytest.approx(0.5 * 19.4, rel=1e-12)


def test_focal_with_gamma_zero_is_bce_only_without_alpha(client: LossClient) -> None:
    """gamma = 0 gives BCE with alpha = none; with the default alpha 0.25 it gives an alpha-weighted BCE."""
    rng = np.random.default_rng(3)
    x, t = rng.normal(size=10), (rng.random(10) > 0.7).astype(np.float64)
    bce = client.compute("bce_with_logits", input=x, target=t)
    assert client.compute("focal", input=x, target=t, params={"gamma": 0.0, "alpha": None}) == pytest.approx(bce)
    weighted = client.compute("focal", input=x, target=t, params={"gamma": 0.0})
    per = np.logaddexp(0, x) - t * x
    assert weighted == pytest.approx(np.mean(np.where(t == 1, 0.25, 0.75) * per), rel=1e-12)
    assert weighted != pytest.approx(bce, rel=1e-3)


# ------------------------------------------------------------------------------------------ regression


def test_smooth_l1_is_huber_over_beta(client: LossClient, rng: np.random.Generator) -> None:
    """smooth_l1(beta) == huber(delta=beta) / beta, and beta = 0 gives the L1 loss."""
    x, t = rng.normal(size=12) * 3, rng.normal(size=12)
    smooth = client.compute("smooth_l1", input=x, target=t, params={"beta": 0.7})
    huber = client.compute("huber", input=x, target=t, params={"delta": 0.7})
    assert smooth == pytest.approx(huber / 0.7, rel=1e-12)
    l1 = client.compute("mae", input=x, target=t)
    assert client.compute("smooth_l1", input=x, target=t, params={"beta": 0.0}) == pytest.approx(l1, rel=1e-12)


def test_log_cosh_does_not_overflow_in_float32(client: LossClient) -> None:
    """Errors of +-1000 give |e| - log 2 in float32 (the naive log(cosh(e)) is inf), with gradient tanh(e)."""
    x, t = np.array([1000.0, -1000.0, 0.5], dtype=np.float32), np.zeros(3, dtype=np.float32)
    value, grads = client.gradient("log_cosh", input=x, target=t, reduction="none", grad_output=np.ones(3, np.float32))
    np.testing.assert_allclose(value, [1000 - math.log(2), 1000 - math.log(2), math.log(math.cosh(0.5))], rtol=1e-6)
    np.testing.assert_allclose(grads["input"], np.tanh([1000.0, -1000.0, 0.5]), rtol=1e-6)


def test_multi_quantile_column_target_equals_flat_target(client: LossClient, rng: np.random.Generator) -> None:
    """A (N, 1) target is read as (N,) (the tutorial's code broadcast it to (N, N)); 'none' gives (N, Q)."""
    x, t = rng.normal(size=(5, 3)), rng.normal(size=5)
    flat = client.compute("multi_quantile", input=x, target=t, reduction="none")
    column = client.compute("MultiQuantileLoss", input=x, target=t[:, None], reduction="none")
    assert flat.shape == (5, 3)
    np.testing.assert_array_equal(flat, column)
    _, grads = client.gradient("multi_quantile", input=x, target=t[:, None], wrt=["target"])
    assert grads["target"].shape == (5, 1)


def test_multi_quantile_refuses_mismatched_shapes_and_quantiles(client: LossClient, rng: np.random.Generator) -> None:
    """Q must equal len(quantiles); the target must be (N,) or (N, 1); quantiles must not be empty."""
    x, t = rng.normal(size=(5, 3)), rng.normal(size=5)
    assert _refused(client, "multi_quantile", input=x, target=t, params={"quantiles": [0.2, 0.8]}) == [
        "inputs[input]"]
    assert _refused(client, "multi_quantile", input=x, target=np.resize(t, (5, 5))) == ["inputs[target]"]
    assert _refused(client, "multi_quantile", input=x, target=t, params={"quantiles": [0.1, 0.5, 1.0]}) == [
        "params[quantiles][2]"]
    assert _refused(client, "multi_quantile", input=x[:, :0], target=t, params={"quantiles": []}) == [
        "params[quantiles]"]


def test_poisson_alias_reproduces_keras(client: LossClient, rng: np.random.Generator) -> None:
    """'poisson' / 'Poisson' take the rate with eps 1e-7 (Keras: rate - t*log(rate + 1e-7)); torch's name does not."""
    rate, t = rng.uniform(0.1, 4.0, size=8), rng.integers(0, 5, size=8).astype(np.float64)
    keras = np.mean(rate - t * np.log(rate + 1e-7))
    for name in ("poisson", "Poisson"):
        assert client.compute(name, input=rate, target=t) == pytest.approx(keras, rel=1e-12)
    torch_default = np.mean(np.exp(rate) - t * rate)
    assert client.compute("PoissonNLLLoss", input=rate, target=t) == pytest.approx(torch_default, rel=1e-12)
    overridden = client.compute("poisson", input=rate, target=t, params={"log_input": True})
    assert overridden == pytest.approx(torch_default, rel=1e-12)


def test_poisson_refuses_negative_counts_and_rates(client: LossClient) -> None:
    """Targets must be >= 0; a rate (log_input false) must be >= 0, a log-rate may be negative."""
    x, t = np.array([-0.5, 1.0]), np.array([1.0, 2.0])
    assert _refused(client, "poisson_nll", input=x, target=-t) == ["inputs[target]"]
    assert _refused(client, "poisson", input=x, target=t) == ["inputs[input]"]
    assert math.isfinite(client.compute("poisson_nll", input=x, target=t))


def test_gaussian_nll_homoscedastic_var_equals_expanded_var(client: LossClient, rng: np.random.Generator) -> None:
    """A var of shape (N,) or (N, 1) is shared along the last dimension, as if expanded to input's shape."""
    x, t, v = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.uniform(0.5, 2.0, size=4)
    full = client.compute("gaussian_nll", input=x, target=t, var=np.repeat(v[:, None], 3, axis=1))
    assert client.compute("gaussian_nll", input=x, target=t, var=v) == pytest.approx(full, rel=1e-12)
    assert client.compute("gaussian_nll", input=x, target=t, var=v[:, None]) == pytest.approx(full, rel=1e-12)


def test_gaussian_nll_full_is_the_negative_log_density(client: LossClient) -> None:
    """full=True gives -log N(t; x, var): 0.5*log(2*pi*var) + (x - t)^2 / (2*var)."""
    x, t, v = np.array([0.0, 1.0]), np.array([2.0, 0.5]), np.array([4.0, 0.25])
    expected = np.mean(0.5 * np.log(2 * np.pi * v) + (x - t) ** 2 / (2 * v))
    got = client.compute("GaussianNLLLoss", input=x, target=t, var=v, params={"full": True})
    assert got == pytest.approx(expected, rel=1e-12)


def test_gaussian_nll_refuses_non_positive_variance(client: LossClient) -> None:
    """A variance <= 0 is refused on inputs[var] (torch raises for negatives and clamps 0 silently)."""
    x = np.zeros(3)
    for bad in (np.array([1.0, 0.0, 1.0]), np.array([1.0, -2.0, 1.0])):
        assert _refused(client, "gaussian_nll", input=x, target=x, var=bad) == ["inputs[var]"]


# ---------------------------------------------------------------------------------------------- binary


def test_bce_refuses_probabilities_outside_unit_interval(client: LossClient) -> None:
    """bce takes probabilities: an input or target outside [0, 1] is refused, unless from_logits."""
    p, t = np.array([0.2, 1.5]), np.array([0.0, 1.0])
    assert _refused(client, "bce", input=p, target=t) == ["inputs[input]"]
    assert _refused(client, "bce", input=t, target=p) == ["inputs[target]"]
    assert math.isfinite(client.compute("bce", input=p, target=t, params={"from_logits": True}))


def test_bce_epsilon_reproduces_keras_clipping(client: LossClient) -> None:
    """At p = 0 with t = 1, torch's log clamp gives 100; epsilon=1e-7 gives Keras' -log(1e-7)."""
    p, t = np.array([0.0, 1.0]), np.array([1.0, 0.0])
    assert client.compute("BCELoss", input=p, target=t) == pytest.approx(100.0)
    keras = client.compute("binary_crossentropy", input=p, target=t, params={"epsilon": 1e-7})
    assert keras == pytest.approx(-math.log(1e-7), rel=1e-9)


def test_bce_from_logits_equals_bce_with_logits(client: LossClient, rng: np.random.Generator) -> None:
    """from_logits=True gives bce_with_logits' value and gradient."""
    x, t = rng.normal(size=(3, 4)) * 3, rng.random((3, 4))
    value, grads = client.gradient("BinaryCrossentropy", input=x, target=t, params={"from_logits": True})
    ref_value, ref_grads = client.gradient("bce_with_logits", input=x, target=t)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grads["input"], ref_grads["input"], rtol=1e-12)


def test_hinge_reads_zero_one_labels_as_signs(client: LossClient, rng: np.random.Generator) -> None:
    """A target of only 0s and 1s gives the same hinge as the -1/+1 target (Keras' rule)."""
    x, y = rng.normal(size=8), rng.choice([-1.0, 1.0], size=8)
    for name in ("hinge", "squared_hinge"):
        signs = client.compute(name, input=x, target=y)
        assert client.compute(name, input=x, target=(y + 1) / 2) == pytest.approx(signs, rel=1e-12)


def test_margin_losses_refuse_bad_labels(client: LossClient) -> None:
    """Labels mixing -1 and 0, or not labels at all, are refused; exponential and soft_margin want -1/+1 only."""
    x = np.zeros(3)
    assert _refused(client, "hinge", input=x, target=np.array([-1.0, 0.0, 1.0])) == ["inputs[target]"]
    assert _refused(client, "squared_hinge", input=x, target=np.array([1.0, 0.5, 1.0])) == ["inputs[target]"]
    for name in ("exponential", "soft_margin"):
        assert _refused(client, name, input=x, target=np.array([0.0, 1.0, 1.0])) == ["inputs[target]"]


def test_focal_gradient_stays_finite_for_saturated_logits(client: LossClient) -> None:
    """Logits of +-200 with gamma < 1 give finite values and gradients in float32."""
    x = np.array([200.0, -200.0, 200.0, -200.0], dtype=np.float32)
    t = np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32)
    value, grads = client.gradient("focal", input=x, target=t, params={"gamma": 0.5}, wrt=["input", "target"])
    assert math.isfinite(value)
    assert np.isfinite(grads["input"]).all() and np.isfinite(grads["target"]).all()


def test_multilabel_soft_margin_shapes(client: LossClient, rng: np.random.Generator) -> None:
    """'none' gives one loss per sample, () for an unbatched (C,) input; weight must be (C,)."""
    x, t = rng.normal(size=(3, 4)), rng.integers(0, 2, (3, 4)).astype(np.float64)
    assert client.compute("multilabel_soft_margin", input=x, target=t, reduction="none").shape == (3,)
    single = client.compute("multilabel_soft_margin", input=x[0], target=t[0], reduction="none")
    assert np.shape(single) == ()
    assert _refused(client, "multilabel_soft_margin", input=x, target=t, weight=np.ones((3, 4))) == [
        "inputs[weight]"]


def test_multilabel_margin_torch_example(client: LossClient) -> None:
    """torch's documented example: scores (0.1, 0.2, 0.4, 0.8), targets 3 and 0 then -1, gives 0.85."""
    x, y = np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([[3, 0, -1, 1]])
    assert client.compute("MultiLabelMarginLoss", input=x, target=y) == pytest.approx(0.85, rel=1e-12)


def test_multilabel_margin_ignores_padding_after_first_minus_one(client: LossClient) -> None:
    """Entries after the first -1 do not change the loss, whatever valid index they hold."""
    x = np.array([[0.1, 0.2, 0.4, 0.8]])
    a = client.compute("multilabel_margin", input=x, target=np.array([[3, 0, -1, 1]]))
    b = client.compute("multilabel_margin", input=x, target=np.array([[3, 0, -1, -1]]))
    assert a == b


def test_multilabel_margin_refuses_indices_outside_range(client: LossClient) -> None:
    """Every target entry, padding included, must lie in [-1, C): C and -2 are refused (torch raises)."""
    x = np.zeros((1, 4))
    for bad in ([[3, 4, -1, 0]], [[3, -1, -2, 0]], [[-5, 0, 0, 0]]):
        assert _refused(client, "multilabel_margin", input=x, target=np.array(bad)) == ["inputs[target]"]
