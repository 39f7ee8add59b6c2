"""The model recipes of ``jaxdiff train`` and ``jaxdiff bridge-train`` runs: how a run's stored
config turns back into a network, a denoiser and a loss.

A run directory holds orbax checkpoints and a JSON config (stored with every checkpoint) from
which the network is rebuilt: the dataset, its shape and ``sigma_data``, the architecture and
its options, and the training settings.

- Score models (``jaxdiff train``), by the config's ``"objective"``:

  * ``"edm"`` (the default, and every config without an objective): the network is an
    EDM-preconditioned denoiser (`jaxdiff.parametrizations.EDMPrecond`) trained with the EDM
    loss;
  * ``"flow"``: the network is a velocity field on a flow path (`FlowVelocity`: rectified or
    trigonometric, the config's ``"flow"`` entry) trained with the flow-matching loss
    (optionally logit-normal times and a minibatch OT coupling); its denoiser comes from
    `jaxdiff.parametrizations.from_velocity`, so every sampler serves it.

  Both use the same MLP / U-Net backbones and label dropout for classifier-free guidance.
  Rebuild a run with ``load_model(run, lambda c: build_network(c["network"]))``, then
  `sampling_denoiser` or `draw_samples` (they read the objective).
- Diffusion bridges (``jaxdiff bridge-train``): a `jaxdiff.bridges.BridgePrecond` over a
  `jaxdiff.nn.ConcatConditioned` network, trained with DDBM's bridge loss. Rebuild a run with
  ``load_model(run, lambda c: build_bridge_network(c["network"]))``, then `bridge_precond`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from .. import bridges, nn as jnn
from .._checks import check_choice, check_count, check_key, check_number, check_positive
from .._parallel import replicate
from ..parametrizations._denoisers import (
    ClassifierFreeGuidance,
    Conditional,
    EDMPrecond,
    from_velocity,
)
from ..processes import AbstractFlow, RectifiedFlow, TrigFlow
from ..processes._flows import broadcast_coefficients
from ..samplers._core import sample
from ._coupling import OT_COUPLINGS
from ._losses import TIME_SAMPLINGS, edm_loss, flow_matching_loss
from ._pairs import degrade_digits, pair_dataset

__all__ = [
    "BRIDGES",
    "CONFIG_VERSION",
    "FLOWS",
    "FLOW_COUPLINGS",
    "HELD_OUT_STREAM",
    "OBJECTIVES",
    "FlowVelocity",
    "RecipeError",
    "bridge_config",
    "bridge_loss_fn",
    "bridge_network_config",
    "bridge_pairs",
    "bridge_precond",
    "build_bridge",
    "build_bridge_network",
    "build_network",
    "data_sigma",
    "denoiser",
    "draw_samples",
    "edm_loss_fn",
    "flow_config",
    "flow_loss_fn",
    "flow_of",
    "held_out_pairs",
    "network_config",
    "objective_of",
    "pair_moments",
    "sampling_denoiser",
    "training_loss_fn",
    "velocity",
]

#: The version of the run configs written by this recipe.
CONFIG_VERSION = 1
#: The bridges a bridge run may use: "ve" (VE bridge) or "vp" (VP bridge), library defaults.
BRIDGES = ("ve", "vp")
#: ``jax.random.fold_in(key(seed), HELD_OUT_STREAM)`` draws a bridge run's held-out pairs.
HELD_OUT_STREAM = 1
#: The training objectives of a score-model run: EDM's denoiser loss or flow matching.
OBJECTIVES = ("edm", "flow")
#: The paths of a flow run: rectified (linear) or trigonometric.
FLOWS = ("rectified", "trig")
#: The couplings of a flow run's data and noise: independent, or a minibatch OT plan.
FLOW_COUPLINGS = ("none", *OT_COUPLINGS)


class RecipeError(ValueError):
    """A run directory's config that this version cannot rebuild a model from."""


# ------------------------------------------------------------------------- score models


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


#: the key of a network config that holds its width (``--width``), by architecture
WIDTH_KEYS = {"mlp": "hidden", "unet": "channels"}


def with_width_of(network: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """`network` with the width of the `stored` config of the same architecture (a resumed
    run keeps its width when none is asked for); `network` unchanged otherwise."""
    key = WIDTH_KEYS.get(network.get("arch"))
    if key is None or stored.get("arch") != network.get("arch") or key not in stored:
        return network
    return network | {key: stored[key]}


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


def objective_of(config: dict[str, Any]) -> str:
    """The training objective of a run's config: ``"edm"`` (also for configs written before
    flows existed) or ``"flow"``."""
    objective = config.get("objective", "edm")
    if objective not in OBJECTIVES:
        raise RecipeError(f"unknown objective {objective!r} in the run's config")
    return objective


def flow_config(
    path: str = "rectified",
    *,
    time_sampling: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    coupling: str = "none",
) -> dict[str, Any]:
    """The stored description of a flow run: the path (`FLOWS`), the training times
    (`flow_matching_loss`'s `time_sampling`, `logit_mean`, `logit_std`) and the coupling of
    data and noise (`FLOW_COUPLINGS`)."""
    check_choice("path", path, FLOWS)
    check_choice("time_sampling", time_sampling, TIME_SAMPLINGS)
    check_choice("coupling", coupling, FLOW_COUPLINGS)
    check_number("logit_mean", logit_mean)
    check_positive("logit_std", logit_std)
    return {
        "path": path,
        "time_sampling": time_sampling,
        "logit_mean": float(logit_mean),
        "logit_std": float(logit_std),
        "coupling": coupling,
    }


def flow_of(config: dict[str, Any]) -> AbstractFlow:
    """The `jaxdiff` flow (`RectifiedFlow` or `TrigFlow`) of a flow run's config."""
    path = (config.get("flow") or {}).get("path")
    if path == "rectified":
        return RectifiedFlow()
    if path == "trig":
        return TrigFlow()
    raise RecipeError(f"unknown flow path {path!r} in the run's config")


class FlowVelocity(eqx.Module):
    r"""The velocity field `v(x_t, t, labels=None)` of a raw network `F` on a flow path
    $x_t = \alpha x_0 + \beta\varepsilon$, with its input and output scaled to unit variance
    for data of standard deviation $\sigma_d$ (EDM's principle, Karras et al. 2022, applied to
    the velocity):

    $$v(x_t, t) = c_{out}(t)\,F(c_{in}(t)\,x_t,\ t),\quad
    c_{in} = (\alpha^2\sigma_d^2 + \beta^2)^{-1/2},\quad
    c_{out} = (\dot\alpha^2\sigma_d^2 + \dot\beta^2)^{1/2},$$

    the standard deviations of $x_t$ and of the target $\dot\alpha x_0 + \dot\beta\varepsilon$
    per element. `t` is a scalar or one time per sample; `labels` reach `F` as in `EDMPrecond`.
    """

    raw: Any
    flow: AbstractFlow
    sigma_data: float = 1.0

    def __call__(self, x_t, t, labels=None):
        t = jnp.asarray(t, jnp.result_type(x_t))
        alpha, beta, d_alpha, d_beta = broadcast_coefficients(self.flow, x_t, t)
        sd2 = self.sigma_data**2
        c_in = jax.lax.rsqrt(alpha**2 * sd2 + beta**2)
        c_out = jnp.sqrt(d_alpha**2 * sd2 + d_beta**2)
        kwargs = {} if labels is None else {"labels": labels}
        return (c_out * self.raw(c_in * x_t, t, **kwargs)).astype(x_t.dtype)


def velocity(network: nnx.Module, config: dict[str, Any]) -> FlowVelocity:
    """The velocity field v(x_t, t, labels=...) of a flow run's raw network."""
    return FlowVelocity(network, flow_of(config), float(config["sigma_data"]))


class _VelocityDenoiser(eqx.Module):
    """`D(x, sigma, labels=None)` of a `FlowVelocity` (`from_velocity` with the labels bound),
    the form `Conditional` and `ClassifierFreeGuidance` take."""

    velocity: FlowVelocity

    def __call__(self, x, sigma, labels=None):
        v = self.velocity if labels is None else functools.partial(self.velocity, labels=labels)
        return from_velocity(v, self.velocity.flow)(x, sigma)


def denoiser(network: nnx.Module, config: dict[str, Any]):
    """The denoiser D(x, sigma, labels=...) of a run's raw network: EDM-preconditioned, or
    from the velocity of a flow run."""
    if objective_of(config) == "flow":
        return _VelocityDenoiser(velocity(network, config))
    return EDMPrecond(raw=network, sigma_data=float(config["sigma_data"]))


def sampling_denoiser(network, config, *, labels=None, guidance=None):
    """A denoiser(x, sigma) for `jaxdiff.sample`: unconditional, conditional on `labels`, or
    with classifier-free guidance `guidance` (a scale; 1 is plain conditional)."""
    d = denoiser(network, config)
    if labels is None:
        if config["network"].get("num_classes", 0) > 0:
            return Conditional(d, -1)  # the null class: unconditional
        return d
    labels = jnp.asarray(labels, jnp.int32)
    if guidance is None or guidance == 1.0:
        return Conditional(d, labels)
    return ClassifierFreeGuidance(d, labels, jnp.asarray(guidance, jnp.float32))


def data_sigma(x: np.ndarray) -> float:
    """EDM's sigma_data for a dataset: the standard deviation of its entries (0.5 for images
    scaled to [-1, 1], as EDM uses)."""
    return float(np.std(np.asarray(x, dtype=np.float64)))


def _training_labels(config: dict[str, Any], batch, key):
    """`(key, labels)`: the labels a run's loss sees, with label dropout for classifier-free
    guidance (each label replaced by the null class `-1` with probability
    ``config["label_dropout"]``, drawn from a key split off `key`); `None` for an
    unconditional run."""
    if config["network"].get("num_classes", 0) <= 0:
        return key, None
    key, drop_key = jax.random.split(key)
    labels = batch["labels"]
    drop = jax.random.bernoulli(drop_key, float(config["label_dropout"]), labels.shape)
    return key, jnp.where(drop, -1, labels)


def edm_loss_fn(config: dict[str, Any]):
    """`loss_fn(network, batch, key)` for `jaxdiff.train.fit`: the EDM loss of the
    preconditioned denoiser, with label dropout for classifier-free guidance."""
    sigma_data = float(config["sigma_data"])

    def loss_fn(network, batch, key):
        key, labels = _training_labels(config, batch, key)
        d = denoiser(network, config)
        return edm_loss(d, batch["x"], key=key, labels=labels, sigma_data=sigma_data)

    return loss_fn


def flow_loss_fn(config: dict[str, Any]):
    """`loss_fn(network, batch, key)` for `jaxdiff.train.fit`: the flow-matching loss of a
    flow run's velocity (`FlowVelocity`) with the run's times and coupling, and label dropout
    for classifier-free guidance as in `edm_loss_fn`."""
    options = config["flow"]
    coupling = None if options["coupling"] == "none" else options["coupling"]

    def loss_fn(network, batch, key):
        key, labels = _training_labels(config, batch, key)
        return flow_matching_loss(
            velocity(network, config),
            batch["x"],
            flow_of(config),
            key=key,
            time_sampling=options["time_sampling"],
            logit_mean=options["logit_mean"],
            logit_std=options["logit_std"],
            coupling=coupling,
            labels=labels,
        )

    return loss_fn


def training_loss_fn(config: dict[str, Any]):
    """The `loss_fn(network, batch, key)` of a run's objective: `edm_loss_fn` or
    `flow_loss_fn`."""
    return flow_loss_fn(config) if objective_of(config) == "flow" else edm_loss_fn(config)


def draw_samples(
    network, config, *, solver, sigmas, num, key, labels=None, guidance=1.0, batch=4096, mesh=None
) -> np.ndarray:
    """`num` samples of a trained score model, as a NumPy array.

    Drawn in chunks of `batch` (one compiled program for every chunk) with `solver` (a
    `jaxdiff.samplers` sampler or its name) over the decreasing grid `sigmas`; `labels` (one
    class per sample) and `guidance` condition a class-conditional model (see
    `sampling_denoiser`). Each chunk's noise comes from `key` folded with its offset; it is
    scaled by ``sigmas[0]``, or is the unit-variance noise when the grid starts at ``inf`` (a
    flow's pure noise).

    With `mesh` (a `jax.sharding.Mesh` with an axis ``"data"``, e.g. `data_mesh()` over the
    devices of every process of a `jax.distributed` run; call it in every process), each
    chunk is split over the mesh: every device draws the noise of its rows only and samples
    them, and the chunks are gathered into the same array in every process. The samples are
    those of the call without `mesh` (the noise of a key does not depend on how it is
    sharded), up to the float rounding of the network's sharded evaluation. With several
    chunks (`num > batch`), `batch` must be divisible by the mesh's devices.
    """
    num = check_count("num", num)
    batch = check_count("batch", batch)
    check_key(key)
    shape = tuple(config["shape"])
    chunk = min(batch, num)
    padded = chunk  # the rows computed per chunk: `chunk`, or more to fill every device
    if mesh is not None:
        devices = mesh.shape["data"]
        if chunk < num and chunk % devices:
            raise ValueError(
                f"batch ({batch}) must be divisible by the {devices} devices of the mesh"
            )
        padded = -(-chunk // devices) * devices
        graph, state = nnx.split(network)
        network = nnx.merge(graph, replicate(state, mesh))
        rows = NamedSharding(mesh, PartitionSpec("data"))
    sigma_max = float(sigmas[0])
    noise_scale = 1.0 if math.isinf(sigma_max) else sigma_max
    outputs = []
    for start in range(0, num, chunk):
        k_noise, k_solver = jax.random.split(jax.random.fold_in(key, start))
        chunk_labels = None
        if labels is not None:
            chunk_labels = np.resize(labels[start : start + chunk], padded)
        if mesh is None:
            x = noise_scale * jax.random.normal(k_noise, (chunk, *shape), jnp.float32)
        else:  # the first `chunk` rows of a longer draw are the same numbers
            x = _sharded_noise(k_noise, (padded, *shape), noise_scale, rows)
            if chunk_labels is not None:
                chunk_labels = jax.device_put(chunk_labels, rows)
        d = sampling_denoiser(network, config, labels=chunk_labels, guidance=guidance)
        out = sample(d, x, sigmas, solver=solver, key=k_solver)
        if mesh is not None and not out.is_fully_addressable:
            from jax.experimental import multihost_utils

            out = multihost_utils.process_allgather(out, tiled=True)
        outputs.append(np.asarray(out)[:chunk])
    return np.concatenate(outputs)[:num]


@functools.partial(jax.jit, static_argnums=(1, 3))
def _sharded_noise(key, shape, scale, sharding):
    return jax.lax.with_sharding_constraint(
        scale * jax.random.normal(key, shape, jnp.float32), sharding
    )


# ---------------------------------------------------------------------- diffusion bridges


def bridge_config(kind: str) -> dict[str, Any]:
    """The stored description of a bridge: "ve" or "vp" with the library's defaults."""
    if kind == "ve":
        return {"kind": "ve", "sigma_max": float(bridges.VE().sigma_max)}
    if kind == "vp":
        vp = bridges.VP()
        return {"kind": "vp", "beta_d": float(vp.beta_d), "beta_min": float(vp.beta_min)}
    raise ValueError(f"unknown bridge {kind!r}; expected one of {', '.join(BRIDGES)}")


def build_bridge(config: dict[str, Any]) -> bridges.AbstractBridge:
    """The `jaxdiff.bridges` bridge of a run's config."""
    options = dict(config.get("bridge") or {})
    kind = options.pop("kind", None)
    if kind == "ve":
        return bridges.VE(**options)
    if kind == "vp":
        return bridges.VP(**options)
    raise RecipeError(f"unknown bridge {kind!r} in the run's config")


def bridge_pairs(config: dict[str, Any], *, held_out: bool, n: int | None = None):
    """The paired data of a bridge run: its training pairs, or held-out ones (toys: other
    draws, from a held-out key; digits: the fixed held-out digits, degraded with a held-out
    key)."""
    key = jax.random.key(config["seed"])
    if held_out:
        key = jax.random.fold_in(key, HELD_OUT_STREAM)
    if config["data"] == "digits-restore":
        return pair_dataset(config["data"], key=key, part="test" if held_out else "train")
    return pair_dataset(config["data"], key=key, n=n or config["n"], coupling=config["coupling"])


def held_out_pairs(config: dict[str, Any], num: int):
    """`(x_T, x_0, x_0_other, labels)` as NumPy arrays: `num` held-out pairs of a bridge run;
    for 2-D pairs also `num` more held-out x_0 (for the floor of a distance) and no labels,
    for the digits no other x_0 and their classes. More samples than held-out digits cycle
    them, each copy degraded afresh."""
    num = check_count("num", num)
    if config["kind"] == "images":
        pairs = bridge_pairs(config, held_out=True)
        if num <= len(pairs):
            return (
                np.asarray(pairs.cond[:num]),
                np.asarray(pairs.x[:num]),
                None,
                np.asarray(pairs.labels[:num]),
            )
        # more samples than held-out digits: cycle them, each copy degraded afresh
        idx = np.arange(num) % len(pairs)
        x0 = np.asarray(pairs.x)[idx]
        key = jax.random.fold_in(jax.random.key(config["seed"]), HELD_OUT_STREAM + 1)
        x_T = np.asarray(degrade_digits(x0, key))
        return x_T, x0, None, np.asarray(pairs.labels)[idx]
    pairs = bridge_pairs(config, held_out=True, n=2 * num)
    x_T, x0 = np.asarray(pairs.cond), np.asarray(pairs.x)
    return x_T[:num], x0[:num], x0[num:], None


def pair_moments(x0, x_T) -> tuple[float, float, float]:
    """`(sigma_data_0, sigma_data_T, cov)` of paired data: the RMS of each end and the mean
    product E[x_0 x_T] (clipped to keep the preconditioning's variance positive)."""
    x0 = np.asarray(x0, np.float64)
    x_T = np.asarray(x_T, np.float64)
    s0 = float(np.sqrt(np.mean(x0**2)))
    sT = float(np.sqrt(np.mean(x_T**2)))
    bound = 0.99 * s0 * sT
    cov = float(np.clip(np.mean(x0 * x_T), -bound, bound))
    return s0, sT, cov


def bridge_network_config(kind: str, shape, *, width: int | None) -> dict[str, Any]:
    """The inner network of `ConcatConditioned`: input x_t and x_T concatenated, output x."""
    if kind == "vectors":
        network = network_config(kind, (2 * int(shape[0]),), num_classes=0, width=width)
        return network | {"dim": int(shape[0]), "in_dim": 2 * int(shape[0])}
    height, image_width, channels = shape
    network = network_config(
        kind, (height, image_width, 2 * channels), num_classes=0, width=width or 32
    )
    return network | {"out_channels": int(channels)}


def build_bridge_network(network: dict[str, Any], *, seed: int = 0) -> jnn.ConcatConditioned:
    """The raw bridge network `F(x, c_noise, x_T)` described by `network`."""
    return jnn.ConcatConditioned(build_network(network, seed=seed))


def bridge_precond(network, config: dict[str, Any]) -> bridges.BridgePrecond:
    """The bridge denoiser `D(x_t, t, x_T)` of a raw network and its run's config."""
    return bridges.BridgePrecond(
        network,
        build_bridge(config),
        float(config["sigma_data_0"]),
        float(config["sigma_data_T"]),
        float(config["cov"]),
    )


def bridge_loss_fn(config: dict[str, Any]):
    """`loss_fn(network, batch, key)` for `jaxdiff.train.fit`: DDBM's bridge loss of the
    preconditioned denoiser on the batch's pairs (``batch["x"]`` = x_0, ``batch["cond"]`` =
    x_T)."""
    bridge = build_bridge(config)

    def loss_fn(network, batch, key):
        return bridges.bridge_loss(
            bridge_precond(network, config), batch["x"], batch["cond"], bridge, key=key
        )

    return loss_fn
