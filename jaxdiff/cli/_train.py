"""``jaxdiff train``: train an EDM-preconditioned score network, or a flow-matching velocity
network, on a dataset, with checkpoints."""

from __future__ import annotations

import argparse

from ..train import (
    FLOW_COUPLINGS,
    FLOWS,
    OBJECTIVES,
    TIME_SAMPLINGS,
    TOYS,
    build_network,
    data_sigma,
    flow_config,
    network_config,
    training_loss_fn,
)
from ..train._recipe import CONFIG_VERSION
from . import _distributed
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
HELP = "train a score or flow network (MLP or U-Net) on a 2-D toy, the digits or your .npy"
DESCRIPTION = f"""\
Train an EDM-preconditioned denoiser (Karras et al. 2022) with the EDM loss (--objective
edm, the default), or a velocity network with the conditional flow-matching loss
(--objective flow: rectified or trigonometric path, uniform or logit-normal times as in
Stable Diffusion 3, optionally a minibatch optimal-transport coupling of data and noise as
in OT-CFM, Tong et al. 2023). AdamW with warm-up and cosine decay, gradient clipping and an
EMA of the weights. 2-D toys train an MLP, images (scikit-learn's 8x8 digits, or a .npy of
shape (N, H, W, C)) a U-Net. 'jaxdiff sample' samples either kind of run.

Checkpoints (orbax) go to DIR/checkpoints every --ckpt-every steps and at the end; the last
--keep are kept. Running the command again on the same --out resumes from the last
checkpoint up to the new --steps total. Metrics go to DIR/metrics.jsonl.

datasets: {", ".join(TOYS)} (2-D, generated), digits (8x8 images with
labels, shipped with scikit-learn), digits-train (the digits without the fifth that 'jaxdiff
restore' holds out), or PATH.npy ((N, D) vectors or (N, H, W[, C]) images)

examples:
  jaxdiff train --data moons --steps 4000 --out runs/moons
  jaxdiff train --data digits --conditional --steps 20000 --out runs/digits
  jaxdiff train --data moons --objective flow --coupling exact --steps 4000 --out runs/ot
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
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="edm",
        help="edm: an EDM-preconditioned denoiser and the EDM loss; flow: a velocity network "
        "and the flow-matching loss (default: %(default)s)",
    )
    flow = parser.add_argument_group("flow matching (with --objective flow)")
    flow.add_argument(
        "--flow",
        choices=FLOWS,
        default=None,
        help="the path: rectified x_t = (1 - t) x_0 + t eps, or trig (cos, sin) "
        "(default: rectified)",
    )
    flow.add_argument(
        "--time-sampling",
        choices=TIME_SAMPLINGS,
        default=None,
        help="training times: uniform, or logit-normal (SD3) (default: uniform)",
    )
    flow.add_argument(
        "--coupling",
        choices=FLOW_COUPLINGS,
        default=None,
        help="pair each batch's data and noise: independently (none), by the exact "
        "minibatch OT permutation (O(B^3) per step) or by entropic OT (sinkhorn, needs "
        "ott-jax: pip install 'jaxdiff[ot]') (default: none)",
    )
    _distributed.add_arguments(parser)


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
        # an EDM run's config is as before flows existed (no objective: "edm")
        **({"objective": "flow", "flow": _flow_options(args)} if args.objective == "flow" else {}),
    }


def _flow_options(args) -> dict:
    return flow_config(
        args.flow or "rectified",
        time_sampling=args.time_sampling or "uniform",
        coupling=args.coupling or "none",
    )


_FLOW_FLAGS = (("--flow", "flow"), ("--time-sampling", "time_sampling"), ("--coupling", "coupling"))


def flow_problem(args) -> str | None:
    """Why the flow options cannot be used as given, or None."""
    if args.objective != "flow":
        given = [flag for flag, name in _FLOW_FLAGS if getattr(args, name) is not None]
        if given:
            return f"{', '.join(given)} need --objective flow"
    if args.coupling == "sinkhorn":
        try:
            from ..train._coupling import _ott

            _ott()
        except ImportError as err:
            return str(err)
    return None


# the options, besides the common ones, that must agree with a run being resumed
_RESUME_KEYS = ("label_dropout", "objective", "flow")


def run(args: argparse.Namespace) -> int:
    # on several hosts: one data-parallel run over all their devices, process 0 writes --out
    return _distributed.run(NAME, args, _run)


def _run(args: argparse.Namespace) -> int:
    import jax

    from .. import train as jt

    problem = output_dir_problem(args.out) or flow_problem(args)
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
        loss_fn=training_loss_fn,
    )
