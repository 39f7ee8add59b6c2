"""A small DDPM++-style U-Net for images (NHWC)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_count, check_float_array
from ._common import (
    conditioning,
    make_noise_embedding,
)

__all__ = ["UNet"]

_zeros = nnx.initializers.zeros_init()
_xavier = nnx.initializers.xavier_uniform()  # DDPM++ / EDM's SongUNet initialisation


def _groups(ch: int) -> int:
    """GroupNorm groups as DDPM++ (`min(ch // 4, 32)`), lowered to a divisor of `ch`."""
    g = max(1, min(ch // 4, 32))
    while ch % g:
        g -= 1
    return g


def _norm(ch, kw):
    return nnx.GroupNorm(ch, num_groups=_groups(ch), **kw)


def _conv(cin, cout, kw, *, kernel=3, zero=False, **extra):
    init = dict(kernel_init=_zeros if zero else _xavier)
    return nnx.Conv(cin, cout, kernel_size=(kernel, kernel), padding="SAME", **init, **extra, **kw)


class _ResBlock(nnx.Module):
    """GN-SiLU-conv, noise embedding as GroupNorm scale/shift, SiLU-dropout-conv (zero init),
    skip (1x1 conv when the width changes), sum scaled by 1/sqrt(2) (DDPM++)."""

    def __init__(self, cin, cout, emb_ch, *, dropout, kw, rngs):
        self.norm1 = _norm(cin, kw)
        self.conv1 = _conv(cin, cout, kw)
        self.emb = nnx.Linear(emb_ch, 2 * cout, kernel_init=_xavier, **kw)
        self.norm2 = _norm(cout, kw)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
        self.conv2 = _conv(cout, cout, kw, zero=True)
        self.skip = _conv(cin, cout, kw, kernel=1) if cin != cout else None

    def __call__(self, x, e):
        h = self.conv1(nnx.silu(self.norm1(x)))
        scale, shift = jnp.split(self.emb(e)[:, None, None, :], 2, axis=-1)
        h = nnx.silu(self.norm2(h) * (1 + scale) + shift)
        if self.dropout is not None:
            h = self.dropout(h)
        h = self.conv2(h)
        skip = x if self.skip is None else self.skip(x)
        return (h + skip) * (1 / math.sqrt(2))


class _Attention(nnx.Module):
    """Multi-head self-attention over the pixels, residual, output projection zero-init."""

    def __init__(self, ch, *, num_heads, kw):
        if ch % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the width {ch} at attention")
        self.num_heads = num_heads
        self.norm = _norm(ch, kw)
        self.qkv = nnx.Linear(ch, 3 * ch, kernel_init=_xavier, **kw)
        self.proj = nnx.Linear(ch, ch, kernel_init=_zeros, **kw)

    def __call__(self, x):
        b, hh, ww, c = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, hh * ww, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(c // self.num_heads)
        h = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
        return (x + self.proj(h.reshape(b, hh, ww, c))) * (1 / math.sqrt(2))


class _Down(nnx.Module):
    def __init__(self, ch, *, kw):
        self.conv = _conv(ch, ch, kw, strides=(2, 2))

    def __call__(self, x):
        return self.conv(x)


class _Up(nnx.Module):
    def __init__(self, ch, *, kw):
        self.conv = _conv(ch, ch, kw)

    def __call__(self, x):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest neighbour
        return self.conv(x)


class UNet(nnx.Module):
    r"""A DDPM++-style U-Net `F(x, c_noise, labels=None)` on NHWC images (Song et al. 2021,
    "Score-Based Generative Modeling through SDEs", as configured in EDM's `SongUNet`; Ho et
    al. 2020's U-Net), small enough to train on 8x8 digits on a CPU.

    Levels `i = 0 .. len(channel_mults) - 1` at resolution `image_size / 2^i` with width
    `channels * channel_mults[i]`; each has `num_res_blocks` residual blocks (GroupNorm, SiLU,
    3x3 conv; the noise embedding enters every block as a scale/shift after the second
    GroupNorm; skip sum scaled by $1/\sqrt2$), self-attention after each block at the
    resolutions in `attention_resolutions` (resolutions the network never reaches are ignored),
    a strided-conv downsampling between levels, a middle block (res, attention, res) and a
    mirrored decoder (`num_res_blocks + 1` blocks per level fed with the encoder's skip
    activations, nearest-neighbour upsampling + conv). The noise embedding is a
    `FourierEmbedding` (or `SinusoidalEmbedding`) of `c_noise` followed by a 2-layer SiLU MLP
    of width `4 channels`, plus a learned label embedding of `num_classes + 1` rows when
    `num_classes > 0` (label `-1`/`labels=None`: the null class, for label dropout and
    classifier-free guidance). Output convolutions of the blocks and of the network are
    zero-initialised.

    **Arguments:** `image_size` (square images; must be divisible by
    `2^(len(channel_mults) - 1)`), `in_channels`, `channels` (base width), `channel_mults`,
    `num_res_blocks`, `attention_resolutions`, `num_heads` (must divide the widths where
    attention is used), `dropout` rate (> 0 draws from the `dropout` stream of `rngs` kept by
    the module; switch it off for sampling with `nnx.view(model, deterministic=True)` or
    `model.eval()`), `num_classes`, `embedding`, `param_dtype`, `out_channels` (default
    `in_channels`; fewer when the input carries conditioning channels, see
    `ConcatConditioned`), `rngs`.

    **Call:** `x` of shape `(B, image_size, image_size, in_channels)` (float32 or float64;
    computed and returned in `x.dtype`, with `out_channels` channels), `c_noise` a scalar or
    `(B,)`, `labels` `None` or int `(B,)`.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        *,
        channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (4,),
        num_heads: int = 1,
        dropout: float = 0.0,
        num_classes: int = 0,
        embedding: str = "fourier",
        param_dtype=jnp.float32,
        out_channels: int | None = None,
        rngs: nnx.Rngs,
    ):
        self.image_size = check_count("image_size", image_size)
        self.in_channels = check_count("in_channels", in_channels)
        self.out_channels = (
            self.in_channels if out_channels is None else check_count("out_channels", out_channels)
        )
        channels = check_count("channels", channels)
        mults = tuple(channel_mults)
        if not mults:
            raise ValueError("channel_mults must not be empty")
        for m in mults:
            check_count("channel_mults entries", m)
        num_res_blocks = check_count("num_res_blocks", num_res_blocks)
        num_heads = check_count("num_heads", num_heads)
        self.num_classes = check_count("num_classes", num_classes, minimum=0)
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        factor = 2 ** (len(mults) - 1)
        if image_size % factor:
            raise ValueError(
                f"image_size={image_size} cannot be halved {len(mults) - 1} times evenly "
                f"(len(channel_mults) - 1 downsamplings): it must be divisible by {factor}"
            )
        attn_res = {int(r) for r in attention_resolutions}
        attn_widths = {channels * mults[-1]} | {
            channels * m for i, m in enumerate(mults) if image_size // 2**i in attn_res
        }
        for width in sorted(attn_widths):
            if width % num_heads:
                raise ValueError(
                    f"num_heads={num_heads} must divide the width {width} at attention"
                )
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        block = dict(dropout=float(dropout), kw=kw, rngs=rngs)

        emb_ch = 4 * channels
        self.noise_embedding = make_noise_embedding(embedding, channels, rngs)
        self.emb1 = nnx.Linear(channels, emb_ch, kernel_init=_xavier, **kw)
        self.emb2 = nnx.Linear(emb_ch, emb_ch, kernel_init=_xavier, **kw)
        self.label_embedding = (
            nnx.Embed(self.num_classes + 1, emb_ch, **kw) if self.num_classes else None
        )

        self.conv_in = _conv(self.in_channels, channels, kw)
        enc, skips = [], [channels]
        ch, res = channels, image_size
        for level, mult in enumerate(mults):
            for _ in range(num_res_blocks):
                layers = [_ResBlock(ch, channels * mult, emb_ch, **block)]
                ch = channels * mult
                if res in attn_res:
                    layers.append(_Attention(ch, num_heads=num_heads, kw=kw))
                enc.append(nnx.List(layers))
                skips.append(ch)
            if level < len(mults) - 1:
                enc.append(nnx.List([_Down(ch, kw=kw)]))
                skips.append(ch)
                res //= 2
        self.encoder = nnx.List(enc)
        self.mid = nnx.List(
            [
                _ResBlock(ch, ch, emb_ch, **block),
                _Attention(ch, num_heads=num_heads, kw=kw),
                _ResBlock(ch, ch, emb_ch, **block),
            ]
        )
        dec = []
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(num_res_blocks + 1):
                layers = [_ResBlock(ch + skips.pop(), channels * mult, emb_ch, **block)]
                ch = channels * mult
                if res in attn_res:
                    layers.append(_Attention(ch, num_heads=num_heads, kw=kw))
                dec.append(nnx.List(layers))
            if level > 0:
                dec.append(nnx.List([_Up(ch, kw=kw)]))
                res *= 2
        self.decoder = nnx.List(dec)
        self.out_norm = _norm(ch, kw)
        self.conv_out = _conv(ch, self.out_channels, kw, zero=True)

    @staticmethod
    def _apply(layers, h, e):
        for layer in layers:
            h = layer(h, e) if isinstance(layer, _ResBlock) else layer(h)
        return h

    def __call__(self, x, c_noise, labels=None) -> jax.Array:
        x = check_float_array("x", x)
        want = (self.image_size, self.image_size, self.in_channels)
        if x.ndim != 4 or x.shape[1:] != want:
            raise ValueError(
                f"x must have shape (batch, image_size, image_size, in_channels) = "
                f"(batch, {want[0]}, {want[1]}, {want[2]}) (NHWC), got {x.shape}"
            )
        e = conditioning(self, x, c_noise, labels)

        h = self.conv_in(x)
        hs = [h]
        for layers in self.encoder:
            h = self._apply(layers, h, e)
            hs.append(h)
        h = self._apply(self.mid, h, e)
        for layers in self.decoder:
            if isinstance(layers[0], _ResBlock):
                h = jnp.concatenate([h, hs.pop()], axis=-1)
            h = self._apply(layers, h, e)
        return self.conv_out(nnx.silu(self.out_norm(h))).astype(x.dtype)
