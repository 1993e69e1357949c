"""XGBoost objectives and metrics from lossd losses (see lossd.integrations.boosting for what is sent).

    import xgboost as xgb
    from lossd.client import LossClient
    from lossd.integrations import xgboost as lossd_xgb

    client = LossClient("localhost:50051")
    booster = xgb.train({"tree_method": "hist", "base_score": 0.0, "disable_default_eval_metric": True},
                        dtrain, num_boost_round=100, obj=lossd_xgb.objective("huber", client, delta=0.3),
                        custom_metric=lossd_xgb.metric("huber", client, delta=0.3), evals=[(dtrain, "train")])

A custom objective runs under XGBoost's ``reg:squarederror``, which takes ``base_score`` as a margin: set it
(0.0 here) so that the boosting starts where you mean it to. Multi-class predictions arrive as (N, C): give
``num_class`` and ``multi_strategy`` as usual; the labels are the classes' indices. Nothing of XGBoost is
imported here: the callables take whatever it passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lossd.client import LossClient
from lossd.integrations.boosting import Objective


def objective(loss: str, client: LossClient, **options: Any) -> Callable[[np.ndarray, Any], tuple[np.ndarray,
                                                                                                   np.ndarray]]:
    """``obj=`` for ``xgboost.train``: ``(predt, dtrain) -> (grad, hess)`` of the loss summed over rows,
    weighted by the DMatrix's weights. ``options``: the loss's parameters, and ``hessian=``, ``min_hessian=``,
    ``inputs=`` (see :class:`~lossd.integrations.boosting.Objective`)."""
    target = Objective(loss, client, **options)

    def obj(predt: np.ndarray, dtrain: Any) -> tuple[np.ndarray, np.ndarray]:
        labels = dtrain.get_label()
        return target(predt.reshape(_shape(predt, labels)), labels, dtrain.get_weight())
    obj.__name__ = f"lossd_{target.loss}"
    return obj


def sklearn_objective(loss: str, client: LossClient, **options: Any) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``objective=`` for ``XGBRegressor`` / ``XGBClassifier``: ``(y_true, y_pred, sample_weight) -> (grad,
    hess)`` (XGBoost passes the weights only to a callable with a parameter named ``sample_weight``)."""
    target = Objective(loss, client, **options)

    def obj(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        return target(y_pred.reshape(_shape(y_pred, y_true)), y_true, sample_weight)
    obj.__name__ = f"lossd_{target.loss}"
    return obj


def metric(loss: str, client: LossClient, **options: Any) -> Callable[[np.ndarray, Any], tuple[str, float]]:
    """``custom_metric=`` for ``xgboost.train``: ``(predt, dmatrix) -> (loss name, weighted mean loss)``."""
    target = Objective(loss, client, hessian="constant", **options)

    def evaluate(predt: np.ndarray, dmatrix: Any) -> tuple[str, float]:
        labels = dmatrix.get_label()
        return target.loss, target.evaluate(predt.reshape(_shape(predt, labels)), labels, dmatrix.get_weight())
    return evaluate


def _shape(predt: np.ndarray, labels: np.ndarray) -> tuple[int, ...]:
    """(N,) for one output per row, (N, C) for several (older XGBoost passes them flat)."""
    rows = len(labels)
    return (rows,) if predt.size == rows else (rows, predt.size // rows)
