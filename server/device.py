"""Turns the ``device`` setting into a torch device, refusing ones this host does not have."""

from __future__ import annotations

import torch


def resolve_device(setting: str) -> torch.device:
    """``auto`` → ``cuda:0`` when CUDA is available, else ``cpu``; ``cuda[:N]`` must exist here."""
    if setting == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {setting!r} requested, but this host has no usable CUDA device")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {setting!r} requested, but only {torch.cuda.device_count()} CUDA devices exist")
        device = torch.device("cuda", index)
    return device
