"""``jaxdiff bridge-train``: train a diffusion bridge (DDBM) between paired data."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ._args import int_at_least
from .train import add_run_arguments, fit_or_report, merge_resumed

NAME = "bridge-train"
HELP = (
    "train a diffusion bridge (DDBM) on paired data: one 2-D toy to another, or digit restoration"
)
DESCRIPTION = """\
Train a denoising diffusion bridge (Zhou et al. 2024, DDBM) between paired data (x_0, x_T):
a bridge-preconditioned denoiser D(x_t, t, x_T) (jaxdiff.bridges.BridgePrecond) whose raw
network sees x_t and x_T concatenated (an MLP for 2-D pairs, a U-Net for the digits),
trained with DDBM's bridge loss, AdamW with warm-up and cosine decay and an EMA of the
weights. Sample it with 'jaxdiff bridge-sample'.

Checkpoints (orbax) go to DIR/checkpoints every --ckpt-every steps and at the end; the last
--keep are kept. Running the command again on the same --out resumes from the last
checkpoint up to the new --steps total. Metrics go to DIR/metrics.jsonl.

paired data:
  A-to-B          for two different toys A, B of ring, swissroll, moons, checkerboard: x_T a
                  sample of B, x_0 one of A (e.g. moons-to-ring); --coupling angle (default:
                  the clouds paired in order of polar angle) or independent
  digits-restore  x_0 a clean 8x8 digit, x_T the same digit blurred (2x down- and
                  upsampled) plus Gaussian noise of std 0.1; 20% of the digits held out

bridges: ve (VE bridge, sigma_max = T = 80), vp (VP bridge, beta_d 2, beta_min 0.1, T = 1)

examples:
  jaxdiff bridge-train --data moons-to-ring --bridge vp --steps 4000 --out runs/m2r
  jaxdiff bridge-train --data digits-restore --bridge vp --steps 6000 --out runs/restore
"""

BRIDGES = ("ve", "vp")
CONFIG_VERSION = 1
HELD_OUT_STREAM = 1  # jax.random.fold_in(key(seed), HELD_OUT_STREAM): held-out pairs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, metavar="PAIRING", help="the paired data (see below)"
    )
    parser.add_argument(
        "--bridge", default="vp", metavar="{ve,vp}", help="the bridge (default: %(default)s)"
    )
    parser.add_argument(
        "--steps",
        type=int_at_least(1),
        required=True,
        metavar="N",
        help="total training steps (a resumed run continues up to N)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory")
    parser.add_argument(
        "--coupling",
        default="angle",
        metavar="{angle,independent}",
        help="how 2-D pairs are coupled (default: %(default)s)",
    )
    add_run_arguments(parser)


def _error(message: str) -> int:
    print(f"jaxdiff {NAME}: error: {message}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------- the recipe of a run


def bridge_config(kind: str) -> dict[str, Any]:
    """The stored description of a bridge: "ve" or "vp" with the library's defaults."""
    from .. import bridges

    if kind == "ve":
        return {"kind": "ve", "sigma_max": float(bridges.VE().sigma_max)}
    if kind == "vp":
        vp = bridges.VP()
        return {"kind": "vp", "beta_d": float(vp.beta_d), "beta_min": float(vp.beta_min)}
    raise ValueError(f"unknown bridge {kind!r}; expected one of {', '.join(BRIDGES)}")


def build_bridge(config: dict[str, Any]):
    """The `jaxdiff.bridges` bridge of a run's config."""
    from .. import bridges
    from ._model import RecipeError

    options = dict(config.get("bridge") or {})
    kind = options.pop("kind", None)
    if kind == "ve":
        return bridges.VE(**options)
    if kind == "vp":
        return bridges.VP(**options)
    raise RecipeError(f"unknown bridge {kind!r} in the run's config")


def load_pairs(config: dict[str, Any], *, held_out: bool, n: int | None = None):
    """The paired data of a run: its training pairs, or held-out ones (toys: other draws,
    from a held-out key; digits: the fixed held-out digits, degraded with a held-out key)."""
    import jax

    from .. import train as jt

    key = jax.random.key(config["seed"])
    if held_out:
        key = jax.random.fold_in(key, HELD_OUT_STREAM)
    if config["data"] == "digits-restore":
        return jt.pair_dataset(config["data"], key=key, part="test" if held_out else "train")
    return jt.pair_dataset(
        config["data"],
        key=key,
        n=n or config["n"],
        coupling=config["coupling"],
    )


def moments(x0, x_T) -> tuple[float, float, float]:
    """`(sigma_data_0, sigma_data_T, cov)` of paired data: the RMS of each end and the mean
    product E[x_0 x_T] (clipped to keep the preconditioning's variance positive)."""
    import numpy as np

    x0 = np.asarray(x0, np.float64)
    x_T = np.asarray(x_T, np.float64)
    s0 = float(np.sqrt(np.mean(x0**2)))
    sT = float(np.sqrt(np.mean(x_T**2)))
    bound = 0.99 * s0 * sT
    cov = float(np.clip(np.mean(x0 * x_T), -bound, bound))
    return s0, sT, cov


def network_config(kind: str, shape, *, width: int | None) -> dict[str, Any]:
    """The inner network of `ConcatConditioned`: input x_t and x_T concatenated, output x."""
    from ._model import network_config as base

    if kind == "vectors":
        network = base(kind, (2 * int(shape[0]),), num_classes=0, width=width)
        return network | {"dim": int(shape[0]), "in_dim": 2 * int(shape[0])}
    height, image_width, channels = shape
    network = base(kind, (height, image_width, 2 * channels), num_classes=0, width=width or 32)
    return network | {"out_channels": int(channels)}


def build_bridge_network(network: dict[str, Any], *, seed: int = 0):
    """The raw bridge network `F(x, c_noise, x_T)` described by `network`."""
    from ..nn import ConcatConditioned
    from ._model import build_network

    return ConcatConditioned(build_network(network, seed=seed))


def precond(network, config: dict[str, Any]):
    """The bridge denoiser `D(x_t, t, x_T)` of a raw network and its run's config."""
    from ..bridges import BridgePrecond

    return BridgePrecond(
        network,
        build_bridge(config),
        float(config["sigma_data_0"]),
        float(config["sigma_data_T"]),
        float(config["cov"]),
    )


def training_config(args, dataset) -> dict[str, Any]:
    """The JSON config stored with the run: everything needed to rebuild and resume it."""
    images = dataset.kind == "images"
    s0, sT, cov = moments(dataset.x, dataset.cond)
    return {
        "version": CONFIG_VERSION,
        "command": NAME,
        "data": args.data,
        "kind": dataset.kind,
        "shape": list(dataset.x.shape[1:]),
        "coupling": None if images else args.coupling,
        "n": int(dataset.x.shape[0]),
        "bridge": bridge_config(args.bridge),
        "sigma_data_0": s0,
        "sigma_data_T": sT,
        "cov": cov,
        "network": network_config(dataset.kind, dataset.x.shape[1:], width=args.width),
        "batch_size": args.batch_size or (64 if images else 256),
        "lr": args.lr or (1e-3 if images else 2e-3),
        "warmup": args.warmup,
        "ema": args.ema,
        "seed": args.seed,
    }


# the options that must agree with a run being resumed
_RESUME_KEYS = (
    "command",
    "data",
    "kind",
    "shape",
    "coupling",
    "n",
    "bridge",
    "network",
    "batch_size",
    "lr",
    "ema",
    "seed",
)


def bridge_loss_fn(config: dict[str, Any]):
    """`loss_fn(network, batch, key)` for `jaxdiff.train.fit`: DDBM's bridge loss of the
    preconditioned denoiser on the batch's pairs (``batch["x"]`` = x_0, ``batch["cond"]`` =
    x_T)."""
    from ..bridges import bridge_loss

    bridge = build_bridge(config)

    def loss_fn(network, batch, key):
        return bridge_loss(precond(network, config), batch["x"], batch["cond"], key, bridge)

    return loss_fn


# ------------------------------------------------------------------------------ the command


def run(args: argparse.Namespace) -> int:
    import jax

    from .. import train as jt

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return _error(f"--out {str(out)!r} exists and is not a directory")
    if args.data not in jt.PAIRINGS:
        return _error(
            f"--data: unknown pairing {args.data!r}; expected one of {', '.join(jt.PAIRINGS)}"
        )
    if args.bridge not in BRIDGES:
        return _error(f"--bridge: unknown bridge {args.bridge!r}; expected one of ve, vp")
    if args.coupling not in jt.COUPLINGS:
        return _error(
            f"--coupling: unknown coupling {args.coupling!r}; expected one of "
            f"{', '.join(jt.COUPLINGS)}"
        )
    base = {"data": args.data, "seed": args.seed, "coupling": args.coupling, "n": 10_000}
    try:
        dataset = load_pairs(base, held_out=False)
        config = training_config(args, dataset)
    except (ValueError, OSError) as err:
        return _error(f"--data: {err}")

    config, problem = merge_resumed(out, config, args, _RESUME_KEYS)
    if problem:
        return _error(problem)
    if config["batch_size"] > len(dataset):
        return _error(
            f"--batch-size {config['batch_size']} exceeds the {len(dataset)} training pairs"
        )
    if config["batch_size"] % jax.local_device_count():
        return _error(
            f"--batch-size {config['batch_size']} must be divisible by the "
            f"{jax.local_device_count()} local devices"
        )

    steps = args.steps
    warmup = config["warmup"] if config["warmup"] is not None else min(500, steps // 10)
    network = build_bridge_network(config["network"], seed=args.seed)
    optimizer = jt.adamw(config["lr"], warmup_steps=warmup, total_steps=steps)

    start = time.perf_counter()
    result = fit_or_report(
        NAME,
        network,
        dataset,
        bridge_loss_fn(config),
        config,
        out=out,
        steps=steps,
        optimizer=optimizer,
        ckpt_every=args.ckpt_every,
        keep=args.keep,
        quiet=args.quiet,
    )
    if isinstance(result, int):
        return result
    seconds = time.perf_counter() - start
    if result.resumed_from is not None:
        print(f"resumed from step {result.resumed_from} in {out}")
    done = len(result.losses)
    if done:
        print(
            f"trained {done} steps in {seconds:.1f} s ({done / seconds:.1f} steps/s); "
            f"final loss {result.losses[-1]:.4f}; checkpoint at step {steps} in {out}"
        )
    else:
        print(f"already at step {result.resumed_from} >= --steps {steps}; nothing to do")
    return 0
