"""A network conditioned on a diffusion bridge's endpoint ``x_T`` by concatenation (DDBM)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["ConcatConditioned"]


class ConcatConditioned(nnx.Module):
    r"""The raw network of a bridge denoiser, `F(x, c_noise, x_T, labels=None)`: the inner
    network applied to `x` and `x_T` concatenated on the last (feature / channel) axis, as DDBM
    (Zhou et al. 2024) feeds the condition to its U-Net. Use it under
    `jaxdiff.bridges.BridgePrecond`, which calls `raw(c_in x_t, c_noise, x_T)`.

    **Arguments:** `inner`, a network `inner(h, c_noise, labels=None)` whose input has the
    features of `x` and `x_T` together and whose output is shaped like `x`, e.g.
    `MLP(dim, in_dim=2 * dim, ...)` for vectors or
    `UNet(size, 2 * channels, out_channels=channels, ...)` for images.

    **Call:** `x` and `x_T` of the same shape `(B, ..., features)`, `c_noise` a scalar or
    `(B,)`, `labels` passed on to `inner`. Returns an array shaped like `x`.
    """

    def __init__(self, inner: nnx.Module):
        if not callable(inner):
            raise TypeError(f"inner must be a callable network, got {type(inner).__name__}")
        self.inner = inner

    def __call__(self, x, c_noise, x_T, labels=None) -> jax.Array:
        x = jnp.asarray(x)
        x_T = jnp.asarray(x_T)
        if x_T.shape != x.shape:
            raise ValueError(f"x_T must have the shape of x {x.shape}, got {x_T.shape}")
        h = jnp.concatenate([x, x_T.astype(x.dtype)], axis=-1)
        return self.inner(h, c_noise, labels)
