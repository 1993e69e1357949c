"""Segmentation losses of the extended catalog that optimize the Jaccard index directly (Lovasz hinge and Lovasz
softmax, Berman et al., 2018) or weigh classes by their rarity (generalized Dice, Sudre et al., 2017). One value
per image; "mean" averages over the images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.hessian import zero_hessian
from lossd.losses.reduction import reduce_loss
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors


def _jaccard_weights(truth_sorted: torch.Tensor) -> torch.Tensor:
    """The Lovasz extension's weights along the last dimension, for 0/1 ground truth sorted by descending error:
    the increments of 1 - IoU as the pixels are taken in that order."""
    total = truth_sorted.sum(dim=-1, keepdim=True)
    intersection = total - truth_sorted.cumsum(dim=-1)
    union = total + (1.0 - truth_sorted).cumsum(dim=-1)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_hinge(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Lovasz hinge loss of binary masks, per image: with signs y = 2t - 1 and hinge errors e = 1 - x*y sorted in
    decreasing order, ``l_n = sum_k relu(e_(k)) * g_k``, g the Jaccard weights of the sorted ground truth.

    Shapes: input (N, 1, H, W) logits; target (N, H, W) of 0/1; output () or (N,) with reduction "none".
    """
    logits = input.reshape(input.shape[0], -1)
    truth = target.reshape(target.shape[0], -1).to(logits.dtype)
    errors = 1.0 - logits * (2.0 * truth - 1.0)
    errors_sorted, order = errors.sort(dim=1, descending=True)
    return reduce_loss((errors_sorted.relu() * _jaccard_weights(truth.gather(1, order))).sum(dim=1), reduction)


def lovasz_softmax(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Lovasz softmax loss, per image the mean over the C classes of the Lovasz extension of the class's
    Jaccard loss: errors |1[y = c] - softmax(x)_c| sorted in decreasing order, weighted as in lovasz_hinge.

    Shapes: input (N, C, H, W) logits; target (N, H, W) class indices; output () or (N,) with "none".
    """
    n, c = input.shape[:2]
    probs = input.reshape(n, c, -1).softmax(dim=1)
    truth = F.one_hot(target.reshape(n, -1).long(), c).permute(0, 2, 1).to(probs.dtype)
    errors_sorted, order = (truth - probs).abs().sort(dim=2, descending=True)
    per_class = (errors_sorted * _jaccard_weights(truth.gather(2, order))).sum(dim=2)
    return reduce_loss(per_class.mean(dim=1), reduction)


def generalized_dice(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean",
                     smooth: float = 1e-5) -> torch.Tensor:
    """Generalized Dice loss (Sudre et al., 2017) on softmax probabilities P and one-hot targets T, per image::

        w_c = 1 / (sum T_c)^2;   l_n = 1 - (2 sum_c w_c I_c + smooth) / (sum_c w_c (sum P_c + sum T_c) + smooth)

    A class absent from an image's target (an infinite weight) takes the largest finite weight of the batch, as
    monai's GeneralizedDiceLoss does. Shapes: input (N, C, d1..dk) logits; target same shape, one-hot; output
    () or (N,) with reduction "none".
    """
    probs = input.softmax(dim=1)
    dims = tuple(range(2, input.dim()))
    intersection = (probs * target).sum(dim=dims)
    ground = target.sum(dim=dims)
    denominator = probs.sum(dim=dims) + ground
    w = torch.reciprocal(ground * ground)
    infinite = torch.isinf(w)
    w = w.masked_fill(infinite, 0.0)
    if w.numel():  # the largest finite weight: a NaN in one image's target stays in that image
        w = w + infinite * w.masked_fill(torch.isnan(w), 0.0).max()
    numerator = 2.0 * (intersection * w).sum(dim=1)
    return reduce_loss(1.0 - (numerator + smooth) / ((denominator * w).sum(dim=1) + smooth), reduction)


def _check_binary_masks(tensors: Tensors, params: Params) -> None:
    x, t = tensors["input"], tensors["target"]
    if x.dim() != 4 or x.shape[1] != 1:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)}; expected (N, 1, H, W) logits")
    expected = (x.shape[0], *x.shape[2:])
    if tuple(t.shape) != expected:
        raise invalid("inputs[target]", f"shape {checks.shape_text(t.shape)} does not fit input "
                      f"{checks.shape_text(x.shape)}; expected {checks.shape_text(expected)}")
    bad = ~((t == 0) | (t == 1) | (torch.isnan(t) if t.is_floating_point() else False))
    if t.numel() and bool(bad.any()):
        flat = bad.reshape(-1).nonzero()[0].item()
        raise invalid("inputs[target]", f"value {t.reshape(-1)[flat].item():g} at flat index {flat} is not 0 or 1")


def _check_class_maps(tensors: Tensors, params: Params) -> None:
    x, t = tensors["input"], tensors["target"]
    if x.dim() != 4:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)}; expected (N, C, H, W) logits")
    expected = (x.shape[0], *x.shape[2:])
    if tuple(t.shape) != expected:
        raise invalid("inputs[target]", f"shape {checks.shape_text(t.shape)} does not fit input "
                      f"{checks.shape_text(x.shape)}; expected {checks.shape_text(expected)} of class indices")
    checks.class_indices(t, "target", x.shape[1], None)


def _check_one_hot(tensors: Tensors, params: Params) -> None:
    x = tensors["input"]
    if x.dim() < 3:
        raise invalid("inputs[input]", f"shape {checks.shape_text(x.shape)} has no spatial dimension; expected "
                      "(N, C, d1, ..., dk)")
    checks.same_shape(tensors, "target", "input")
    checks.in_range(tensors["target"], "target", 0.0, 1.0)


def _images(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return (tensors["input"].shape[0],)


SPECS = (
    LossSpec(
        name="lovasz_hinge",
        hessian="rows",
        hessian_fn=zero_hessian,
        hessian_vanishes=True,
        summary="Lovasz hinge: a convex surrogate of the Jaccard loss of binary masks, per image.",
        formula="l_n = sum_k relu(e_(k)) * g_k, e = 1 - x*(2t - 1) sorted descending, g: Jaccard weights",
        fn=lovasz_hinge,
        roles=(Role("input", (Kind.FLOAT,), "(N, 1, H, W)", "logits", differentiable=True),
               Role("target", (Kind.FLOAT, Kind.INDEX), "(N, H, W), values 0 or 1", "ground-truth masks")),
        check=_check_binary_masks,
        unreduced_shape=_images,
        aliases=("LovaszHingeLoss", "lovasz_hinge_loss"),
        notes="As kornia's lovasz_hinge_loss and smp's LovaszLoss('binary', per_image=True). Piecewise linear "
        "in the logits between changes of the order: its Hessian diagonal is zero almost everywhere.",
        category="segmentation",
    ),
    LossSpec(
        name="lovasz_softmax",
        hessian="rows",
        summary="Lovasz softmax: a surrogate of the mean Jaccard loss over the classes, per image.",
        formula="l_n = mean_c sum_k |1[y=c] - p_c|_(k) * g_k(c), p = softmax(x)",
        fn=lovasz_softmax,
        roles=(Role("input", (Kind.FLOAT,), "(N, C, H, W)", "logits", differentiable=True),
               Role("target", (Kind.INDEX,), "(N, H, W) class indices in [0, C)", "ground-truth classes")),
        check=_check_class_maps,
        unreduced_shape=_images,
        aliases=("LovaszSoftmaxLoss", "lovasz_softmax_loss"),
        notes="Averages over all C classes, as kornia's lovasz_softmax_loss; smp's LovaszLoss('multiclass') "
        "averages over the classes present in each image only (the two agree when every class is present).",
        category="segmentation",
    ),
    LossSpec(
        name="generalized_dice",
        hessian="rows",
        summary="Generalized Dice: Dice over classes weighted by the inverse square of their area, per image.",
        formula="l_n = 1 - (2 sum_c w_c I_c + s)/(sum_c w_c (P_c + T_c) + s), w_c = 1/T_c^2, P = softmax(x)",
        fn=generalized_dice,
        roles=(Role("input", (Kind.FLOAT,), "(N, C, d1, ..., dk), k >= 1", "logits", differentiable=True),
               Role("target", (Kind.FLOAT,), "same shape as input, one-hot", "ground-truth masks, one a class")),
        check=_check_one_hot,
        unreduced_shape=_images,
        params=(Param("smooth", ParamType.FLOAT, 1e-5, "added to the numerator and the denominator (monai's)",
                      minimum=0.0),),
        aliases=("GeneralizedDiceLoss",),
        # An image's weight for a class it lacks comes from the whole batch: its loss is not its own alone.
        row_wise=False,
        notes="As monai's GeneralizedDiceLoss(softmax=True, w_type='square', batch=False): a class absent from an "
        "image takes the batch's largest finite weight. optax's multiclass_generalized_dice_loss is a different "
        "definition (a frequency-weighted mean of per-class Dice).",
        category="segmentation",
    ),
)
