r"""Noise-level embeddings: map the network's noise input `c_noise` (one value per sample) to a
feature vector.

- `FourierEmbedding`: random Fourier features (Tancik et al. 2020, "Fourier Features Let
  Networks Learn High Frequency Functions"; the `GaussianFourierProjection` of NCSN++, Song et
  al. 2021, "Score-Based Generative Modeling through SDEs", and EDM's `FourierEmbedding`):
  $[\cos(2\pi f c), \sin(2\pi f c)]$ with fixed frequencies $f \sim \mathcal N(0, s^2)$.
- `SinusoidalEmbedding`: the transformer positional encoding used by DDPM (Ho et al. 2020,
  "Denoising Diffusion Probabilistic Models"):
  $[\cos(c\,\omega_k), \sin(c\,\omega_k)]$, $\omega_k = P^{-k/(d/2)}$, $P$ = `max_period`.

Both map `c_noise` of shape `(...)` to `(..., dim)`, in the dtype of `c_noise` (floating;
integer input becomes the default float).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_count

__all__ = ["FourierEmbedding", "SinusoidalEmbedding"]


class Buffer(nnx.Variable):
    """A fixed (non-trainable) array held by a module: not an `nnx.Param`, so optimizers
    built on `nnx.Param` leave it alone."""


def _check_dim(dim) -> int:
    dim = check_count("dim", dim, minimum=2)
    if dim % 2:
        raise ValueError(f"dim must be an even int >= 2, got {dim}")
    return dim


def _float(c_noise) -> jax.Array:
    c = jnp.asarray(c_noise)
    if not jnp.issubdtype(c.dtype, jnp.floating):
        c = c.astype(jnp.result_type(float))
    return c


class FourierEmbedding(nnx.Module):
    r"""Random Fourier features of the noise level: $[\cos(2\pi f c), \sin(2\pi f c)]$ with
    `dim // 2` frequencies $f \sim \mathcal N(0, \mathrm{scale}^2)$ drawn once at construction
    and kept fixed (a `Buffer`, not a trainable parameter), as NCSN++ / EDM's DDPM++ (which
    use `scale = 16`, suited to `c_noise = ln(sigma) / 4`).

    **Arguments:** `dim` (even), `scale` (the frequencies' standard deviation), `rngs`
    (stream `params`).

    **Call:** `c_noise` of shape `(...)` -> `(..., dim)`.
    """

    def __init__(self, dim: int, *, scale: float = 16.0, rngs: nnx.Rngs):
        self.dim = _check_dim(dim)
        if not float(scale) > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.freqs = Buffer(float(scale) * jax.random.normal(rngs.params(), (dim // 2,)))

    def __call__(self, c_noise) -> jax.Array:
        c = _float(c_noise)
        freqs = self.freqs[...].astype(c.dtype)
        arg = (2 * math.pi) * c[..., None] * freqs
        return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=-1)


class SinusoidalEmbedding(nnx.Module):
    r"""DDPM's sinusoidal (transformer positional) embedding of the noise level:
    $[\cos(c\,\omega_k), \sin(c\,\omega_k)]_{k < d/2}$ with
    $\omega_k = \mathrm{max\_period}^{-k/(d/2)}$ (Ho et al. 2020; Vaswani et al. 2017).
    Suited to `c_noise` spanning hundreds (DDPM step indices, `VPPrecond`'s `999 t`).

    **Arguments:** `dim` (even), `max_period`. No parameters.

    **Call:** `c_noise` of shape `(...)` -> `(..., dim)`.
    """

    def __init__(self, dim: int, *, max_period: float = 10000.0):
        self.dim = _check_dim(dim)
        if not float(max_period) > 1:
            raise ValueError(f"max_period must be > 1, got {max_period}")
        self.max_period = float(max_period)

    def __call__(self, c_noise) -> jax.Array:
        c = _float(c_noise)
        half = self.dim // 2
        freqs = jnp.exp(-math.log(self.max_period) * jnp.arange(half, dtype=c.dtype) / half)
        arg = c[..., None] * freqs
        return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=-1)
