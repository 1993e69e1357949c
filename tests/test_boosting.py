"""XGBoost and LightGBM (the real libraries) trained with lossd objectives: bce_with_logits reproduces their
built-in logistic objectives, weights included; losses they lack train, and the default Hessian keeps huber and
quantile stable where the exact one swings."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from lossd.client import LossClient
from lossd.integrations import lightgbm as lossd_lgb
from lossd.integrations import xgboost as lossd_xgb
from lossd.integrations.boosting import Objective
from lossd.server import BackgroundServer, ServerSettings

xgb = pytest.importorskip("xgboost", reason="the xgboost extra: pip install 'lossd[xgboost]'")
lgb = pytest.importorskip("lightgbm", reason="the lightgbm extra: pip install 'lossd[lightgbm]'")

XGB = {"tree_method": "hist", "max_depth": 3, "eta": 0.3, "seed": 0}
LGB = {"num_leaves": 8, "learning_rate": 0.3, "seed": 0, "verbose": -1, "deterministic": True,
       "force_row_wise": True}


@pytest.fixture(scope="module")
def lossd() -> Iterator[LossClient]:
    with BackgroundServer(ServerSettings(port=0, metrics_port=0, device="cpu")) as srv, \
            LossClient(srv.address, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def binary() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=2000) > 0).astype(np.float64)
    return x, y, rng.uniform(0.2, 3.0, 2000)


@pytest.fixture(scope="module")
def heavy_tailed() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 5))
    return x, 3 * x[:, 0] + rng.standard_t(2, size=2000)


@pytest.mark.parametrize("weighted", [False, True])
def test_xgboost_bce_with_logits_predicts_what_binary_logistic_does(lossd: LossClient, binary: Any,
                                                                    weighted: bool) -> None:
    """p - y and p(1 - p): the same trees, margins within 1e-6, from the same starting margin (0)."""
    x, y, w = binary
    data = xgb.DMatrix(x, label=y, weight=w if weighted else None)
    built_in = xgb.train({**XGB, "objective": "binary:logistic", "base_score": 0.5}, data, 20)
    ours = xgb.train({**XGB, "base_score": 0.0}, data, 20, obj=lossd_xgb.objective("bce_with_logits", lossd))
    np.testing.assert_allclose(ours.predict(data, output_margin=True), built_in.predict(data, output_margin=True),
                               rtol=1e-6, atol=1e-6)


def test_xgboost_sklearn_objective_gets_the_sample_weights(lossd: LossClient, binary: Any) -> None:
    x, y, w = binary
    built_in = xgb.XGBClassifier(objective="binary:logistic", base_score=0.5, n_estimators=10, max_depth=3,
                                 random_state=0).fit(x, y, sample_weight=w)
    ours = xgb.XGBRegressor(objective=lossd_xgb.sklearn_objective("bce_with_logits", lossd), base_score=0.0,
                            n_estimators=10, max_depth=3, random_state=0).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(ours.predict(x, output_margin=True), built_in.predict(x, output_margin=True),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_lightgbm_bce_with_logits_predicts_what_binary_does(lossd: LossClient, binary: Any, weighted: bool) -> None:
    """The built-in binary objective, not boosting from the average, against the lossd objective: raw scores
    within 1e-6."""
    x, y, w = binary
    data = lgb.Dataset(x, label=y, weight=w if weighted else None, free_raw_data=False)
    built_in = lgb.train({**LGB, "objective": "binary", "boost_from_average": False}, data, 20)
    ours = lgb.train({**LGB, "objective": lossd_lgb.objective("bce_with_logits", lossd)}, data, 20)
    np.testing.assert_allclose(ours.predict(x, raw_score=True), built_in.predict(x, raw_score=True),
                               rtol=1e-6, atol=1e-6)


def _xgb_history(lossd: LossClient, data: Any, loss: str, rounds: int = 15, **options: Any) -> list[float]:
    params = {k: v for k, v in options.items() if k != "hessian"}
    history: dict[str, Any] = {}
    xgb.train({**XGB, "base_score": 0.0, "disable_default_eval_metric": True}, data, rounds,
              obj=lossd_xgb.objective(loss, lossd, **options), custom_metric=lossd_xgb.metric(loss, lossd, **params),
              evals=[(data, "train")], evals_result=history, verbose_eval=False)
    return list(history["train"][loss])


def _falls(history: list[float]) -> bool:
    return all(b < a for a, b in itertools.pairwise(history))


@pytest.mark.parametrize(("loss", "params"), [("huber", {"delta": 0.3}), ("quantile", {"quantile": 0.8})])
def test_the_default_hessian_trains_huber_and_quantile_stably(lossd: LossClient, heavy_tailed: Any, loss: str,
                                                              params: dict[str, Any]) -> None:
    """Losses XGBoost lacks at these settings: the training loss falls round after round with the default
    (constant) Hessian."""
    x, y = heavy_tailed
    assert _falls(_xgb_history(lossd, xgb.DMatrix(x, label=y), loss, **params))


def test_the_exact_hessian_of_huber_makes_training_swing(lossd: LossClient, heavy_tailed: Any) -> None:
    """Why the default is constant there: with the exact Hessian (0 beyond delta) the training loss swings."""
    x, y = heavy_tailed
    history = _xgb_history(lossd, xgb.DMatrix(x, label=y), "huber", delta=0.3, hessian="exact")
    assert not _falls(history) and max(history[1:]) > history[1]


def test_lightgbm_trains_binary_focal_loss_which_it_lacks(lossd: LossClient, binary: Any) -> None:
    """Binary focal loss (gamma 2): the exact Hessian, floored where it turns negative; the loss falls."""
    x, y, _ = binary
    data = lgb.Dataset(x, label=y, free_raw_data=False)
    history: dict[str, Any] = {}
    lgb.train({**LGB, "objective": lossd_lgb.objective("focal", lossd, gamma=2.0)}, data, 15,
              feval=lossd_lgb.metric("focal", lossd, gamma=2.0), valid_sets=[data],
              callbacks=[lgb.record_evaluation(history)])
    assert _falls(history["training"]["focal"])


def test_xgboost_multiclass_cross_entropy_takes_n_by_c_predictions(lossd: LossClient) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 4))
    y = np.argmax(x[:, :3] + rng.normal(scale=0.3, size=(600, 3)), axis=1).astype(np.float64)
    data = xgb.DMatrix(x, label=y)
    history: dict[str, Any] = {}
    booster = xgb.train({**XGB, "num_class": 3, "base_score": 0.0, "disable_default_eval_metric": True}, data, 10,
                        obj=lossd_xgb.objective("cross_entropy", lossd),
                        custom_metric=lossd_xgb.metric("cross_entropy", lossd), evals=[(data, "train")],
                        evals_result=history, verbose_eval=False)
    assert _falls(history["train"]["cross_entropy"])
    assert booster.predict(data, output_margin=True).shape == (600, 3)


def test_the_gradient_and_hessian_are_the_weighted_sums(lossd: LossClient) -> None:
    """mse: 2 w (p - y) and 2 w, sent as grad_output; the metric is the weighted mean."""
    preds, labels, weights = np.array([1.0, 2.0, 4.0]), np.array([0.0, 2.0, 1.0]), np.array([1.0, 0.5, 2.0])
    grad, hess = Objective("mse", lossd)(preds, labels, weights)
    assert grad.tolist() == [2.0, 0.0, 12.0] and hess.tolist() == [2.0, 1.0, 4.0]
    value = lossd_xgb.metric("mse", lossd)(preds, xgb.DMatrix(np.zeros((3, 1)), label=labels, weight=weights))
    assert value == ("mse", pytest.approx((1 * 1 + 0.5 * 0 + 2 * 9) / 3.5))


def test_other_roles_are_fed_from_inputs(lossd: LossClient) -> None:
    """gaussian_nll's var, one per row, given once as inputs=: gradient (p - y) / var and Hessian 1 / var."""
    preds, labels, var = np.array([1.0, 3.0]), np.array([0.0, 1.0]), np.array([2.0, 4.0])
    grad, hess = Objective("gaussian_nll", lossd, inputs={"var": var})(preds, labels)
    np.testing.assert_allclose(grad, (preds - labels) / var, rtol=1e-12)  # of 0.5 (log var + (p - y)^2 / var)
    np.testing.assert_allclose(hess, 1 / var, rtol=1e-12)


def test_an_exact_hessian_of_a_loss_whose_rows_are_coupled_is_refused(lossd: LossClient) -> None:
    with pytest.raises(ValueError, match="offers no Hessian diagonal"):
        Objective("info_nce", lossd, hessian="exact")
