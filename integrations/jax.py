"""A lossd loss as a JAX function: ``jax.custom_vjp`` around ``jax.pure_callback``, so it works under ``jit`` and
``grad`` (the server computes; JAX sees a callback with a known result shape).

    import jax
    from lossd.client import LossClient
    from lossd.integrations.jax import remote_loss

    huber = remote_loss("huber", LossClient("localhost:50051"), delta=0.5)
    value, grads = jax.value_and_grad(lambda p: huber(model(p, x), y))(params)

The forward pass sends one Gradient call (the value and the gradients of every floating input), and the
backward pass scales those gradients by the upstream cotangent: one round trip a step. Reductions "mean" and
"sum" (the value's shape must be known when tracing). Integer inputs (class indices) get no cotangent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lossd.client import LossClient


def remote_loss(loss: str, client: LossClient, reduction: str = "mean", **params: Any) -> Callable[..., jax.Array]:
    """``f(*inputs)``, the inputs in the loss's role order (``client.describe(loss).inputs``), returning the
    reduced loss as a 0-d array differentiable with respect to every floating input."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: {reduction!r}; remote_loss offers mean and sum (an unreduced loss's shape "
                         f"is not known when JAX traces)")
    info = client.describe(loss)
    roles = [r.name for r in info.inputs]
    differentiable = {r.name for r in info.inputs if r.differentiable}

    def names(count: int) -> list[str]:
        if count > len(roles):
            raise TypeError(f"{info.name} takes at most {len(roles)} inputs ({', '.join(roles)}); got {count}")
        return roles[:count]

    def floats(args: Sequence[Any]) -> list[int]:
        return [i for i, (name, a) in enumerate(zip(names(len(args)), args, strict=False))
                if name in differentiable and jnp.issubdtype(a.dtype, jnp.floating)]

    def value_shape(args: Sequence[Any]) -> jax.ShapeDtypeStruct:
        first = next(a for a in args if jnp.issubdtype(a.dtype, jnp.floating))
        return jax.ShapeDtypeStruct((), first.dtype)

    def host_value(*arrays: np.ndarray) -> np.ndarray:
        inputs = dict(zip(names(len(arrays)), arrays, strict=False))
        value = client.compute(info.name, inputs=inputs, params=params, reduction=reduction)
        return np.asarray(value, dtype=next(a for a in arrays if np.issubdtype(a.dtype, np.floating)).dtype)

    def host_gradient(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        chosen = names(len(arrays))
        inputs = dict(zip(chosen, arrays, strict=False))
        wrt = [chosen[i] for i in floats(arrays)]
        value, grads = client.gradient(info.name, inputs=inputs, params=params, wrt=wrt, reduction=reduction)
        dtype = next(a for a in arrays if np.issubdtype(a.dtype, np.floating)).dtype
        return (np.asarray(value, dtype=dtype), *(np.asarray(grads[r], dtype=inputs[r].dtype) for r in wrt))

    @jax.custom_vjp
    def f(*args: Any) -> jax.Array:
        return jax.pure_callback(host_value, value_shape(args), *args, vmap_method="sequential")

    def forward(*args: Any) -> tuple[jax.Array, tuple[Any, ...]]:
        wanted = floats(args)
        shapes = (value_shape(args), *(jax.ShapeDtypeStruct(args[i].shape, args[i].dtype) for i in wanted))
        value, *grads = jax.pure_callback(host_gradient, shapes, *args, vmap_method="sequential")
        return value, (tuple(wanted), tuple(grads), len(args))

    def backward(residual: tuple[Any, ...], cotangent: jax.Array) -> tuple[Any, ...]:
        wanted, grads, count = residual
        out: list[Any] = [None] * count  # None: no cotangent (integer inputs, roles that are not differentiable)
        for i, g in zip(wanted, grads, strict=True):
            out[i] = g * cotangent.astype(g.dtype)
        return tuple(out)

    f.defvjp(forward, backward)
    f.__name__ = f"lossd_{info.name}"
    return f
