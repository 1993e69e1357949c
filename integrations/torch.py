"""``RemoteLoss``: a torch loss module whose value and gradients a lossd server computes.

    from lossd.client import LossClient
    from lossd.integrations.torch import RemoteLoss

    criterion = RemoteLoss("huber", LossClient("localhost:50051"), delta=0.5)
    loss = criterion(model(x), y)          # roles by position, in the loss's own order, or by keyword
    loss.backward()

A training step costs one call: forward sends the inputs in a Gradient request when an input requires grad
(a Compute otherwise, or under ``torch.no_grad()``), keeps the gradients, and backward scales them by the
upstream gradient, which for a reduced loss is a scalar. With ``reduction="none"`` the upstream gradient is
a tensor known only in backward: forward then sends a Compute, and backward a second call, a Gradient with
that ``grad_output``; two round trips a step, exact for every loss. CUDA tensors go through the host; the
gradients come back on each input's device and in its dtype (float16 and bfloat16 included, as under
autocast). This module imports torch, which the caller already has; lossd's client does not need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lossd.client import LossClient


class RemoteLoss(torch.nn.Module):
    """A lossd loss as a ``torch.nn.Module``: ``criterion(input, target)`` returns a tensor with a grad_fn."""

    def __init__(self, loss: str, client: LossClient, reduction: str = "mean", **params: Any) -> None:
        super().__init__()
        info = client.describe(loss)
        self.loss = info.name
        self.reduction = reduction
        self.params = params
        self._client = client
        self._roles = [r.name for r in info.inputs]
        self._differentiable = {r.name for r in info.inputs if r.differentiable}

    def extra_repr(self) -> str:
        return f"{self.loss!r}, reduction={self.reduction!r}" + "".join(f", {k}={v!r}" for k, v in self.params.items())

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        """The loss of the inputs (by position in the loss's role order, or by keyword)."""
        inputs = self._by_role(args, kwargs)
        wrt = [r for r, t in inputs.items() if r in self._differentiable and t.requires_grad]
        names = list(inputs)
        if not (torch.is_grad_enabled() and wrt):
            return self._value(self._client.compute(self.loss, inputs=_host(inputs), params=self.params,
                                                    reduction=self.reduction), inputs)
        return _Remote.apply(self, names, wrt, *inputs.values())

    def _by_role(self, args: Sequence[torch.Tensor], kwargs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(args) > len(self._roles):
            raise TypeError(f"{self.loss} takes at most {len(self._roles)} inputs ({', '.join(self._roles)}); "
                            f"got {len(args)}")
        inputs = dict(zip(self._roles, args, strict=False))
        for name, value in kwargs.items():
            if name not in self._roles:
                raise TypeError(f"{self.loss} has no input {name!r}; its inputs: {', '.join(self._roles)}")
            if name in inputs:
                raise TypeError(f"{self.loss}: {name!r} given by position and by keyword")
            inputs[name] = value
        return inputs

    def _value(self, value: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss as a tensor in the first floating input's dtype, on its device."""
        first = next(t for t in inputs.values() if t.is_floating_point())
        # A copy: the client's arrays are read-only views of the reply.
        return torch.tensor(np.asarray(value)).to(device=first.device, dtype=first.dtype)


def _host(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t.detach().cpu() for name, t in inputs.items()}


class _Remote(torch.autograd.Function):
    """Forward: one Gradient call for a reduced loss (a Compute for an unreduced one); backward: the kept
    gradients times the scalar upstream (a Gradient call with grad_output for an unreduced loss)."""

    @staticmethod
    def forward(ctx: Any, module: RemoteLoss, names: list[str], wrt: list[str], *tensors: torch.Tensor
                ) -> torch.Tensor:
        inputs = dict(zip(names, tensors, strict=True))
        ctx.module, ctx.names, ctx.wrt = module, names, wrt
        ctx.devices = {name: (t.device, t.dtype) for name, t in inputs.items()}
        hosted = _host(inputs)
        client = module._client
        if module.reduction == "none":
            ctx.hosted = hosted
            value = client.compute(module.loss, inputs=hosted, params=module.params, reduction="none")
            ctx.grads = None
        else:
            value, ctx.grads = client.gradient(module.loss, inputs=hosted, params=module.params, wrt=wrt,
                                               reduction=module.reduction)
        return module._value(value, inputs)

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        module = ctx.module
        if ctx.grads is None:
            _, grads = module._client.gradient(module.loss, inputs=ctx.hosted, params=module.params, wrt=ctx.wrt,
                                               reduction="none", grad_output=upstream.detach().cpu())
            scale = None
        else:
            grads, scale = ctx.grads, upstream
        out: list[torch.Tensor | None] = [None, None, None]
        for name in ctx.names:
            if name not in ctx.wrt:
                out.append(None)
                continue
            device, dtype = ctx.devices[name]
            grad = torch.tensor(np.asarray(grads[name])).to(device=device, dtype=dtype)
            out.append(grad * scale.to(dtype) if scale is not None else grad)
        return tuple(out)
