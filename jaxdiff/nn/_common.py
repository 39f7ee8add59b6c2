"""Shared pieces of the networks: input checks, the noise embedding and class conditioning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import is_traced
from ._embedding import FourierEmbedding, SinusoidalEmbedding

_EMBEDDINGS = ("fourier", "sinusoidal")


def make_noise_embedding(kind: str, dim: int, rngs: nnx.Rngs):
    if kind == "fourier":
        return FourierEmbedding(dim, rngs=rngs)
    if kind == "sinusoidal":
        return SinusoidalEmbedding(dim)
    raise ValueError(f"embedding must be one of {_EMBEDDINGS}, got {kind!r}")


def batch_noise(c_noise, batch: int, dtype) -> jax.Array:
    """`c_noise` of shape `()` or `(batch,)` as a `(batch,)` array of `dtype`."""
    c = jnp.asarray(c_noise)
    if c.shape not in ((), (batch,)):
        raise ValueError(
            f"c_noise must be a scalar or have shape (batch,) = ({batch},), got shape {c.shape}"
        )
    return jnp.broadcast_to(c.astype(dtype), (batch,))


def label_index(labels, batch: int, num_classes: int) -> jax.Array | None:
    """Row of the label embedding for each sample: `labels` in `[0, num_classes)`, `-1` (or
    `labels=None`) the null class `num_classes`. Values are checked only when concrete."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError("labels were given to an unconditional network (num_classes=0)")
        return None
    if labels is None:
        return jnp.full((batch,), num_classes, dtype=jnp.int32)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape (batch,) = ({batch},), got {labels.shape}")
    if not is_traced(labels) and labels.size:
        lo, hi = int(jnp.min(labels)), int(jnp.max(labels))
        if lo < -1 or hi >= num_classes:
            raise ValueError(
                f"labels must lie in [0, num_classes={num_classes}) or be -1 (no label), got "
                f"values in [{lo}, {hi}]"
            )
    return jnp.where(labels < 0, num_classes, labels).astype(jnp.int32)


def conditioning(net, x: jax.Array, c_noise, labels) -> jax.Array:
    """The conditioning vector of a network, one per sample: the noise embedding through two
    linear layers, plus the label embedding when the network is class-conditional, then SiLU.
    `net` has `noise_embedding`, `emb1`, `emb2`, `num_classes` and `label_embedding`."""
    batch = x.shape[0]
    c = batch_noise(c_noise, batch, x.dtype)
    idx = label_index(labels, batch, net.num_classes)
    e = net.emb2(nnx.silu(net.emb1(net.noise_embedding(c))))
    if idx is not None:
        e = e + net.label_embedding(idx)
    return nnx.silu(e)
