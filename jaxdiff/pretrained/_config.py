"""The configuration of a diffusers `UNet2DModel` (its `config.json`), checked and completed
with diffusers' defaults, without importing diffusers or torch."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

#: The down blocks the port builds (diffusers' names; a `UNetRes` prefix is accepted and
#: dropped, as diffusers does).
DOWN_BLOCKS: tuple[str, ...] = (
    "DownBlock2D",
    "AttnDownBlock2D",
    "SkipDownBlock2D",
    "AttnSkipDownBlock2D",
)
#: The up blocks the port builds.
UP_BLOCKS: tuple[str, ...] = ("UpBlock2D", "AttnUpBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D")
#: The activations of `act_fn` (diffusers' `get_activation` names).
ACTIVATIONS: tuple[str, ...] = ("silu", "swish", "mish", "gelu", "relu")

# diffusers' blocks for other models (conditional UNets, autoencoders, k-upscaler): named in
# the error, so that a wrong folder is recognisable
_OTHER_BLOCKS = (
    "CrossAttnDownBlock2D",
    "SimpleCrossAttnDownBlock2D",
    "ResnetDownsampleBlock2D",
    "DownEncoderBlock2D",
    "AttnDownEncoderBlock2D",
    "KDownBlock2D",
    "KCrossAttnDownBlock2D",
    "CrossAttnUpBlock2D",
    "SimpleCrossAttnUpBlock2D",
    "ResnetUpsampleBlock2D",
    "UpDecoderBlock2D",
    "AttnUpDecoderBlock2D",
    "KUpBlock2D",
    "KCrossAttnUpBlock2D",
)


@dataclass(frozen=True)
class UNet2DConfig:
    """diffusers' `UNet2DModel` configuration, with its defaults (diffusers 0.3x-0.4x).

    Every key of a `config.json` written by `UNet2DModel.save_pretrained` is a field; keys
    starting with `_` (`_class_name`, `_diffusers_version`, ...) are metadata. `dropout`
    and `sample_size` do not change the network's function at inference (`sample_size` is
    the image size of the checkpoint, used for the default sample shape).
    """

    sample_size: int | tuple[int, int] | None = None
    in_channels: int = 3
    out_channels: int = 3
    center_input_sample: bool = False
    time_embedding_type: str = "positional"
    time_embedding_dim: int | None = None
    freq_shift: float = 0
    flip_sin_to_cos: bool = True
    down_block_types: tuple[str, ...] = (
        "DownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
    )
    mid_block_type: str | None = "UNetMidBlock2D"
    up_block_types: tuple[str, ...] = (
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
    )
    block_out_channels: tuple[int, ...] = (224, 448, 672, 896)
    layers_per_block: int = 2
    mid_block_scale_factor: float = 1
    downsample_padding: int = 1
    downsample_type: str = "conv"
    upsample_type: str = "conv"
    dropout: float = 0.0
    act_fn: str = "silu"
    attention_head_dim: int | None = 8
    norm_num_groups: int | None = 32
    attn_norm_num_groups: int | None = None
    norm_eps: float = 1e-5
    resnet_time_scale_shift: str = "default"
    add_attention: bool = True
    class_embed_type: str | None = None
    num_class_embeds: int | None = None
    num_train_timesteps: int | None = None

    @property
    def time_embed_dim(self) -> int:
        """The width of the time embedding (`time_embedding_dim`, else 4x the first block's)."""
        return self.time_embedding_dim or 4 * self.block_out_channels[0]

    @property
    def image_size(self) -> tuple[int, int] | None:
        """`(height, width)` from `sample_size`, or None."""
        size = self.sample_size
        if size is None:
            return None
        if isinstance(size, int):
            return (size, size)
        return (int(size[0]), int(size[1]))

    @property
    def downsampling(self) -> int:
        """The total downsampling factor: image sides must be divisible by it."""
        return 2 ** (len(self.block_out_channels) - 1)


_KNOWN = {f.name for f in fields(UNet2DConfig)}


def _int(name: str, value, *, minimum: int = 1, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = f"an integer >= {minimum}" + (" or null" if optional else "")
        raise ValueError(f"config.json: {name} must be {what}, got {value!r}")
    return value


def _float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"config.json: {name} must be a finite number, got {value!r}")
    return float(value)


def _bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"config.json: {name} must be true or false, got {value!r}")
    return value


def _choice(name: str, value, choices) -> Any:
    if value not in choices:
        expected = ", ".join("null" if c is None else repr(c) for c in choices)
        raise ValueError(
            f"config.json: unsupported {name} {value!r}; jaxdiff.pretrained supports {expected}"
        )
    return value


def _block(kind: str, value, supported: tuple[str, ...]) -> str:
    name = value[7:] if isinstance(value, str) and value.startswith("UNetRes") else value
    if name not in supported:
        other = " (a block of another diffusers model)" if name in _OTHER_BLOCKS else ""
        raise ValueError(
            f"config.json: unsupported {kind} block type {value!r}{other}; "
            f"jaxdiff.pretrained supports {', '.join(supported)}"
        )
    return name


def parse_config(raw: dict) -> UNet2DConfig:
    """The checked `UNet2DConfig` of a `config.json` dict. Unknown keys, block types the port
    does not build, and values it does not support are `ValueError`s naming them."""
    if not isinstance(raw, dict):
        raise ValueError(f"config.json must hold a JSON object, got {type(raw).__name__}")
    klass = raw.get("_class_name", "UNet2DModel")
    if klass != "UNet2DModel":
        raise ValueError(
            f"config.json describes a {klass!r}; jaxdiff.pretrained loads diffusers' UNet2DModel"
        )
    unknown = sorted(k for k in raw if not k.startswith("_") and k not in _KNOWN)
    if unknown:
        raise ValueError(
            f"config.json: unknown UNet2DModel config key(s) {', '.join(map(repr, unknown))}"
        )
    given = {k: v for k, v in raw.items() if k in _KNOWN}
    for key in ("down_block_types", "up_block_types", "block_out_channels"):
        if key in given:
            if not isinstance(given[key], list | tuple) or not given[key]:
                raise ValueError(f"config.json: {key} must be a non-empty list, got {given[key]!r}")
            given[key] = tuple(given[key])
    c = UNet2DConfig(**given)

    channels = tuple(_int("block_out_channels entries", ch) for ch in c.block_out_channels)
    down = tuple(_block("down", b, DOWN_BLOCKS) for b in c.down_block_types)
    up = tuple(_block("up", b, UP_BLOCKS) for b in c.up_block_types)
    if not len(down) == len(up) == len(channels):
        raise ValueError(
            "config.json: down_block_types, up_block_types and block_out_channels must have "
            f"the same length, got {len(down)}, {len(up)} and {len(channels)}"
        )
    _int("in_channels", c.in_channels)
    _int("out_channels", c.out_channels)
    _int("layers_per_block", c.layers_per_block)
    _int("time_embedding_dim", c.time_embedding_dim, optional=True)
    _int("attention_head_dim", c.attention_head_dim, optional=True)
    _int("norm_num_groups", c.norm_num_groups, optional=True)
    _int("attn_norm_num_groups", c.attn_norm_num_groups, optional=True)
    _int("downsample_padding", c.downsample_padding, minimum=0)
    _bool("center_input_sample", c.center_input_sample)
    _bool("flip_sin_to_cos", c.flip_sin_to_cos)
    _bool("add_attention", c.add_attention)
    _float("freq_shift", c.freq_shift)
    _float("mid_block_scale_factor", c.mid_block_scale_factor)
    if not _float("norm_eps", c.norm_eps) > 0:
        raise ValueError(f"config.json: norm_eps must be > 0, got {c.norm_eps!r}")
    _choice("time_embedding_type", c.time_embedding_type, ("positional", "fourier", "learned"))
    _choice("mid_block_type", c.mid_block_type, ("UNetMidBlock2D", None))
    _choice("downsample_type", c.downsample_type, ("conv", "resnet"))
    _choice("upsample_type", c.upsample_type, ("conv", "resnet"))
    _choice("act_fn", c.act_fn, ACTIVATIONS)
    _choice("resnet_time_scale_shift", c.resnet_time_scale_shift, ("default", "scale_shift"))
    _choice("class_embed_type", c.class_embed_type, (None, "timestep", "identity"))
    _int("num_class_embeds", c.num_class_embeds, optional=True)
    if c.time_embedding_type == "learned":
        _int("num_train_timesteps (of a learned time embedding)", c.num_train_timesteps)
    size = c.sample_size
    if size is not None:
        sides = [size] if isinstance(size, int) else list(size) if isinstance(size, list) else []
        integers = all(isinstance(s, int) and not isinstance(s, bool) for s in sides)
        if len(sides) not in (1, 2) or not integers:
            raise ValueError(f"config.json: sample_size must be an int or [h, w], got {size!r}")
    skip = any("Skip" in b for b in (*down, *up))
    if skip and (c.in_channels != 3 or c.out_channels != 3):
        raise ValueError(
            "config.json: diffusers' skip blocks (SkipDownBlock2D, ...) are built for 3 image "
            f"channels, got in_channels={c.in_channels}, out_channels={c.out_channels}"
        )
    if c.norm_num_groups is None and any("Skip" not in b for b in (*down, *up)):
        raise ValueError(
            "config.json: norm_num_groups null needs skip blocks throughout (diffusers' "
            "DownBlock2D, AttnDownBlock2D, UpBlock2D and AttnUpBlock2D need a group count)"
        )
    return UNet2DConfig(
        **{
            **{f.name: getattr(c, f.name) for f in fields(c)},
            "block_out_channels": channels,
            "down_block_types": down,
            "up_block_types": up,
            "sample_size": tuple(size) if isinstance(size, list) else size,
        }
    )


def config_dict(config: UNet2DConfig) -> dict[str, Any]:
    """The config as a plain dict (lists for tuples), as diffusers writes it."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
