"""Distribution-matching losses: Kullback-Leibler divergence (torch's roles) and Hinton knowledge distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors


def kl_div(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    log_target: bool = False,
) -> torch.Tensor:
    """Pointwise KL divergence with torch's roles: ``input`` is log Q, ``target`` is P (or log P)::

        l_i = P_i * (log P_i - input_i)            (0 where P_i = 0)
        l_i = exp(T_i) * (T_i - input_i)           with log_target, T = log P

    "batchmean" = sum / input.size(0) (the true KL per sample for (N, C) inputs), "mean" = sum / numel
    (torch's default), "sum", "none".
    Shapes: input (*), target same as input; output () or (*) with reduction "none".
    """
    if reduction == "mean":  # torch's "mean", computed without its deprecation warning
        return F.kl_div(input, target, reduction="none", log_target=log_target).mean()
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


def _check_kl(tensors: Tensors, params: Params) -> None:
    # Any target is taken, as torch takes it: P_i (log P_i - input_i) for P > 1 too, NaN for P < 0 (or NaN).
    checks.same_shape(tensors, "target", "input")


def _input_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return tuple(tensors["input"].shape)


def distillation(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor | None = None,
    reduction: str = "batchmean",
    temperature: float = 4.0,
    alpha: float = 0.0,
) -> torch.Tensor:
    """Hinton knowledge distillation on logits, per sample i::

        kd_i = T^2 * sum_c softmax(teacher_i / T)_c * (log_softmax(teacher_i / T)_c - log_softmax(student_i / T)_c)
        l_i  = alpha * cross_entropy(student_i, labels_i) + (1 - alpha) * kd_i

    With the default alpha = 0 only the KD term remains (the tutorial's loss; labels are then not sent).
    "batchmean" averages l_i over the batch (the tutorial's reduction), "sum" adds them, "none" keeps (N,).
    Shapes: student (N, C); teacher (N, C); labels (N,) of indices; output () or (N,) with reduction "none".
    """
    t = float(temperature)
    log_s = F.log_softmax(student / t, dim=1)
    log_t = F.log_softmax(teacher / t, dim=1)
    losses = (t * t) * F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(dim=1)
    if labels is not None and alpha > 0:
        ce = F.cross_entropy(student, labels, reduction="none")
        losses = alpha * ce + (1.0 - alpha) * losses
    if reduction == "batchmean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def _check_distillation(tensors: Tensors, params: Params) -> None:
    student = tensors["student"]
    if student.dim() != 2:
        raise invalid("inputs[student]", f"shape {checks.shape_text(student.shape)}; expected (N, C) logits")
    if student.shape[1] < 1:
        raise invalid("inputs[student]", "has 0 classes; expected C >= 1")
    checks.same_shape(tensors, "teacher", "student")
    labels = tensors.get("labels")
    if labels is None:
        if params["alpha"] > 0:
            raise invalid("inputs[labels]", f"missing; alpha = {params['alpha']:g} mixes in the hard-label "
                          "cross-entropy, which needs labels (N,) of class indices")
        return
    if params["alpha"] == 0:
        raise invalid("inputs[labels]", "sent, but alpha is 0 so they would be ignored; set alpha in (0, 1] to mix "
                      "in the hard-label cross-entropy, or leave labels out")
    if tuple(labels.shape) != (student.shape[0],):
        raise invalid("inputs[labels]", f"shape {checks.shape_text(labels.shape)}; expected ({student.shape[0]},) "
                      "class indices, one per row of student")
    checks.class_indices(labels, "labels", student.shape[1], None)


def _rows_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    return (tensors["student"].shape[0],)


SPECS = (
    LossSpec(
        name="kl_div",
        hessian="elementwise",
        summary="Kullback-Leibler divergence KL(P || Q) with torch's roles: input = log Q, target = P (or log P).",
        formula="l_i = P_i * (log P_i - input_i), or exp(t_i) * (t_i - input_i) with log_target",
        fn=kl_div,
        roles=(
            Role("input", (Kind.FLOAT,), "any shape (*)", "log-probabilities log Q (e.g. log_softmax output)",
                 differentiable=True),
            Role("target", (Kind.FLOAT,), "same shape as input (P, usually in [0, 1]; log P with log_target)",
                 "probabilities P, or log-probabilities log P when log_target", differentiable=True),
        ),
        check=_check_kl,
        unreduced_shape=_input_shape,
        params=(
            Param("log_target", ParamType.BOOL, False, "target holds log-probabilities instead of probabilities"),
        ),
        aliases=("KLDivLoss", "kl_divergence", "KLDivergence", "kld"),
        reductions=("mean", "batchmean", "sum", "none"),
        default_reduction="mean",
        notes="input is log Q, as in torch (Keras' kl_divergence takes probabilities for both). Default reduction "
        "is torch's 'mean' (sum / numel); 'batchmean' (sum / N) is the true KL and what the tutorial uses. The "
        "tutorial's manual kl_divergence sums over the batch (N times batchmean) and clamps P to eps. The target is "
        "not range-checked, as torch does not check it: outside [0, 1] the formula is computed as it stands (NaN "
        "where P < 0), so torch's own KLDivLoss samples give torch's answers.",
        category="distribution",
    ),
    LossSpec(
        name="distillation",
        hessian="rows",
        summary="Hinton knowledge distillation: T^2 * KL(softmax(teacher/T) || softmax(student/T)), optionally "
        "mixed with hard-label cross-entropy.",
        formula="l_i = alpha * CE(student_i, labels_i) + (1 - alpha) * T^2 * KL(softmax(teacher_i/T) || "
        "softmax(student_i/T))",
        fn=distillation,
        roles=(
            Role("student", (Kind.FLOAT,), "(N, C)", "student logits", differentiable=True),
            Role("teacher", (Kind.FLOAT,), "(N, C), same shape as student", "teacher logits (usually constant)",
                 differentiable=True),
            Role("labels", (Kind.INDEX,), "(N,) class indices in [0, C); only with alpha > 0",
                 "hard labels for the cross-entropy term", required=False),
        ),
        check=_check_distillation,
        unreduced_shape=_rows_shape,
        params=(
            Param("temperature", ParamType.FLOAT, 4.0, "softening temperature T", minimum=0.0,
                  exclusive_minimum=True),
            Param("alpha", ParamType.FLOAT, 0.0, "weight of the hard-label cross-entropy (at T = 1); the KD term "
                  "gets 1 - alpha", minimum=0.0, maximum=1.0),
        ),
        aliases=("kd", "knowledge_distillation", "distillation_loss", "hinton_kd"),
        reductions=("batchmean", "sum", "none"),
        default_reduction="batchmean",
        default_wrt=("student",),
        notes="With alpha = 0 (default) this is the tutorial's KD term alone; alpha and labels are an extension "
        "(alpha * CE + (1 - alpha) * KD). Reductions are per sample: batchmean = mean over N.",
        category="distribution",
    ),
)
