"""``jaxdiff train``: train an EDM-preconditioned score network on a dataset, with checkpoints."""

from __future__ import annotations

import argparse

from ..train import TOYS, build_network, data_sigma, edm_loss_fn, network_config
from ..train._recipe import CONFIG_VERSION
from ._common import (
    add_run_arguments,
    fail,
    int_at_least,
    output_dir_problem,
    run_defaults,
    train_and_report,
    unit_interval,
)

NAME = "train"
HELP = "train a score network (MLP or U-Net) on a 2-D toy, the digits or your .npy"
DESCRIPTION = f"""\
Train an EDM-preconditioned denoiser (Karras et al. 2022) with the EDM loss, AdamW with
warm-up and cosine decay, gradient clipping and an EMA of the weights. 2-D toys train an
MLP, images (scikit-learn's 8x8 digits, or a .npy of shape (N, H, W, C)) a U-Net.

Checkpoints (orbax) go to DIR/checkpoints every --ckpt-every steps and at the end; the last
--keep are kept. Running the command again on the same --out resumes from the last
checkpoint up to the new --steps total. Metrics go to DIR/metrics.jsonl.

datasets: {", ".join(TOYS)} (2-D, generated), digits (8x8 images with
labels, shipped with scikit-learn), or PATH.npy ((N, D) vectors or (N, H, W[, C]) images)

examples:
  jaxdiff train --data moons --steps 4000 --out runs/moons
  jaxdiff train --data digits --conditional --steps 20000 --out runs/digits
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="NAME|PATH.npy", help="the dataset")
    parser.add_argument(
        "--steps",
        type=int_at_least(1),
        required=True,
        metavar="N",
        help="total training steps (a resumed run continues up to N)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory")
    add_run_arguments(parser)
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="class-conditional model (needs labels: the digits)",
    )
    parser.add_argument(
        "--label-dropout",
        type=unit_interval,
        default=0.1,
        metavar="P",
        help="probability of dropping the label, for classifier-free guidance "
        "(default: %(default)s)",
    )


def training_config(args, dataset) -> dict:
    """The JSON config stored with the run: everything needed to rebuild and resume it."""
    images = dataset.kind == "images"
    num_classes = 0
    if args.conditional:
        num_classes = int(dataset.labels.max()) + 1
    return {
        "version": CONFIG_VERSION,
        "data": args.data,
        "kind": dataset.kind,
        "shape": list(dataset.x.shape[1:]),
        "sigma_data": data_sigma(dataset.x),
        "network": network_config(
            dataset.kind, dataset.x.shape[1:], num_classes=num_classes, width=args.width
        ),
        **run_defaults(args, images),
        "label_dropout": args.label_dropout if args.conditional else 0.0,
        "seed": args.seed,
    }


# the options, besides the common ones, that must agree with a run being resumed
_RESUME_KEYS = ("label_dropout",)


def run(args: argparse.Namespace) -> int:
    import jax

    from .. import train as jt

    problem = output_dir_problem(args.out)
    if problem:
        return fail(NAME, problem)
    try:
        dataset = jt.load_dataset(args.data, key=jax.random.key(args.seed))
    except (ValueError, OSError) as err:
        return fail(NAME, f"--data: {err}")
    if args.conditional and dataset.labels is None:
        return fail(NAME, f"--conditional needs a labelled dataset (digits), got {args.data!r}")
    try:
        config = training_config(args, dataset)
    except ValueError as err:
        return fail(NAME, f"--data: {err}")
    return train_and_report(
        NAME,
        args,
        dataset,
        config,
        resume_keys=_RESUME_KEYS,
        build=lambda c: build_network(c["network"], seed=args.seed),
        loss_fn=edm_loss_fn,
    )
