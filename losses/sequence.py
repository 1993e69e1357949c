"""Sequence losses: connectionist temporal classification (CTC)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossd.losses import checks
from lossd.losses.errors import invalid
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors


def ctc(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    reduction: str = "mean",
    blank: int = 0,
    zero_infinity: bool = False,
) -> torch.Tensor:
    """Connectionist temporal classification, per sequence n::

        l_n = -log sum_{a in B^-1(y_n)} prod_{t < input_lengths[n]} exp(log_probs[t, n, a_t])

    over every frame-level alignment a that collapses (merge repeats, drop ``blank``) to the target y_n.
    "mean" = mean_n(l_n / max(target_lengths[n], 1)) (torch's), "sum" = sum_n l_n, "none" keeps (N,).
    ``zero_infinity`` turns the infinite loss of an impossible alignment (and its gradient) into 0.
    The value is torch's ``F.ctc_loss``. The gradient is the true derivative with respect to ``log_probs``;
    torch's own backward returns exp(log_probs) * grad_output more on every frame t < input_lengths[n] (its
    gradient w.r.t. the logits before log_softmax), a difference that log_softmax's backward removes.
    Shapes: log_probs (T, N, C) or (T, C); targets (N, S) padded or (sum(target_lengths),) concatenated, or
    (S,) unbatched; input_lengths and target_lengths (N,) or () unbatched; output () or (N,) with "none".
    """
    per_seq = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=blank, reduction="none",
                         zero_infinity=zero_infinity)
    if log_probs.requires_grad:
        # A term of value exactly 0 whose gradient cancels torch's extra exp(log_probs) on the frames it uses.
        batched = log_probs.dim() == 3
        lp = log_probs if batched else log_probs.unsqueeze(1)
        lengths = input_lengths.reshape(-1).to(lp.device)
        frames = torch.arange(lp.shape[0], device=lp.device).unsqueeze(1) < lengths.unsqueeze(0)  # (T, N)
        if zero_infinity:
            with torch.no_grad():
                raw = F.ctc_loss(log_probs.detach(), targets, input_lengths, target_lengths, blank=blank,
                                 reduction="none", zero_infinity=False)
            frames = frames & torch.isfinite(raw.reshape(-1)).unsqueeze(0)
        p = lp.exp()
        zero = ((p - p.detach()) * frames.unsqueeze(2).to(lp.dtype)).sum(dim=(0, 2))  # (N,)
        per_seq = per_seq - (zero if batched else zero.reshape(()))
    if reduction == "mean":
        denom = target_lengths.to(per_seq.device, per_seq.dtype).clamp(min=1)
        return (per_seq / denom).mean()
    if reduction == "sum":
        return per_seq.sum()
    return per_seq


def _values(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _check_ctc(tensors: Tensors, params: Params) -> None:
    lp, targets = tensors["log_probs"], tensors["targets"]
    il, tl = tensors["input_lengths"], tensors["target_lengths"]
    if lp.dim() not in (2, 3):
        raise invalid("inputs[log_probs]", f"shape {checks.shape_text(lp.shape)}; expected (T, N, C) or "
                      "unbatched (T, C) log-probabilities")
    batched = lp.dim() == 3
    frames, classes = lp.shape[0], lp.shape[-1]
    batch = lp.shape[1] if batched else 1
    if frames < 1 or batch < 1 or classes < 1:
        raise invalid("inputs[log_probs]", f"shape {checks.shape_text(lp.shape)} is empty; expected T, N, C >= 1")
    blank = params["blank"]
    if not 0 <= blank < classes:
        raise invalid("params[blank]", f"{blank} is outside [0, {classes}) (C = log_probs' last dimension)")
    lengths_shape = (batch,) if batched else ()
    for role, t in (("input_lengths", il), ("target_lengths", tl)):
        if tuple(t.shape) != lengths_shape and not (not batched and tuple(t.shape) == (1,)):
            expected = f"({batch},), one per sequence" if batched else "() or (1,)"
            raise invalid(f"inputs[{role}]", f"shape {checks.shape_text(t.shape)}; expected {expected}")
    concatenated = targets.dim() == 1 and batched
    if batched and targets.dim() == 2:
        if targets.shape[0] != batch:
            raise invalid("inputs[targets]", f"shape {checks.shape_text(targets.shape)}; expected ({batch}, S) "
                          f"padded or (sum(target_lengths),) concatenated")
    elif not concatenated and not (not batched and targets.dim() == 1):
        expected = f"({batch}, S) padded or (sum(target_lengths),) concatenated" if batched else "(S,)"
        raise invalid("inputs[targets]", f"shape {checks.shape_text(targets.shape)}; expected {expected}")
    in_lengths, tgt_lengths = _values(il), _values(tl)
    for n, v in enumerate(in_lengths):
        if not 0 <= v <= frames:
            raise invalid("inputs[input_lengths]", f"value {v} at index {n} is outside [0, {frames}] "
                          "(T = log_probs' first dimension)")
    limit = targets.shape[-1]
    for n, v in enumerate(tgt_lengths):
        if v < 0 or (not concatenated and v > limit):
            bound = "be >= 0" if concatenated else f"lie in [0, {limit}] (S = targets' last dimension)"
            raise invalid("inputs[target_lengths]", f"value {v} at index {n} must {bound}")
    if concatenated and sum(tgt_lengths) != targets.shape[0]:
        raise invalid("inputs[target_lengths]", f"sum {sum(tgt_lengths)} must equal the length "
                      f"{targets.shape[0]} of the concatenated targets")
    # Labels actually used: the first target_lengths[n] of each row (padding beyond is ignored).
    flat = targets.to(torch.int64).reshape(-1)
    rows = targets.to(torch.int64).reshape(batch, -1) if not concatenated else None
    start = 0
    for n, length in enumerate(tgt_lengths):
        used = flat[start:start + length] if concatenated else rows[n, :length]  # type: ignore[index]
        bad = (used < 0) | (used >= classes) | (used == blank)
        if bool(bad.any()):
            k = int(bad.nonzero()[0].item())
            value = int(used[k].item())
            where = start + k if concatenated else (n, k)
            raise invalid("inputs[targets]", f"label {value} at {where} is not a class in [0, {classes}) other "
                          f"than blank {blank}")
        start += length


def _ctc_shape(tensors: Tensors, params: Params) -> tuple[int, ...]:
    lp = tensors["log_probs"]
    return (lp.shape[1],) if lp.dim() == 3 else ()


SPECS = (
    LossSpec(
        name="ctc",
        row_wise=False,
        summary="Connectionist temporal classification: -log of the total probability of every alignment of "
        "the target.",
        formula="l_n = -log sum_{alignments a -> y_n} prod_t exp(log_probs[t, n, a_t]); mean = "
        "mean_n(l_n / max(target_len_n, 1))",
        fn=ctc,
        roles=(
            Role("log_probs", (Kind.FLOAT,), "(T, N, C) or unbatched (T, C)", "per-frame log-probabilities "
                 "(log_softmax over C)", differentiable=True),
            Role("targets", (Kind.INDEX,), "(N, S) padded, (sum(target_lengths),) concatenated, or (S,) "
                 "unbatched; labels in [0, C), != blank", "target label sequences"),
            Role("input_lengths", (Kind.INDEX,), "(N,) (or () unbatched), each in [0, T]",
                 "frames used per sequence"),
            Role("target_lengths", (Kind.INDEX,), "(N,) (or () unbatched), each in [0, S]; they sum to the "
                 "length of concatenated targets", "labels used per sequence"),
        ),
        check=_check_ctc,
        unreduced_shape=_ctc_shape,
        params=(
            Param("blank", ParamType.INT, 0, "index of the blank label, in [0, C)", minimum=0),
            Param("zero_infinity", ParamType.BOOL, False, "turn infinite losses (no valid alignment) and their "
                  "gradients into 0"),
        ),
        aliases=("CTCLoss", "ctc_loss"),
        default_wrt=("log_probs",),
        notes="The value is torch's ctc_loss; the gradient is the true derivative w.r.t. log_probs (torch's "
        "backward adds exp(log_probs) * grad_output per used frame, i.e. it is the logits' gradient through "
        "log_softmax). Inputs are time-major log-probabilities as in torch (Keras' ctc takes batch-major softmax "
        "output).",
        category="sequence",
    ),
)
