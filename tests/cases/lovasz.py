"""Cases for lovasz_hinge and lovasz_softmax (against kornia) and generalized_dice (against monai's
GeneralizedDiceLoss, reduction none). The oracles are imported where they are used: the GPU checks load these
cases without them."""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.base import Arrays, Case, floats, reduce


def _binary(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 3, 1, 4, 4), "target": (rng.random((3, 4, 4)) > 0.5).astype(dtype)}


def _classes(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    return {"input": floats(rng, dtype, 2, 3, 4, 4), "target": rng.integers(0, 3, (2, 4, 4))}


def _one_hot(rng: np.random.Generator, dtype: np.dtype) -> Arrays:
    labels = rng.integers(0, 3, (3, 4, 4))
    labels[2][labels[2] == 1] = 0  # image 2 lacks class 1: its weight comes from the rest of the batch
    return {"input": floats(rng, dtype, 3, 3, 4, 4),
            "target": np.moveaxis(np.eye(3)[labels], -1, 1).astype(dtype)}


def _per_image_kornia(name: str) -> Any:
    def oracle(a: Arrays, p: Any, r: str) -> Any:
        import kornia
        import torch

        x, t = torch.from_numpy(a["input"]), torch.from_numpy(np.asarray(a["target"]))
        values = [float(getattr(kornia.losses, name)(x[i:i + 1], t[i:i + 1])) for i in range(x.shape[0])]
        return reduce(np.array(values), r)
    return oracle


def _generalized_dice(a: Arrays, p: Any, r: str) -> Any:
    import monai
    import torch

    loss = monai.losses.GeneralizedDiceLoss(softmax=True, w_type="square", batch=False, reduction="none",
                                            smooth_nr=p["smooth"], smooth_dr=p["smooth"])
    return reduce(loss(torch.from_numpy(a["input"]), torch.from_numpy(a["target"])).reshape(-1).numpy(), r)


CASES = [
    Case("lovasz_hinge", _binary, _per_image_kornia("lovasz_hinge_loss"), bad_shape=("target", (3, 4, 3)),
         gradcheck=False),  # the sort order changes under finite differences
    Case("lovasz_softmax", _classes, _per_image_kornia("lovasz_softmax_loss"), bad_shape=("target", (2, 3, 4)),
         gradcheck=False),
    Case("generalized_dice", _one_hot, _generalized_dice, bad_shape=("target", (3, 3, 4, 3))),
]
