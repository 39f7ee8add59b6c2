"""Exponential moving average of the weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ema_decay_at", "ema_update"]


def ema_decay_at(step: jax.typing.ArrayLike, decay: float, *, warmup: bool = True) -> jax.Array:
    """The EMA decay for the update after ``step`` completed updates.

    With ``warmup``, ``min(decay, (1 + step) / (10 + step))`` (as in TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``): the average forgets the random
    initialization quickly early on, then settles at ``decay``.
    """
    decay = jnp.asarray(decay, jnp.float32)
    if not warmup:
        return decay
    n = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def ema_update(ema, params, decay: jax.typing.ArrayLike):
    """``decay * ema + (1 - decay) * params``, leaf by leaf, keeping each leaf's dtype."""
    return jax.tree.map(lambda e, p: (e + (1.0 - decay) * (p - e)).astype(e.dtype), ema, params)
