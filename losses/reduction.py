"""The reductions every loss offers: "mean", "sum", and anything else ("none") as it is."""

from __future__ import annotations

import torch


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """``loss``'s mean, its sum, or ``loss`` itself (reduction "none", or a loss's own kinds handled before)."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
