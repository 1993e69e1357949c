"""LightGBM objectives and metrics from lossd losses (see lossd.integrations.boosting for what is sent).

    import lightgbm as lgb
    from lossd.client import LossClient
    from lossd.integrations import lightgbm as lossd_lgb

    client = LossClient("localhost:50051")
    booster = lgb.train({"objective": lossd_lgb.objective("focal", client, gamma=2.0), "verbose": -1},
                        train_set, num_boost_round=100, feval=lossd_lgb.metric("focal", client, gamma=2.0),
                        valid_sets=[train_set])

A custom objective starts from a raw score of 0 (LightGBM's built-in objectives boost from the labels'
average unless ``boost_from_average=False``). Multi-class predictions arrive as (N, C) with ``num_class``
set. Nothing of LightGBM is imported here: the callables take whatever it passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lossd.client import LossClient
from lossd.integrations.boosting import Objective


def objective(loss: str, client: LossClient, **options: Any) -> Callable[[np.ndarray, Any], tuple[np.ndarray,
                                                                                                   np.ndarray]]:
    """``"objective"`` for ``lightgbm.train`` params (or ``LGBMModel(objective=...)``'s dataset form):
    ``(preds, train_data) -> (grad, hess)`` of the loss summed over rows, weighted by the Dataset's weights.
    ``options``: the loss's parameters, and ``hessian=``, ``min_hessian=``, ``inputs=``."""
    target = Objective(loss, client, **options)

    def obj(preds: np.ndarray, train_data: Any) -> tuple[np.ndarray, np.ndarray]:
        return target(preds, train_data.get_label(), train_data.get_weight())
    obj.__name__ = f"lossd_{target.loss}"
    return obj


def metric(loss: str, client: LossClient, **options: Any) -> Callable[[np.ndarray, Any], tuple[str, float, bool]]:
    """``feval=`` for ``lightgbm.train``: ``(preds, eval_data) -> (loss name, weighted mean loss, False)``."""
    target = Objective(loss, client, hessian="constant", **options)

    def evaluate(preds: np.ndarray, eval_data: Any) -> tuple[str, float, bool]:
        return target.loss, target.evaluate(preds, eval_data.get_label(), eval_data.get_weight()), False
    return evaluate
