"""A residual MLP for low-dimensional data (2-D toys, flattened small images)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_count, check_float_array
from ._common import (
    conditioning,
    make_noise_embedding,
)

__all__ = ["MLP"]

_zeros = nnx.initializers.zeros_init()
_xavier = nnx.initializers.xavier_uniform()


class _Block(nnx.Module):
    """`h + W2 silu(FiLM(W1 LN(h), e))`, FiLM: `y (1 + scale) + shift` from the embedding."""

    def __init__(self, hidden: int, *, param_dtype, rngs: nnx.Rngs):
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.norm = nnx.LayerNorm(hidden, **kw)
        self.lin1 = nnx.Linear(hidden, hidden, kernel_init=_xavier, **kw)
        self.film = nnx.Linear(hidden, 2 * hidden, kernel_init=_xavier, **kw)
        self.lin2 = nnx.Linear(hidden, hidden, kernel_init=_zeros, **kw)

    def __call__(self, h, e):
        scale, shift = jnp.split(self.film(e), 2, axis=-1)
        y = self.lin1(self.norm(h)) * (1 + scale) + shift
        return h + self.lin2(nnx.silu(y))


class MLP(nnx.Module):
    r"""A residual MLP `F(x, c_noise, labels=None)` on vectors, for use under a preconditioner
    (`jaxdiff.parametrizations.EDMPrecond(MLP(...))`) or as an eps/score network.

    Architecture: `x -> Linear(dim, hidden)`, then `depth` pre-norm residual blocks
    `h + W2 silu(FiLM(W1 LayerNorm(h)))` whose FiLM scale/shift (Perez et al. 2018) come from the
    noise embedding (`FourierEmbedding` or `SinusoidalEmbedding` of `c_noise`, then a 2-layer
    SiLU MLP), plus a learned label embedding when `num_classes > 0`; finally
    `LayerNorm -> SiLU -> Linear(hidden, dim)` (zero-initialised, so the untrained network
    outputs 0 and a preconditioned denoiser starts at `c_skip x`).

    **Arguments:** `dim` (data dimension), `hidden` width, `depth` number of residual blocks,
    `in_dim` the input width (default `dim`; e.g. `2 dim` for an input concatenated with a
    conditioning vector of the same size, see `ConcatConditioned`), `emb_dim` width of the
    noise features, `embedding` `"fourier"` or `"sinusoidal"`,
    `num_classes` (0: unconditional; else labels in `[0, num_classes)` and `-1` for "no label",
    a learned null class used for label dropout and classifier-free guidance),
    `param_dtype` of the weights, `rngs` (stream `params`).

    **Call:** `x` of shape `(B, in_dim)` (float32 or float64: computed and returned in `x.dtype`),
    `c_noise` a scalar or shape `(B,)`, `labels` `None` (all null) or int `(B,)`.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 256,
        depth: int = 4,
        emb_dim: int = 128,
        embedding: str = "fourier",
        num_classes: int = 0,
        param_dtype=jnp.float32,
        in_dim: int | None = None,
        rngs: nnx.Rngs,
    ):
        self.dim = check_count("dim", dim)
        self.in_dim = self.dim if in_dim is None else check_count("in_dim", in_dim)
        hidden = check_count("hidden", hidden)
        depth = check_count("depth", depth, minimum=0)
        self.num_classes = check_count("num_classes", num_classes, minimum=0)
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.noise_embedding = make_noise_embedding(embedding, emb_dim, rngs)
        self.emb1 = nnx.Linear(emb_dim, hidden, kernel_init=_xavier, **kw)
        self.emb2 = nnx.Linear(hidden, hidden, kernel_init=_xavier, **kw)
        self.label_embedding = (
            nnx.Embed(self.num_classes + 1, hidden, **kw) if self.num_classes else None
        )
        self.inp = nnx.Linear(self.in_dim, hidden, kernel_init=_xavier, **kw)
        self.blocks = nnx.List(
            [_Block(hidden, param_dtype=param_dtype, rngs=rngs) for _ in range(depth)]
        )
        self.out_norm = nnx.LayerNorm(hidden, **kw)
        self.out = nnx.Linear(hidden, self.dim, kernel_init=_zeros, **kw)

    def __call__(self, x, c_noise, labels=None) -> jax.Array:
        x = check_float_array("x", x)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            what = "dim" if self.in_dim == self.dim else "in_dim"
            raise ValueError(f"x must have shape (batch, {what}={self.in_dim}), got {x.shape}")
        e = conditioning(self, x, c_noise, labels)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, e)
        return self.out(nnx.silu(self.out_norm(h))).astype(x.dtype)
