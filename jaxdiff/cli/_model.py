"""The model recipe shared by ``jaxdiff train``, ``jaxdiff sample`` and ``jaxdiff demo``.

A run directory holds orbax checkpoints and a JSON config (stored with every checkpoint) from
which the network is rebuilt: the dataset, its shape and ``sigma_data``, the architecture and
its options, and the training settings. The denoiser is always EDM-preconditioned
(`jaxdiff.parametrizations.EDMPrecond`) and trained with the EDM loss.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import nn as jnn
from ..parametrizations._denoisers import ClassifierFreeGuidance, Conditional, EDMPrecond

CONFIG_VERSION = 1


class RecipeError(ValueError):
    """A run directory's config that this version cannot rebuild a model from."""


def network_config(
    kind: str, shape: tuple[int, ...], *, num_classes: int, width: int | None = None
) -> dict[str, Any]:
    """Default architecture for a dataset of `kind` ("vectors" | "images") and event `shape`;
    `width` is the MLP's hidden size (default 128) or the U-Net's base channels (default 32)."""
    if kind == "vectors":
        return {
            "arch": "mlp",
            "dim": int(shape[0]),
            "hidden": int(width or 128),
            "depth": 3,
            "emb_dim": 64,
            "num_classes": int(num_classes),
        }
    height, image_width, channels = shape
    if height != image_width:
        raise ValueError(f"images must be square, got {height}x{image_width}")
    return {
        "arch": "unet",
        "image_size": int(height),
        "in_channels": int(channels),
        "channels": int(width or 32),
        "channel_mults": [1, 2],
        "num_res_blocks": 1,
        "attention_resolutions": [max(int(height) // 2, 1)],
        "num_classes": int(num_classes),
    }


def build_network(network: dict[str, Any], *, seed: int = 0) -> nnx.Module:
    """The raw network F described by `network` (see `network_config`)."""
    options = dict(network)
    arch = options.pop("arch", None)
    rngs = nnx.Rngs(seed)
    if arch == "mlp":
        dim = options.pop("dim")
        return jnn.MLP(dim, **options, rngs=rngs)
    if arch == "unet":
        image_size = options.pop("image_size")
        in_channels = options.pop("in_channels")
        for name in ("channel_mults", "attention_resolutions"):
            if name in options:
                options[name] = tuple(options[name])
        return jnn.UNet(image_size, in_channels, **options, rngs=rngs)
    raise RecipeError(f"unknown architecture {arch!r} in the run's config")


def denoiser(network: nnx.Module, config: dict[str, Any]) -> EDMPrecond:
    """The EDM-preconditioned denoiser D(x, sigma, labels=...) of a raw network."""
    return EDMPrecond(raw=network, sigma_data=float(config["sigma_data"]))


def sampling_denoiser(network, config, *, labels=None, guidance=None):
    """A denoiser(x, sigma) for `jaxdiff.sample`: unconditional, conditional on `labels`, or
    with classifier-free guidance `guidance` (a scale; 1 is plain conditional)."""
    d = denoiser(network, config)
    if labels is None:
        if config["network"].get("num_classes", 0) > 0:
            return Conditional(d, None)
        return d
    labels = jnp.asarray(labels, jnp.int32)
    if guidance is None or guidance == 1.0:
        return Conditional(d, labels)
    return ClassifierFreeGuidance(d, labels, jnp.asarray(guidance, jnp.float32))


def data_sigma(x: np.ndarray) -> float:
    """EDM's sigma_data for a dataset: the standard deviation of its entries (0.5 for images
    scaled to [-1, 1], as EDM uses)."""
    return float(np.std(np.asarray(x, dtype=np.float64)))
