"""Where batches are scored: in this process by lossd's own registry, validation and closed forms (the
embedded default: nothing to start), or by lossd servers through :class:`~lossd.client.LossClient`.

Both answer the same question — the unreduced loss of a batch, and its gradients — and fail the same ways:
:class:`Refused` for data the loss does not accept (with the fields at fault), :class:`UsageError` for a job
that cannot work at all (an unknown loss or parameter), :class:`Unreachable` when no server answers.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class UsageError(Exception):
    """The job cannot run as asked (exit code 2)."""


class Unreachable(Exception):
    """No server answered (exit code 3)."""


class Refused(Exception):
    """The loss refused a batch: ``violations`` are (field, description) pairs, e.g. ("inputs[target]", ...)."""

    def __init__(self, violations: Sequence[tuple[str, str]], message: str = "") -> None:
        super().__init__(message or "; ".join(f"{f}: {d}" for f, d in violations))
        self.violations = tuple(violations)


@dataclass(frozen=True)
class LossMeta:
    """What the scorer needs to know of a loss, from the registry or from a server's ListLosses."""

    name: str
    required: tuple[str, ...]
    roles: tuple[str, ...]
    differentiable: tuple[str, ...]
    default_wrt: tuple[str, ...]
    row_wise: bool


Answer = tuple[np.ndarray, dict[str, np.ndarray]]


class InProcessEngine:
    """Scores with ``lossd.losses`` in this process (torch is imported on first use)."""

    def __init__(self, device: str = "auto") -> None:
        import torch

        from lossd import losses

        self._torch = torch
        self._losses = losses
        self._device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                    ("cpu" if device == "auto" else device))
        # Arrow's buffers are read-only and are only ever read here, as in the server's codec.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)

    def describe(self, loss: str) -> LossMeta:
        """The loss's roles and row-wise property; UsageError for an unknown name."""
        try:
            spec, _ = self._losses.REGISTRY.resolve(loss)
        except self._losses.UnknownLossError as exc:
            raise UsageError(str(exc.message)) from None
        return LossMeta(spec.name, tuple(r.name for r in spec.roles if r.required),
                        tuple(r.name for r in spec.roles), spec.differentiable_roles, spec.default_wrt,
                        spec.row_wise)

    def run(self, loss: str, tensors: Mapping[str, np.ndarray], params: Mapping[str, Any],
            wrt: Sequence[str] | None) -> Answer:
        """The unreduced loss and, when ``wrt`` is given, the gradients of its sum."""
        torch, losses = self._torch, self._losses
        spec, preset = losses.REGISTRY.resolve(loss)
        inputs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
        try:
            prepared = losses.validate(spec, inputs, dict(params), "none", wrt=list(wrt) if wrt is not None else None,
                                       preset=preset)
            result = losses.evaluate(prepared, self._device)
        except losses.InvalidRequestError as exc:
            raise Refused([(v.field, v.description) for v in exc.violations]) from None
        except losses.LossdError as exc:
            raise Refused([("inputs", exc.message)]) from None
        grads = {role: _numpy(g) for role, g in result.gradients.items()} if wrt is not None else {}
        return _numpy(result.loss), grads

    def close(self) -> None:
        """Nothing to release."""


def _numpy(t: Any) -> np.ndarray:
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()


class RemoteEngine:
    """Scores on lossd servers; UNAVAILABLE is retried (on another server, by the client's round robin)
    for up to ``retry_seconds`` before the job gives up as :class:`Unreachable`."""

    def __init__(self, client: Any = None, servers: Sequence[str] = (), *, retry_seconds: float = 30.0,
                 timeout: float | None = 300.0) -> None:
        from lossd.client import LossClient

        self._own = client is None
        if client is None:
            target: Any = servers[0] if len(servers) == 1 else list(servers)
            client = LossClient(target, timeout=timeout)
        self._client = client
        self._retry_seconds = retry_seconds

    def _with_retries(self, call: Any) -> Any:
        from lossd.client import DeadlineExceededError, InvalidArgumentError, LossNotFoundError, UnavailableError

        deadline = time.monotonic() + self._retry_seconds
        pause = 0.1
        while True:
            try:
                return call()
            except InvalidArgumentError as exc:
                violations = [(v.field, v.description) for v in exc.violations] or [("inputs", exc.message)]
                raise Refused(violations, exc.message) from None
            except LossNotFoundError as exc:
                raise UsageError(exc.message) from None
            except (UnavailableError, DeadlineExceededError) as exc:
                if time.monotonic() + pause > deadline:
                    raise Unreachable(f"no lossd server answered within {self._retry_seconds:g} s: {exc.message}") \
                        from None
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def describe(self, loss: str) -> LossMeta:
        """The loss as the server describes it (ListLosses)."""
        info = self._with_retries(lambda: self._client.describe(loss))
        return LossMeta(info.name, tuple(r.name for r in info.inputs if r.required),
                        tuple(r.name for r in info.inputs), tuple(r.name for r in info.inputs if r.differentiable),
                        tuple(info.default_wrt), info.row_wise)

    def run(self, loss: str, tensors: Mapping[str, np.ndarray], params: Mapping[str, Any],
            wrt: Sequence[str] | None) -> Answer:
        """The unreduced loss and, when ``wrt`` is given, the gradients of its sum, from a server."""
        if wrt is None:
            value = self._with_retries(lambda: self._client.compute(loss, inputs=tensors, params=params,
                                                                    reduction="none"))
            return np.asarray(value), {}
        value, grads = self._with_retries(lambda: self._client.gradient(loss, inputs=tensors, params=params,
                                                                        reduction="none", wrt=wrt))
        return np.asarray(value), grads

    def close(self) -> None:
        """Close the client this engine opened (a client passed in stays open)."""
        if self._own:
            self._client.close()
