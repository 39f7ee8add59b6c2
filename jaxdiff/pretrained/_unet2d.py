r"""diffusers' `UNet2DModel` (the unconditional and class-conditional pixel-space U-Nets of
DDPM, Ho et al. 2020, and of the score-SDE NCSN++ models, Song et al. 2021) in flax NNX."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_choice, check_float_array, check_float_dtype
from ._config import UNet2DConfig, config_dict, parse_config
from ._layers import (
    ACTIVATION_FNS,
    WINOGRAD_MIN_CHANNELS,
    Attention,
    Conv,
    Downsample,
    Embed,
    FourierProjection,
    GroupNorm,
    ResnetBlock2D,
    TimestepEmbedding,
    Upsample,
    sinusoidal_embedding,
    upfirdn,
)

#: The array layouts of `UNet2DModel`'s input and output.
LAYOUTS: tuple[str, ...] = ("NCHW", "NHWC")

_SQRT2 = float(math.sqrt(2.0))  # diffusers' skip blocks' output_scale_factor (np.sqrt(2.0))


def _skip_groups(channels: int) -> int:
    """The group count of diffusers' skip blocks, `min(channels // 4, 32)`."""
    return min(channels // 4, 32)


class DownBlock(nnx.Module):
    """One of diffusers' `DownBlock2D`, `AttnDownBlock2D`, `SkipDownBlock2D` and
    `AttnSkipDownBlock2D`, by `kind`: residual blocks (each followed by attention in the
    Attn blocks), then the downsampling of a block that is not the last; the skip blocks also
    carry the NCSN++ image-resolution skip path."""

    def __init__(self, kind, cin, cout, *, add_downsample, config: UNet2DConfig, dtype, rngs):
        c = config
        self.kind = kind
        self.skip = "Skip" in kind
        attn = kind.startswith("Attn")
        common = dict(
            eps=c.norm_eps,
            act=c.act_fn,
            time_norm=c.resnet_time_scale_shift,
            dtype=dtype,
            rngs=rngs,
        )
        scale = _SQRT2 if self.skip else 1.0
        resnets = []
        for i in range(c.layers_per_block):
            width_in = cin if i == 0 else cout
            groups = _skip_groups(width_in) if self.skip else c.norm_num_groups
            groups_out = _skip_groups(cout) if self.skip else None
            resnets.append(
                ResnetBlock2D(
                    width_in,
                    cout,
                    c.time_embed_dim,
                    groups=groups,
                    groups_out=groups_out,
                    output_scale=scale,
                    **common,
                )
            )
        self.resnets = nnx.List(resnets)
        head_dim = c.attention_head_dim or cout
        self.attentions = nnx.List(
            [
                Attention(
                    cout,
                    head_dim=head_dim,
                    groups=32 if self.skip else c.norm_num_groups,
                    eps=c.norm_eps,
                    rescale=scale,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(c.layers_per_block)
            ]
            if attn
            else []
        )
        downsamplers = resnet_down = skip_conv = None
        if add_downsample and self.skip:
            g = _skip_groups(cout)
            resnet_down = _skip_resample(cout, c.time_embed_dim, g, scale, "down", common)
            skip_conv = Conv(3, cout, 1, dtype=dtype, rngs=rngs)
        elif add_downsample and kind == "AttnDownBlock2D" and c.downsample_type == "resnet":
            downsamplers = nnx.List(
                [
                    ResnetBlock2D(
                        cout,
                        cout,
                        c.time_embed_dim,
                        groups=c.norm_num_groups,
                        resample="down",
                        **common,
                    )
                ]
            )
        elif add_downsample:
            downsamplers = nnx.List(
                [Downsample(cout, padding=c.downsample_padding, dtype=dtype, rngs=rngs)]
            )
        self.downsamplers = nnx.data(downsamplers)
        self.resnet_down = nnx.data(resnet_down)
        self.skip_conv = nnx.data(skip_conv)

    def __call__(self, h, temb, skip):
        states = []
        for i, resnet in enumerate(self.resnets):
            h = resnet(h, temb)
            if len(self.attentions):
                h = self.attentions[i](h)
            states.append(h)
        if self.resnet_down is not None:
            h = self.resnet_down(h, temb)
            skip = upfirdn(skip, down=2)
            h = self.skip_conv(skip) + h
            states.append(h)
        elif self.downsamplers is not None:
            down = self.downsamplers[0]
            h = down(h, temb) if isinstance(down, ResnetBlock2D) else down(h)
            states.append(h)
        return h, states, skip


class UpBlock(nnx.Module):
    """One of diffusers' `UpBlock2D`, `AttnUpBlock2D`, `SkipUpBlock2D` and
    `AttnSkipUpBlock2D`, by `kind`: `layers_per_block + 1` residual blocks, each fed the
    concatenation of the running activations and one skip activation of the down path
    (popped from the end), attention (after every block in `AttnUpBlock2D`, once at the end
    in `AttnSkipUpBlock2D`), then the upsampling of a block that is not the last."""

    def __init__(self, kind, cin, prev, cout, *, add_upsample, config: UNet2DConfig, dtype, rngs):
        c = config
        self.kind = kind
        self.skip = "Skip" in kind
        common = dict(
            eps=c.norm_eps,
            act=c.act_fn,
            time_norm=c.resnet_time_scale_shift,
            dtype=dtype,
            rngs=rngs,
        )
        scale = _SQRT2 if self.skip else 1.0
        layers = c.layers_per_block + 1
        resnets = []
        for i in range(layers):
            res_skip = cin if i == layers - 1 else cout
            width_in = prev if i == 0 else cout
            if kind == "SkipUpBlock2D":
                groups = _skip_groups(width_in + res_skip)
            elif kind == "AttnSkipUpBlock2D":  # diffusers' precedence: a + b // 4
                groups = min(width_in + res_skip // 4, 32)
            else:
                groups = c.norm_num_groups
            resnets.append(
                ResnetBlock2D(
                    width_in + res_skip,
                    cout,
                    c.time_embed_dim,
                    groups=groups,
                    groups_out=_skip_groups(cout) if self.skip else None,
                    output_scale=scale,
                    **common,
                )
            )
        self.resnets = nnx.List(resnets)
        head_dim = c.attention_head_dim or cout
        count = {"AttnUpBlock2D": layers, "AttnSkipUpBlock2D": 1}.get(kind, 0)
        self.attentions = nnx.List(
            [
                Attention(
                    cout,
                    head_dim=head_dim,
                    groups=32 if self.skip else c.norm_num_groups,
                    eps=c.norm_eps,
                    rescale=scale,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(count)
            ]
        )
        upsamplers = resnet_up = skip_conv = skip_norm = None
        if add_upsample and self.skip:
            g = _skip_groups(cout)
            resnet_up = _skip_resample(cout, c.time_embed_dim, g, scale, "up", common)
            skip_norm = GroupNorm(cout, g, eps=c.norm_eps, dtype=dtype, rngs=rngs)
            skip_conv = Conv(cout, 3, 3, dtype=dtype, rngs=rngs)
        elif add_upsample and kind == "AttnUpBlock2D" and c.upsample_type == "resnet":
            upsamplers = nnx.List(
                [
                    ResnetBlock2D(
                        cout,
                        cout,
                        c.time_embed_dim,
                        groups=c.norm_num_groups,
                        resample="up",
                        **common,
                    )
                ]
            )
        elif add_upsample:
            upsamplers = nnx.List([Upsample(cout, dtype=dtype, rngs=rngs)])
        self.upsamplers = nnx.data(upsamplers)
        self.resnet_up = nnx.data(resnet_up)
        self.skip_conv = nnx.data(skip_conv)
        self.skip_norm = nnx.data(skip_norm)
        self.act = c.act_fn

    def __call__(self, h, states, temb, skip):
        per_block = self.kind == "AttnUpBlock2D"
        for i, resnet in enumerate(self.resnets):
            h = jnp.concatenate([h, states.pop()], axis=-1)
            h = resnet(h, temb)
            if per_block:
                h = self.attentions[i](h)
        if self.kind == "AttnSkipUpBlock2D":
            h = self.attentions[0](h)
        if self.skip:
            skip = 0 if skip is None else upfirdn(skip, up=2)
            if self.resnet_up is not None:
                # diffusers' skip path uses SiLU here whatever act_fn is (its nn.SiLU())
                skip = skip + self.skip_conv(jax.nn.silu(self.skip_norm(h)))
                h = self.resnet_up(h, temb)
        elif self.upsamplers is not None:
            up = self.upsamplers[0]
            h = up(h, temb) if isinstance(up, ResnetBlock2D) else up(h)
        return h, skip


class MidBlock(nnx.Module):
    """diffusers' `UNetMidBlock2D`: residual block, then (attention, residual block)."""

    def __init__(self, channels, *, config: UNet2DConfig, dtype, rngs):
        c = config
        groups = c.norm_num_groups or _skip_groups(channels)
        attn_groups = c.attn_norm_num_groups
        if attn_groups is None and c.resnet_time_scale_shift == "default":
            attn_groups = groups
        scale = float(c.mid_block_scale_factor)
        common = dict(
            groups=groups,
            eps=c.norm_eps,
            act=c.act_fn,
            time_norm=c.resnet_time_scale_shift,
            output_scale=scale,
            dtype=dtype,
            rngs=rngs,
        )
        self.resnets = nnx.List(
            [ResnetBlock2D(channels, channels, c.time_embed_dim, **common) for _ in range(2)]
        )
        self.attentions = nnx.List(
            [
                Attention(
                    channels,
                    head_dim=c.attention_head_dim or channels,
                    groups=attn_groups,
                    eps=c.norm_eps,
                    rescale=scale,
                    dtype=dtype,
                    rngs=rngs,
                )
            ]
            if c.add_attention
            else []
        )

    def __call__(self, h, temb):
        h = self.resnets[0](h, temb)
        if len(self.attentions):
            h = self.attentions[0](h)
        return self.resnets[1](h, temb)


class UNet2DModel(nnx.Module):
    r"""diffusers' `UNet2DModel` in flax NNX: `network(sample, timestep, class_labels=None)`
    returns what diffusers' `UNet2DModel(sample, timestep, class_labels).sample` returns.

    The U-Net of DDPM (Ho et al. 2020, "Denoising Diffusion Probabilistic Models": the
    `google/ddpm-*` checkpoints) and of the score-SDE NCSN++ models (Song et al. 2021,
    "Score-Based Generative Modeling through Stochastic Differential Equations": the
    `google/ncsnpp-*` checkpoints, `SkipDownBlock2D`/`AttnSkipDownBlock2D` with FIR
    resampling and Gaussian Fourier time embedding, whose output diffusers divides by
    `timestep` = sigma), with every option of diffusers' configuration: the down/up block
    types in `jaxdiff.pretrained.DOWN_BLOCKS` / `UP_BLOCKS`, positional (`flip_sin_to_cos`,
    `freq_shift`), Fourier and learned time embeddings, class embeddings (`num_class_embeds`,
    `class_embed_type` `"timestep"` or `"identity"`), `resnet_time_scale_shift` `"default"` or
    `"scale_shift"`, `add_attention`, `attention_head_dim`, `norm_num_groups`,
    `attn_norm_num_groups`, `norm_eps`, `act_fn`, `downsample_padding`, `downsample_type` /
    `upsample_type` `"conv"` or `"resnet"`, `mid_block_scale_factor`, `center_input_sample`,
    `out_channels`. Written from diffusers' architecture; parameter paths mirror diffusers'
    module names (`down_blocks[0].resnets[1].conv1.kernel` is `down_blocks.0.resnets.1.
    conv1.weight`), see `jaxdiff.pretrained.load_weights`.

    **Arguments:** `config` (a `config.json` dict or a `UNet2DConfig`), `dtype` of the
    weights and the computation (default: the default float dtype; normalization statistics
    and softmax in at least float32), `layout` of `sample` and of the output, `"NCHW"`
    (diffusers', the default) or `"NHWC"` (the layout it computes in: no transposes), `rngs`:
    an `nnx.Rngs` for random initial weights (flax's initializers, not diffusers'), or `None`
    for the structure alone, every parameter a `jax.ShapeDtypeStruct` (no memory, nothing
    traced), which `load_weights` fills with a checkpoint's (`from_diffusers` does both).

    **Call:** `sample` float `(B, C, H, W)` (or `(B, H, W, C)`), `H` and `W` divisible by
    `2^(len(block_out_channels) - 1)`; `timestep` a scalar or `(B,)` (an integer DDPM
    timestep, or sigma for a Fourier embedding), `class_labels` int `(B,)` for a class
    embedding (floats `(B, time_embed_dim)` for `class_embed_type="identity"`). Returns the
    output in `dtype`, shaped like `sample` with `out_channels` channels. Differences from
    diffusers: the sinusoidal time embedding is computed in the weights' dtype (diffusers
    computes it in float32 whatever the weights; the same for float32 weights); dropout is
    off (inference only).
    """

    def __init__(
        self,
        config: dict | UNet2DConfig,
        *,
        dtype=None,
        layout: str = "NCHW",
        rngs: nnx.Rngs | None,
    ):
        c = config if isinstance(config, UNet2DConfig) else parse_config(config)
        dtype = check_float_dtype("dtype", dtype)
        self.config = c
        self.dtype = dtype
        self.layout = check_choice("layout", layout, LAYOUTS)
        kw = dict(dtype=dtype, rngs=rngs)
        boc = c.block_out_channels
        temb = c.time_embed_dim

        self.conv_in = Conv(c.in_channels, boc[0], 3, **kw)
        time_proj, time_in = None, boc[0]
        if c.time_embedding_type == "fourier":
            time_proj, time_in = FourierProjection(boc[0], **kw), 2 * boc[0]
        elif c.time_embedding_type == "learned":
            time_proj = Embed(c.num_train_timesteps, boc[0], **kw)
        self.time_proj = nnx.data(time_proj)
        self.time_embedding = TimestepEmbedding(time_in, temb, **kw)
        class_embedding = None
        if c.class_embed_type is None and c.num_class_embeds is not None:
            class_embedding = Embed(c.num_class_embeds, temb, **kw)
        elif c.class_embed_type == "timestep":
            class_embedding = TimestepEmbedding(time_in, temb, **kw)
        self.class_embedding = nnx.data(class_embedding)

        down, width = [], boc[0]
        for i, kind in enumerate(c.down_block_types):
            cin, width = width, boc[i]
            add = i < len(boc) - 1
            down.append(DownBlock(kind, cin, width, add_downsample=add, config=c, **kw))
        self.down_blocks = nnx.List(down)
        self.mid_block = nnx.data(
            None if c.mid_block_type is None else MidBlock(boc[-1], config=c, **kw)
        )
        up, rev = [], boc[::-1]
        width = rev[0]
        for i, kind in enumerate(c.up_block_types):
            prev, width = width, rev[i]
            cin = rev[min(i + 1, len(boc) - 1)]
            add = i < len(boc) - 1
            up.append(UpBlock(kind, cin, prev, width, add_upsample=add, config=c, **kw))
        self.up_blocks = nnx.List(up)
        groups_out = c.norm_num_groups if c.norm_num_groups is not None else min(boc[0] // 4, 32)
        self.conv_norm_out = GroupNorm(boc[0], groups_out, eps=c.norm_eps, **kw)
        self.conv_out = Conv(boc[0], c.out_channels, 3, **kw)

    def __call__(self, sample, timestep, class_labels=None):
        x = check_float_array("sample", sample)
        if x.ndim != 4:
            raise ValueError(
                f"sample must have shape (batch, channels, height, width) ({self.layout}), got "
                f"{x.shape}"
            )
        if self.layout == "NCHW":
            x = jnp.transpose(x, (0, 2, 3, 1))
        out = self.apply_nhwc(x, timestep, class_labels)
        return jnp.transpose(out, (0, 3, 1, 2)) if self.layout == "NCHW" else out

    def time_projection(self, t):
        """diffusers' `time_proj` of `t` (shape `(batch,)`): sinusoidal, Fourier or learned."""
        c = self.config
        if self.time_proj is not None:
            return self.time_proj(t)
        return sinusoidal_embedding(
            t,
            c.block_out_channels[0],
            flip_sin_to_cos=c.flip_sin_to_cos,
            shift=c.freq_shift,
            dtype=self.dtype,
        )

    def embedding(self, timestep, class_labels, batch: int):
        """The embedding of `timestep` plus that of `class_labels`: `(batch, time_embed_dim)`."""
        c = self.config
        t = jnp.broadcast_to(jnp.asarray(timestep), (batch,))
        emb = self.time_embedding(self.time_projection(t).astype(self.dtype))
        if self.class_embedding is None and c.class_embed_type != "identity":
            if class_labels is not None:
                raise ValueError("class_labels given, but the model has no class embedding")
            return emb
        if class_labels is None:
            raise ValueError("class_labels are required: the model has a class embedding")
        labels = jnp.asarray(class_labels)
        if c.class_embed_type == "identity":
            class_emb = labels
        elif c.class_embed_type == "timestep":
            labels = self.time_projection(jnp.broadcast_to(labels, (batch,)))
            class_emb = self.class_embedding(labels.astype(self.dtype))
        else:
            class_emb = self.class_embedding(labels)
        return emb + jnp.broadcast_to(class_emb, emb.shape).astype(self.dtype)

    def apply_nhwc(self, x, timestep, class_labels=None):
        """The network on an NHWC `x` (whatever `layout` is): returns NHWC."""
        c = self.config
        channels = c.in_channels
        if x.shape[-1] != channels:
            raise ValueError(
                f"sample must have {channels} channels (in_channels), got shape {x.shape} "
                f"({self.layout})"
            )
        factor = c.downsampling
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"sample's height and width must be divisible by {factor} "
                f"(2^(len(block_out_channels) - 1)), got {x.shape[1]}x{x.shape[2]}"
            )
        x = x.astype(self.dtype)
        if c.center_input_sample:
            x = 2 * x - 1.0
        batch = x.shape[0]
        emb = self.embedding(timestep, class_labels, batch)

        skip = x
        h = self.conv_in(x)
        states = [h]
        for block in self.down_blocks:
            h, block_states, skip = block(h, emb, skip)
            states.extend(block_states)
        if self.mid_block is not None:
            h = self.mid_block(h, emb)
        skip = None
        for block in self.up_blocks:
            h, skip = block(h, states, emb, skip)
        h = self.conv_out(ACTIVATION_FNS["silu"](self.conv_norm_out(h)))
        if skip is not None:
            h = h + skip
        if c.time_embedding_type == "fourier":
            t = jnp.broadcast_to(jnp.asarray(timestep).astype(h.dtype), (batch,))
            h = h / t[:, None, None, None]
        return h

    def to_winograd(self, min_channels: int = WINOGRAD_MIN_CHANNELS) -> int:
        """Compute the 3x3, stride-1 convolutions with at least `min_channels` input and output
        channels (the residual blocks' and the upsamplers') by Winograd's F(4x4, 3x3) from now
        on, in place (`jaxdiff.pretrained._winograd`: 4x fewer multiplications, float32
        rounding ~1e-5 of the output's scale instead of ~1e-6; an abstract network stays
        abstract and `load_weights` transforms the checkpoint's kernels). Returns how many
        convolutions changed. `from_diffusers(conv="winograd")` calls it."""
        convs = [
            module
            for _, module in nnx.iter_modules(self)
            if isinstance(module, Conv) and module.winograd_eligible(min_channels)
        ]
        for conv in convs:
            conv.to_winograd()
        return len(convs)

    def config_dict(self) -> dict:
        """The configuration as diffusers' `config.json` holds it (all keys)."""
        return config_dict(self.config)


def abstract_unet(config: UNet2DConfig, *, dtype, layout: str) -> UNet2DModel:
    """A `UNet2DModel` whose parameters are shapes only (no memory, no random draws)."""
    return UNet2DModel(config, dtype=dtype, layout=layout, rngs=None)


def _skip_resample(channels, time_embed_dim, groups, scale, resample, common):
    """The resnet that resamples (FIR, "down" or "up") in an NCSN++ skip block."""
    return ResnetBlock2D(
        channels,
        channels,
        time_embed_dim,
        groups=groups,
        groups_out=groups,
        output_scale=scale,
        shortcut=True,
        resample=resample,
        fir=True,
        **common,
    )
