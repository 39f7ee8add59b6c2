"""``jaxdiff bridge-train``: train a diffusion bridge (DDBM) between paired data."""

from __future__ import annotations

import argparse
from typing import Any

from ..train import COUPLINGS, PAIRINGS, TOYS, build_bridge_network
from ..train._recipe import (
    BRIDGES,
    CONFIG_VERSION,
    bridge_config,
    bridge_loss_fn,
    bridge_network_config,
    bridge_pairs,
    pair_moments,
)
from ._common import (
    add_run_arguments,
    fail,
    int_at_least,
    output_dir_problem,
    run_defaults,
    train_and_report,
)

NAME = "bridge-train"
HELP = (
    "train a diffusion bridge (DDBM) on paired data: one 2-D toy to another, or digit restoration"
)
DESCRIPTION = f"""\
Train a denoising diffusion bridge (Zhou et al. 2024, DDBM) between paired data (x_0, x_T):
a bridge-preconditioned denoiser D(x_t, t, x_T) (jaxdiff.bridges.BridgePrecond) whose raw
network sees x_t and x_T concatenated (an MLP for 2-D pairs, a U-Net for the digits),
trained with DDBM's bridge loss, AdamW with warm-up and cosine decay and an EMA of the
weights. Sample it with 'jaxdiff bridge-sample'.

Checkpoints (orbax) go to DIR/checkpoints every --ckpt-every steps and at the end; the last
--keep are kept. Running the command again on the same --out resumes from the last
checkpoint up to the new --steps total. Metrics go to DIR/metrics.jsonl.

paired data:
  A-to-B          for two different toys A, B of {", ".join(TOYS)}: x_T a
                  sample of B, x_0 one of A (e.g. moons-to-ring); --coupling angle (default:
                  the clouds paired in order of polar angle) or independent
  digits-restore  x_0 a clean 8x8 digit, x_T the same digit blurred (2x down- and
                  upsampled) plus Gaussian noise of std 0.1; 20% of the digits held out

bridges: ve (VE bridge, sigma_max = T = 80), vp (VP bridge, beta_d 2, beta_min 0.1, T = 1)

examples:
  jaxdiff bridge-train --data moons-to-ring --bridge vp --steps 4000 --out runs/m2r
  jaxdiff bridge-train --data digits-restore --bridge vp --steps 6000 --out runs/restore
"""


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


def training_config(args, dataset) -> dict[str, Any]:
    """The JSON config stored with the run: everything needed to rebuild and resume it."""
    images = dataset.kind == "images"
    s0, sT, cov = pair_moments(dataset.x, dataset.cond)
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
        "network": bridge_network_config(dataset.kind, dataset.x.shape[1:], width=args.width),
        **run_defaults(args, images),
        "seed": args.seed,
    }


# the options, besides the common ones, that must agree with a run being resumed
_RESUME_KEYS = ("command", "coupling", "n", "bridge")


def run(args: argparse.Namespace) -> int:
    problem = output_dir_problem(args.out)
    if problem:
        return fail(NAME, problem)
    if args.data not in PAIRINGS:
        return fail(
            NAME, f"--data: unknown pairing {args.data!r}; expected one of {', '.join(PAIRINGS)}"
        )
    if args.bridge not in BRIDGES:
        return fail(
            NAME, f"--bridge: unknown bridge {args.bridge!r}; expected one of {', '.join(BRIDGES)}"
        )
    if args.coupling not in COUPLINGS:
        return fail(
            NAME,
            f"--coupling: unknown coupling {args.coupling!r}; expected one of "
            f"{', '.join(COUPLINGS)}",
        )
    base = {"data": args.data, "seed": args.seed, "coupling": args.coupling, "n": 10_000}
    try:
        dataset = bridge_pairs(base, held_out=False)
        config = training_config(args, dataset)
    except (ValueError, OSError) as err:
        return fail(NAME, f"--data: {err}")
    return train_and_report(
        NAME,
        args,
        dataset,
        config,
        resume_keys=_RESUME_KEYS,
        build=lambda c: build_bridge_network(c["network"], seed=args.seed),
        loss_fn=bridge_loss_fn,
        examples="training pairs",
    )
