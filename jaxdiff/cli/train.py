"""``jaxdiff train``: train an EDM-preconditioned score network on a dataset, with checkpoints."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._args import int_at_least, nonnegative_int, positive_float, unit_interval

NAME = "train"
HELP = "train a score network (MLP or U-Net) on a 2-D toy, the digits or your .npy"
DESCRIPTION = """\
Train an EDM-preconditioned denoiser (Karras et al. 2022) with the EDM loss, AdamW with
warm-up and cosine decay, gradient clipping and an EMA of the weights. 2-D toys train an
MLP, images (scikit-learn's 8x8 digits, or a .npy of shape (N, H, W, C)) a U-Net.

Checkpoints (orbax) go to DIR/checkpoints every --ckpt-every steps and at the end; the last
--keep are kept. Running the command again on the same --out resumes from the last
checkpoint up to the new --steps total. Metrics go to DIR/metrics.jsonl.

datasets: ring, swissroll, moons, checkerboard (2-D, generated), digits (8x8 images with
labels, shipped with scikit-learn), or PATH.npy ((N, D) vectors or (N, H, W[, C]) images)

examples:
  jaxdiff train --data moons --steps 4000 --out runs/moons
  jaxdiff train --data digits --conditional --steps 20000 --out runs/digits
"""

TOYS = ("ring", "swissroll", "moons", "checkerboard")


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


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every training command shares (also used by ``jaxdiff bridge-train``):
    batch size, learning rate, warm-up, EMA, width, checkpointing, seed and progress bar."""
    parser.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=None,
        metavar="B",
        help="batch size (default: 256 for 2-D data, 64 for images)",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="peak learning rate (default: 2e-3 for 2-D data, 1e-3 for images)",
    )
    parser.add_argument(
        "--warmup",
        type=nonnegative_int,
        default=None,
        metavar="N",
        help="warm-up steps (default: min(500, steps / 10))",
    )
    parser.add_argument(
        "--ema",
        type=unit_interval,
        default=0.999,
        metavar="DECAY",
        help="EMA decay of the weights (default: %(default)s)",
    )
    parser.add_argument(
        "--width",
        type=int_at_least(1),
        default=None,
        metavar="W",
        help="network width: the MLP's hidden size (default 128) or the U-Net's base channels "
        "(default 32)",
    )
    parser.add_argument(
        "--ckpt-every",
        type=int_at_least(1),
        default=1000,
        metavar="N",
        help="checkpoint every N steps (default: %(default)s)",
    )
    parser.add_argument(
        "--keep",
        type=int_at_least(1),
        default=3,
        metavar="K",
        help="checkpoints to keep (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=nonnegative_int, default=0, help="random seed (default: %(default)s)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _error(message: str) -> int:
    print(f"jaxdiff train: error: {message}", file=sys.stderr)
    return 2


def training_config(args, dataset) -> dict:
    """The JSON config stored with the run: everything needed to rebuild and resume it."""
    from ._model import CONFIG_VERSION, data_sigma, network_config

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
        "batch_size": args.batch_size or (64 if images else 256),
        "lr": args.lr or (1e-3 if images else 2e-3),
        "warmup": args.warmup,
        "ema": args.ema,
        "label_dropout": args.label_dropout if args.conditional else 0.0,
        "seed": args.seed,
    }


# the options that must agree with a run being resumed
_RESUME_KEYS = (
    "data",
    "kind",
    "shape",
    "network",
    "batch_size",
    "lr",
    "ema",
    "label_dropout",
    "seed",
)


def run(args: argparse.Namespace) -> int:
    import jax

    from .. import train as jt
    from ._model import build_network

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return _error(f"--out {str(out)!r} exists and is not a directory")
    try:
        dataset = jt.load_dataset(args.data, key=jax.random.key(args.seed))
    except (ValueError, OSError) as err:
        return _error(f"--data: {err}")
    if args.conditional and dataset.labels is None:
        return _error(f"--conditional needs a labelled dataset (digits), got {args.data!r}")
    try:
        config = training_config(args, dataset)
    except ValueError as err:
        return _error(f"--data: {err}")

    config, problem = merge_resumed(out, config, args, _RESUME_KEYS)
    if problem:
        return _error(problem)
    try:
        network = build_network(config["network"], seed=args.seed)
    except ValueError as err:  # e.g. an image size the U-Net cannot downsample
        return _error(f"--data: {err}")
    if config["batch_size"] > len(dataset):
        return _error(f"--batch-size {config['batch_size']} exceeds the {len(dataset)} examples")
    if config["batch_size"] % jax.local_device_count():
        return _error(
            f"--batch-size {config['batch_size']} must be divisible by the "
            f"{jax.local_device_count()} local devices"
        )

    steps = args.steps
    warmup = config["warmup"] if config["warmup"] is not None else min(500, steps // 10)
    loss_fn = edm_loss_fn(config)
    optimizer = jt.adamw(config["lr"], warmup_steps=warmup, total_steps=steps)

    start = time.perf_counter()
    result = fit_or_report(
        "train",
        network,
        dataset,
        loss_fn,
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


def merge_resumed(out, config: dict, args, keys) -> tuple[dict, str | None]:
    """The config of a run in `out`, if there is one, merged with `config` (from the command
    line): options not given (batch size, learning rate, warm-up) come from the stored run;
    `keys` must agree. Returns `(config, None)` or `(config, error message)`."""
    from .. import train as jt

    if jt.latest_step(out) is None:
        return config, None
    try:
        resumed = jt.read_config(out)
    except ValueError as err:
        return config, str(err)
    for name in ("batch_size", "lr", "warmup"):
        if getattr(args, name) is None:
            config[name] = resumed.get(name, config[name])
    differ = [k for k in keys if resumed.get(k) != config.get(k)]
    if differ:
        return config, (
            f"{str(out)!r} holds a run with other settings ({', '.join(differ)}); "
            "use another --out or the same options"
        )
    return resumed | {"warmup": config["warmup"]}, None


def progress_bar(steps: int, desc: str, *, quiet: bool):
    """A tqdm bar over `steps` (None when quiet) and the `progress(step, metrics)` callback of
    `jaxdiff.train.fit` that moves it."""
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=desc, unit="step", dynamic_ncols=True)

    def progress(step, metrics):
        if bar is not None:
            bar.n = step
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
            bar.refresh()

    return bar, progress


def fit_or_report(
    name, network, dataset, loss_fn, config, *, out, steps, optimizer, ckpt_every, keep, quiet
):
    """`jaxdiff.train.fit` with a progress bar, for the training commands. Returns the
    `FitResult`, or an exit status after printing one line: 130 when interrupted (the last
    checkpoint is kept and named), 2 for a run directory that cannot be resumed."""
    from .. import train as jt

    bar, progress = progress_bar(steps, name, quiet=quiet)
    try:
        return jt.fit(
            network,
            dataset,
            loss_fn,
            steps=steps,
            batch_size=config["batch_size"],
            out_dir=out,
            optimizer=optimizer,
            ema_decay=config["ema"],
            seed=config["seed"],
            ckpt_every=ckpt_every,
            keep=keep,
            config=config,
            progress=progress,
        )
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        last = jt.latest_step(out)
        print(
            f"jaxdiff {name}: interrupted; last checkpoint at step {last} in {out}", file=sys.stderr
        )
        return 130
    except ValueError as err:  # a CheckpointError of the run being resumed
        print(f"jaxdiff {name}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()


def edm_loss_fn(config):
    """`loss_fn(network, batch, key)` for `jaxdiff.train.fit`: the EDM loss of the
    preconditioned denoiser, with label dropout for classifier-free guidance."""
    import jax
    import jax.numpy as jnp

    from .. import train as jt
    from ._model import denoiser

    sigma_data = float(config["sigma_data"])
    conditional = config["network"].get("num_classes", 0) > 0
    p_drop = float(config["label_dropout"])

    def loss_fn(network, batch, key):
        d = denoiser(network, config)
        labels = None
        if conditional:
            key, drop_key = jax.random.split(key)
            labels = batch["labels"]
            drop = jax.random.bernoulli(drop_key, p_drop, labels.shape)
            labels = jnp.where(drop, -1, labels)
        return jt.edm_loss(d, batch["x"], key, labels=labels, sigma_data=sigma_data)

    return loss_fn
