"""Per-round time of XGBoost and LightGBM with a lossd objective against their built-in one, side by side.

1M rows of 10 float features, a regression target; each library trains ``--rounds`` rounds with its built-in
squared error and with lossd's mse objective (one Hessian call per round carrying every row, to a lossd
server in a process of its own on loopback), alternating, ``--repeats`` times; the medians per round are
printed with the objective call alone (the round trip, timed apart). Run: ``python -m lossd.bench.boosting``
(needs the xgboost and lightgbm extras).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from lossd.bench.processes import lossd_server
from lossd.client import LossClient


def _timed(train: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    train()
    return (time.perf_counter() - started) / rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import lightgbm as lgb
    import xgboost as xgb

    from lossd.integrations import lightgbm as lossd_lgb
    from lossd.integrations import xgboost as lossd_xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, 10)).astype(np.float32)
    y = (x @ rng.normal(size=10) + rng.normal(size=args.rows)).astype(np.float32)
    dtrain = xgb.DMatrix(x, label=y)
    dtrain_predictions = np.zeros(args.rows, np.float32)
    lgb_train = lgb.Dataset(x, label=y, free_raw_data=False).construct()
    xgb_params = {"tree_method": "hist", "max_depth": 6, "eta": 0.3, "base_score": 0.0, "nthread": 2}
    lgb_params = {"num_leaves": 63, "learning_rate": 0.3, "verbose": -1, "num_threads": 2, "boost_from_average": False}
    with lossd_server("--device", "cpu") as server, LossClient(server.address, timeout=600) as client:
        runs = {
            "XGBoost, reg:squarederror": lambda: xgb.train({**xgb_params, "objective": "reg:squarederror"}, dtrain,
                                                           args.rounds),
            "XGBoost, lossd mse": lambda: xgb.train(xgb_params, dtrain, args.rounds,
                                                    obj=lossd_xgb.objective("mse", client)),
            "LightGBM, regression (l2)": lambda: lgb.train({**lgb_params, "objective": "regression"}, lgb_train,
                                                           args.rounds),
            "LightGBM, lossd mse": lambda: lgb.train({**lgb_params, "objective": lossd_lgb.objective("mse", client)},
                                                     lgb_train, args.rounds),
        }
        # One round of each first: XGBoost sketches the histogram cuts on the first train over a DMatrix (and
        # caches them), LightGBM bins the Dataset once; neither belongs to a round's cost.
        xgb.train(xgb_params, dtrain, 1)
        lgb.train({**lgb_params, "objective": "regression"}, lgb_train, 1)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                times[name].append(_timed(run, args.rounds))
        objective = lossd_xgb.objective("mse", client)
        call = statistics.median(_timed(lambda: objective(dtrain_predictions, dtrain), 1)
                                 for _ in range(args.repeats * 3))
    print(f"{args.rows:,} rows, {args.rounds} rounds, median of {args.repeats}; the lossd objective call alone "
          f"(1M predictions out, gradient and Hessian back): {call:.3f} s")
    print(f"{'objective':<28} {'s/round':>8}")
    for name, values in times.items():
        print(f"{name:<28} {statistics.median(values):>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
