r"""The layers of diffusers' `UNet2DModel` in flax NNX, on NHWC arrays: the residual block
(`ResnetBlock2D`), pixel self-attention (`Attention` as its deprecated attention block builds
it), resampling (strided/nearest convolutions, average pooling, and the FIR filters of the
score-SDE NCSN++ networks) and the time embeddings (sinusoidal, Gaussian Fourier).

Attribute names follow diffusers' module names (`norm1`, `conv1`, `time_emb_proj`,
`to_q`, `to_out[0]`, ...), so that a parameter's path in the NNX state is its key in the
checkpoint (see `jaxdiff.pretrained._weights`). Written from diffusers' architecture
(`diffusers/models/resnet.py`, `attention_processor.py`, `embeddings.py`, `upsampling.py`,
`downsampling.py`), arithmetic in the same order where rounding could differ.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from ._winograd import INPUT_TILE, conv3x3, kernel_transform

#: The 1-D FIR kernel of NCSN++'s resampling (Song et al. 2021, after StyleGAN2), separable.
FIR_KERNEL = (1.0, 3.0, 3.0, 1.0)


def _mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


ACTIVATION_FNS = {
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "mish": _mish,
    "gelu": partial(jax.nn.gelu, approximate=False),  # torch.nn.GELU's default: erf
    "relu": jax.nn.relu,
}


def compute_dtype(dtype):
    """The dtype of normalization statistics and softmax: at least float32 (diffusers
    upcasts them for half-precision weights)."""
    return jnp.promote_types(dtype, jnp.float32)


def param(rngs: nnx.Rngs | None, init, shape: tuple[int, ...], dtype) -> nnx.Param:
    """A parameter drawn by `init(key, shape, dtype)`, or with `rngs=None` its shape alone
    (a `jax.ShapeDtypeStruct`: a structure for `load_weights` to fill, built without
    tracing or memory)."""
    if rngs is None:
        return nnx.Param(jax.ShapeDtypeStruct(shape, dtype))
    return nnx.Param(init(rngs.params(), shape, dtype))


#: The fewest input and output channels for which `Conv.to_winograd` pays (measured: the
#: 3->128 and 128->3 convolutions at a U-Net's ends are faster direct).
WINOGRAD_MIN_CHANNELS = 32

_fan_in = nnx.initializers.lecun_normal()  # torch's default differs: any init does here
_zeros = nnx.initializers.zeros_init()


class Conv(nnx.Module):
    """A torch-style `Conv2d` on NHWC: `kernel` `(k, k, in, out)`, `bias`, stride, symmetric
    zero padding `(k - 1) // 2` unless given.

    `to_winograd()` turns a 3x3, stride-1, padding-1 one into Winograd's F(4x4, 3x3)
    (`jaxdiff.pretrained._winograd`): its `kernel` is replaced by `winograd_kernel`
    `(6, 6, in, out)`, the same weights in the Winograd domain (diffusers' key stays
    `...weight`: `load_weights` transforms it)."""

    def __init__(self, cin, cout, kernel, *, stride=1, padding=None, dtype, rngs):
        self.stride = stride
        self.padding = (kernel - 1) // 2 if padding is None else padding
        self.kernel = param(rngs, _fan_in, (kernel, kernel, cin, cout), dtype)
        self.bias = param(rngs, _zeros, (cout,), dtype)
        self.winograd = False

    def winograd_eligible(self, min_channels: int = WINOGRAD_MIN_CHANNELS) -> bool:
        """Whether `to_winograd` applies and pays: 3x3, stride 1, padding 1, at least
        `min_channels` input and output channels (fewer leave the matrix products too thin
        to beat the direct convolution)."""
        if self.winograd:
            return False
        k, _, cin, cout = self.kernel.shape
        return (k, self.stride, self.padding) == (3, 1, 1) and min(cin, cout) >= min_channels

    def to_winograd(self) -> None:
        """Compute this convolution with F(4x4, 3x3) from now on (in place; see the class)."""
        if not self.winograd_eligible(min_channels=1):  # False once converted, too
            raise ValueError("to_winograd needs a 3x3, stride-1, padding-1 convolution")
        kernel = self.kernel.get_value()
        _, _, cin, cout = kernel.shape
        if isinstance(kernel, jax.ShapeDtypeStruct):
            value = jax.ShapeDtypeStruct((INPUT_TILE, INPUT_TILE, cin, cout), kernel.dtype)
        else:
            value = jnp.asarray(kernel_transform(kernel), kernel.dtype)
        del self.kernel
        self.winograd_kernel = nnx.Param(value)
        self.winograd = True

    def __call__(self, x):
        if self.winograd:
            return conv3x3(x, self.winograd_kernel[...]) + self.bias[...]
        p = self.padding
        kernel = self.kernel[...]
        if kernel.shape[:2] == (1, 1) and self.stride == 1 and p == 0:
            return x @ kernel[0, 0] + self.bias[...]  # a matrix product: faster on CPU
        y = jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(self.stride, self.stride),
            padding=((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + self.bias[...]


class Linear(nnx.Module):
    """`torch.nn.Linear`: `kernel` `(in, out)`, `bias`."""

    def __init__(self, cin, cout, *, dtype, rngs):
        self.kernel = param(rngs, _fan_in, (cin, cout), dtype)
        self.bias = param(rngs, _zeros, (cout,), dtype)

    def __call__(self, x):
        return x @ self.kernel[...] + self.bias[...]


class Embed(nnx.Module):
    """`torch.nn.Embedding`: rows of `embedding` `(num, features)` by integer index."""

    def __init__(self, num, features, *, dtype, rngs):
        self.embedding = param(rngs, nnx.initializers.normal(1.0), (num, features), dtype)

    def __call__(self, index):
        return jnp.take(self.embedding[...], jnp.asarray(index), axis=0)


class GroupNorm(nnx.Module):
    """`torch.nn.GroupNorm` on NHWC (or `(B, L, C)`) arrays: statistics per sample and group
    of consecutive channels over all other axes, two-pass variance, in at least float32; the
    affine parameters are `scale` (diffusers' `weight`) and `bias`."""

    def __init__(self, channels: int, groups: int, *, eps: float, dtype, rngs: nnx.Rngs | None):
        if channels % groups:
            raise ValueError(
                f"GroupNorm: {groups} groups do not divide {channels} channels (check "
                "norm_num_groups and block_out_channels)"
            )
        self.groups = groups
        self.eps = float(eps)
        self.scale = param(rngs, nnx.initializers.ones_init(), (channels,), dtype)
        self.bias = param(rngs, _zeros, (channels,), dtype)

    def __call__(self, x):
        shape = x.shape
        work = compute_dtype(x.dtype)
        g = jnp.reshape(x, (shape[0], -1, self.groups, shape[-1] // self.groups)).astype(work)
        mean = jnp.mean(g, axis=(1, 3), keepdims=True)
        var = jnp.mean(jnp.square(g - mean), axis=(1, 3), keepdims=True)
        g = (g - mean) * jax.lax.rsqrt(var + self.eps)
        y = jnp.reshape(g, shape) * self.scale[...].astype(work) + self.bias[...].astype(work)
        return y.astype(x.dtype)


def upsample_nearest(x):
    """2x nearest-neighbour upsampling (`F.interpolate(scale_factor=2, mode="nearest")`)."""
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return jnp.reshape(x, (b, 2 * h, 2 * w, c))


def avg_pool(x):
    """2x2 average pooling with stride 2 (`nn.AvgPool2d(2, 2)`)."""
    b, h, w, c = x.shape
    return jnp.mean(jnp.reshape(x, (b, h // 2, 2, w // 2, 2, c)), axis=(2, 4))


def upfirdn(x, *, up: int = 1, down: int = 1, gain: float = 1.0):
    r"""Upsample by `up` (zero insertion), filter with `FIR_KERNEL` normalised to `gain`
    (times `up^2` when upsampling), downsample by `down`: diffusers' `upsample_2d` /
    `downsample_2d` (StyleGAN2's `upfirdn2d`) with factor 2, on NHWC, as one depthwise
    convolution (zero padding outside the image)."""
    k = jnp.asarray(FIR_KERNEL, x.dtype)
    k = jnp.outer(k, k)
    k = k / jnp.sum(k) * (gain * up**2)
    factor = max(up, down)
    pad = k.shape[0] - factor
    if up > 1:
        lo, hi = (pad + 1) // 2 + factor - 1, pad // 2
    else:
        lo, hi = (pad + 1) // 2, pad // 2
    channels = x.shape[-1]
    w = jnp.broadcast_to(jnp.flip(k)[:, :, None, None], (*k.shape, 1, channels))
    return jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=(down, down),
        padding=((lo, hi + up - 1), (lo, hi + up - 1)),
        lhs_dilation=(up, up),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
    )


class Downsample(nnx.Module):
    """diffusers' `Downsample2D(use_conv=True)`: a stride-2 3x3 convolution with symmetric
    padding `padding`, or for `padding = 0` padded by one row and column at the bottom and
    right (diffusers' `downsample_padding = 0`, the DDPM checkpoints')."""

    def __init__(self, channels: int, *, padding: int, dtype, rngs: nnx.Rngs | None):
        self.padding = padding
        self.conv = Conv(channels, channels, 3, stride=2, padding=padding, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        if self.padding == 0:
            x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return self.conv(x)


class Upsample(nnx.Module):
    """diffusers' `Upsample2D(use_conv=True)`: 2x nearest neighbour, then a 3x3 convolution."""

    def __init__(self, channels: int, *, dtype, rngs: nnx.Rngs | None):
        self.conv = Conv(channels, channels, 3, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.conv(upsample_nearest(x))


class ResnetBlock2D(nnx.Module):
    r"""diffusers' `ResnetBlock2D`: GroupNorm, activation, (resampling), 3x3 conv, plus the
    projected time embedding (`"default"`: added before the second GroupNorm;
    `"scale_shift"`: $h \leftarrow \mathrm{GN}(h)(1 + s) + b$), activation, 3x3 conv; the
    shortcut is a 1x1 conv when the width changes (or `shortcut=True`), and the sum is
    divided by `output_scale`. `resample` is `"up"`/`"down"` (nearest/average pooling, or the
    FIR filter when `fir`)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        temb: int,
        *,
        groups: int,
        groups_out: int | None = None,
        eps: float,
        act: str,
        time_norm: str = "default",
        output_scale: float = 1.0,
        shortcut: bool | None = None,
        resample: str | None = None,
        fir: bool = False,
        dtype,
        rngs: nnx.Rngs | None,
    ):
        self.act = act
        self.time_norm = time_norm
        self.output_scale = float(output_scale)
        self.resample = resample
        self.fir = fir
        self.norm1 = GroupNorm(cin, groups, eps=eps, dtype=dtype, rngs=rngs)
        self.conv1 = Conv(cin, cout, 3, dtype=dtype, rngs=rngs)
        width = 2 * cout if time_norm == "scale_shift" else cout
        self.time_emb_proj = Linear(temb, width, dtype=dtype, rngs=rngs)
        self.norm2 = GroupNorm(cout, groups_out or groups, eps=eps, dtype=dtype, rngs=rngs)
        self.conv2 = Conv(cout, cout, 3, dtype=dtype, rngs=rngs)
        use_shortcut = cin != cout if shortcut is None else shortcut
        self.conv_shortcut = Conv(cin, cout, 1, dtype=dtype, rngs=rngs) if use_shortcut else None

    def _resample(self, x):
        if self.resample == "up":
            return upfirdn(x, up=2) if self.fir else upsample_nearest(x)
        if self.resample == "down":
            return upfirdn(x, down=2) if self.fir else avg_pool(x)
        return x

    def __call__(self, x, temb):
        act = ACTIVATION_FNS[self.act]
        h = act(self.norm1(x))
        x, h = self._resample(x), self._resample(h)
        h = self.conv1(h)
        t = self.time_emb_proj(act(temb))[:, None, None, :]
        if self.time_norm == "scale_shift":
            scale, shift = jnp.split(t, 2, axis=-1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(act(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.output_scale


class Attention(nnx.Module):
    r"""Self-attention over the pixels as diffusers' `UNet2DModel` builds it (`Attention`
    with `residual_connection=True`, `_from_deprecated_attn_block=True`): optional
    GroupNorm, `heads = channels // head_dim` heads, softmax of $qk^\top/\sqrt{d}$ (in at
    least float32), output projection, plus the input, divided by `rescale`."""

    def __init__(
        self,
        channels: int,
        *,
        head_dim: int,
        groups: int | None,
        eps: float,
        rescale: float = 1.0,
        dtype,
        rngs: nnx.Rngs | None,
    ):
        heads = channels // head_dim
        if heads < 1:
            raise ValueError(
                f"attention_head_dim {head_dim} is larger than the {channels} channels of an "
                "attention block"
            )
        inner = heads * head_dim
        self.heads = heads
        self.rescale = float(rescale)
        self.group_norm = (
            None if groups is None else GroupNorm(channels, groups, eps=eps, dtype=dtype, rngs=rngs)
        )
        self.to_q = Linear(channels, inner, dtype=dtype, rngs=rngs)
        self.to_k = Linear(channels, inner, dtype=dtype, rngs=rngs)
        self.to_v = Linear(channels, inner, dtype=dtype, rngs=rngs)
        self.to_out = nnx.List([Linear(inner, channels, dtype=dtype, rngs=rngs)])

    def __call__(self, x):
        b, hh, ww, c = x.shape
        h = x if self.group_norm is None else self.group_norm(x)
        h = jnp.reshape(h, (b, hh * ww, c))
        q, k, v = (
            jnp.reshape(proj(h), (b, hh * ww, self.heads, -1))
            for proj in (self.to_q, self.to_k, self.to_v)
        )
        work = compute_dtype(x.dtype)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(work) / math.sqrt(q.shape[-1])
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        h = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        h = self.to_out[0](jnp.reshape(h, (b, hh * ww, -1)))
        return (jnp.reshape(h, (b, hh, ww, c)) + x) / self.rescale


def sinusoidal_embedding(t, dim: int, *, flip_sin_to_cos: bool, shift: float, dtype):
    r"""DDPM's sinusoidal embedding (diffusers' `get_timestep_embedding`): frequencies
    $\exp(-\ln(10^4)\,i/(d/2 - \text{shift}))$, `[sin, cos]` of `t` times them (`[cos, sin]`
    with `flip_sin_to_cos`), zero-padded to odd `dim`. diffusers computes it in float32 for
    any weights; here in `dtype` (at least float32)."""
    work = compute_dtype(dtype)
    half = dim // 2
    exponent = -math.log(10000) * jnp.arange(half, dtype=work)
    freqs = jnp.exp(exponent / (half - shift))
    arg = jnp.asarray(t).astype(work)[:, None] * freqs[None, :]
    sin, cos = jnp.sin(arg), jnp.cos(arg)
    emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class FourierProjection(nnx.Module):
    r"""diffusers' `GaussianFourierProjection` (Song et al. 2021, NCSN++): fixed random
    frequencies `weight`, embedding `[sin, cos]` of $2\pi\,w \log\sigma$."""

    def __init__(self, size: int, *, dtype, rngs: nnx.Rngs | None):
        self.weight = param(rngs, nnx.initializers.normal(16.0), (size,), dtype)

    def __call__(self, sigma):
        w = self.weight[...]
        arg = jnp.log(sigma.astype(w.dtype))[:, None] * w[None, :] * 2 * math.pi
        return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class TimestepEmbedding(nnx.Module):
    """diffusers' `TimestepEmbedding`: linear, SiLU, linear."""

    def __init__(self, cin: int, width: int, *, dtype, rngs: nnx.Rngs | None):
        self.linear_1 = Linear(cin, width, dtype=dtype, rngs=rngs)
        self.linear_2 = Linear(width, width, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.linear_2(jax.nn.silu(self.linear_1(x)))
