"""remote_loss under JAX (CPU): values and gradients equal optax's for the same losses, under jit too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from lossd.client import LossClient
from lossd.server import BackgroundServer, ServerSettings

jax = pytest.importorskip("jax", reason="the jax extra: pip install 'lossd[jax]'")
optax = pytest.importorskip("optax", reason="optax is the oracle here (the test extra)")
jnp = jax.numpy

from lossd.integrations.jax import remote_loss  # noqa: E402


@pytest.fixture(scope="module")
def lossd() -> Iterator[LossClient]:
    with BackgroundServer(ServerSettings(port=0, metrics_port=0, device="cpu")) as srv, \
            LossClient(srv.address, timeout=60) as client:
        yield client


RNG = np.random.default_rng(0)
PRED = jnp.asarray(RNG.normal(size=(8, 3)).astype(np.float32))
TRUE = jnp.asarray(RNG.normal(size=(8, 3)).astype(np.float32))
LOGITS = jnp.asarray(RNG.normal(size=(8, 5)).astype(np.float32))
LABELS = jnp.asarray(RNG.integers(0, 5, 8))
BITS = jnp.asarray(RNG.integers(0, 2, (8, 3)).astype(np.float32))


@pytest.mark.parametrize(("loss", "params", "oracle", "args"), [
    ("huber", {"delta": 0.5}, lambda p, t: jnp.mean(optax.huber_loss(p, t, delta=0.5)), (PRED, TRUE)),
    ("mse", {}, lambda p, t: jnp.mean(2 * optax.l2_loss(p, t)), (PRED, TRUE)),
    ("bce_with_logits", {}, lambda p, t: jnp.mean(optax.sigmoid_binary_cross_entropy(p, t)), (PRED, BITS)),
    ("cross_entropy", {}, lambda z, y: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, y)),
     (LOGITS, LABELS)),
], ids=["huber", "mse", "bce_with_logits", "cross_entropy"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_value_and_gradient_equal_optax(lossd: LossClient, loss: str, params: dict[str, Any], oracle: Any,
                                        args: tuple[Any, ...], jit: bool) -> None:
    f = remote_loss(loss, lossd, **params)
    ours = jax.value_and_grad(lambda first: f(first, *args[1:]))
    theirs = jax.value_and_grad(lambda first: oracle(first, *args[1:]))
    if jit:
        ours, theirs = jax.jit(ours), jax.jit(theirs)
    (value, grad), (expected, expected_grad) = ours(args[0]), theirs(args[0])
    np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_gradients_of_both_floating_inputs_and_the_cotangent(lossd: LossClient) -> None:
    """d/dp and d/dt of 3 * mse, by argnums; the upstream factor scales both."""
    f = remote_loss("mse", lossd, reduction="sum")
    gp, gt = jax.grad(lambda p, t: 3.0 * f(p, t), argnums=(0, 1))(PRED, TRUE)
    np.testing.assert_allclose(gp, 6 * (PRED - TRUE), rtol=1e-6)
    np.testing.assert_allclose(gt, -6 * (PRED - TRUE), rtol=1e-6)


def test_an_unreduced_loss_is_refused(lossd: LossClient) -> None:
    with pytest.raises(ValueError, match="mean and sum"):
        remote_loss("mse", lossd, reduction="none")
