"""``jaxdiff bridge-sample``: sample a trained diffusion bridge from held-out x_T, and score it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from .. import bridges
from ..train import bridge_precond, build_bridge, build_bridge_network
from ..train._recipe import held_out_pairs
from ._bridge_train import NAME as TRAIN_NAME
from ._common import (
    fail,
    fail_write,
    finite_float,
    int_at_least,
    output_file_problem,
    pyplot,
    seed,
)
from ._output import save_arrays, save_figure

NAME = "bridge-sample"
HELP = "sample a 'jaxdiff bridge-train' run from held-out x_T (DBIM or DDBM) to a PNG or .npy"
DESCRIPTION = """\
Load the EMA weights of the last checkpoint of a 'jaxdiff bridge-train' run, take x_T from
held-out pairs regenerated from the run's config (2-D: fresh draws from a held-out key;
digits: the held-out 20% of the digits, degraded with a held-out key) and carry them to
t = 0 with a bridge sampler on DDBM's Karras time grid. Prints a quality number:

  2-D pairs   the sliced Wasserstein distance (jaxdiff.metrics.sliced_wasserstein) of the
              samples to --num other held-out x_0, next to the floor: the distance of the
              x_0 paired with the x_T used to the same other held-out x_0
  digits      the mean squared error of the restored digits to the clean ones, next to the
              error of the degraded input itself

--out FILE.png draws the x_T cloud, the samples and the true x_0 density side by side (2-D),
or rows of degraded / restored / clean digits; --out FILE.npy saves the samples (and
FILE.x_T.npy, FILE.x_0.npy the held-out x_T and x_0 they belong to).

solvers:
  dbim   DBIM (Zheng et al. 2024), --eta in [0, 1] (0 deterministic, default), --order 1, 2 or
         3 (2 and 3 need eta = 0); steps + 1 NFE
  ddbm   DDBM's hybrid sampler (Zhou et al. 2024), --churn in [0, 1) (default 0.33),
         --guidance the weight of the h-transform (default 1); 3 steps - 1 NFE with churn

examples:
  jaxdiff bridge-sample --ckpt runs/m2r --solver dbim --steps 20 --num 4000 --out m2r.png
  jaxdiff bridge-sample --ckpt runs/restore --solver ddbm --steps 40 --num 64 --out r.png
"""

SOLVERS = tuple(bridges.SOLVERS)
MAX_PLOTTED_DIGITS = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, metavar="DIR", help="a 'jaxdiff bridge-train' run")
    parser.add_argument(
        "--solver", default="dbim", metavar="{dbim,ddbm}", help="the sampler (default: dbim)"
    )
    parser.add_argument("--eta", type=finite_float, default=None, help="DBIM's eta (default 0)")
    parser.add_argument(
        "--order", type=int_at_least(1), default=None, help="DBIM's order (default 1)"
    )
    parser.add_argument(
        "--churn", type=finite_float, default=None, help="DDBM's churn ratio (default 0.33)"
    )
    parser.add_argument(
        "--guidance", type=finite_float, default=None, help="DDBM's h-transform weight (default 1)"
    )
    parser.add_argument(
        "--steps",
        type=int_at_least(1),
        default=20,
        metavar="N",
        help="grid steps (default: %(default)s)",
    )
    parser.add_argument(
        "--num",
        type=int_at_least(2),
        default=1000,
        metavar="M",
        help="samples to draw, one per held-out x_T (default: %(default)s)",
    )
    parser.add_argument("--out", required=True, metavar="FILE.png|FILE.npy")
    parser.add_argument("--seed", type=seed, default=0, help="sampling seed")


#: each solver's options, with their defaults
SOLVER_OPTIONS = {
    "dbim": (("eta", 0.0), ("order", 1)),
    "ddbm": (("churn", 0.33), ("guidance", 1.0)),
}


def _flags(solver: str, sep: str) -> str:
    """The options of `solver` as flags, joined by `sep`."""
    return sep.join(f"--{option}" for option, _ in SOLVER_OPTIONS[solver])


def _solver(args):
    """The bridge sampler of ``--solver`` with its options; `ValueError` for options of the
    other solver, or values it refuses."""
    if args.solver not in SOLVERS:
        raise ValueError(
            f"--solver: unknown solver {args.solver!r}; expected one of {', '.join(SOLVERS)}"
        )
    other = next(name for name in SOLVERS if name != args.solver)
    if any(getattr(args, option) is not None for option, _ in SOLVER_OPTIONS[other]):
        raise ValueError(f"{_flags(other, ' and ')} are options of --solver {other}")
    options = {
        option: default if getattr(args, option) is None else getattr(args, option)
        for option, default in SOLVER_OPTIONS[args.solver]
    }
    make = bridges.SOLVERS[args.solver]
    try:
        return make(**options)
    except ValueError as err:
        raise ValueError(f"{_flags(args.solver, '/')}: {err}") from None


def run(args: argparse.Namespace) -> int:
    import jax

    from .. import bridges, train as jt
    from ..metrics import sliced_wasserstein

    out = Path(args.out)
    problem = output_file_problem(out)
    if problem:
        return fail(NAME, problem)
    try:
        solver = _solver(args)
    except ValueError as err:
        return fail(NAME, str(err))
    try:
        config = jt.read_config(args.ckpt)
        if config.get("command") != TRAIN_NAME:
            return fail(NAME, f"--ckpt: {args.ckpt!r} is not a 'jaxdiff {TRAIN_NAME}' run")
        network, config = jt.load_model(
            args.ckpt, lambda c: build_bridge_network(c["network"], seed=0)
        )
        bridge = build_bridge(config)
        x_T, x0, x0_other, _labels = held_out_pairs(config, args.num)
    except ValueError as err:  # CheckpointError, RecipeError
        return fail(NAME, f"--ckpt: {err}")

    denoiser = bridge_precond(network, config)
    start = time.perf_counter()
    samples = bridges.sample(
        denoiser,
        jax.numpy.asarray(x_T),
        bridge,
        steps=args.steps,
        solver=solver,
        key=jax.random.key(args.seed),
    )
    samples = np.asarray(samples)
    seconds = time.perf_counter() - start
    if not np.all(np.isfinite(samples)):
        return fail(NAME, f"{args.solver} produced non-finite samples ({args.steps} steps)")

    nfe = solver.nfe(args.steps)
    if config["kind"] == "images":
        mse = float(np.mean((samples - x0) ** 2))
        floor = float(np.mean((x_T - x0) ** 2))
        quality = f"MSE to the clean digits {mse:.4f} (degraded input: {floor:.4f})"
    else:
        key = jax.random.key(12345)
        # against x_0 independent of the x_T sampled from: the x_0 paired with those x_T would
        # flatter a coupled bridge (its samples track their own pairs)
        sw = float(sliced_wasserstein(samples, x0_other, key=key))
        floor = float(sliced_wasserstein(x0, x0_other, key=key))
        quality = f"sliced Wasserstein to held-out x_0 {sw:.4f} (held-out floor: {floor:.4f})"
    title = (
        f"{config['data']}, {config['bridge']['kind']} bridge: "
        f"{args.solver}, {args.steps} steps, {nfe} NFE"
    )
    try:
        if out.suffix.lower() == ".npy":
            save_arrays(
                {out: samples, out.with_suffix(".x_T.npy"): x_T, out.with_suffix(".x_0.npy"): x0}
            )
        elif config["kind"] == "images":
            plot_digits(out, x_T, samples, x0, title=title)
        else:
            plot_pairs(out, x_T, samples, np.concatenate([x0, x0_other]), title=title)
    except OSError as err:
        return fail_write(NAME, out, err)
    print(
        f"wrote {out}: {args.num} samples with {args.solver} ({args.steps} steps, {nfe} NFE) "
        f"in {seconds:.1f} s; {quality}"
    )
    return 0


def plot_pairs(path, x_T, samples, x0, *, title=""):
    """Three panels: the x_T cloud, the samples, and the density of the true x_0."""
    plt = pyplot()
    everything = np.concatenate([x_T, samples, x0])
    lim = float(np.quantile(np.abs(everything), 0.995)) * 1.1
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    axes[0].scatter(x_T[:, 0], x_T[:, 1], s=2, c="tab:blue", alpha=0.5)
    axes[0].set_title("x_T (held out)")
    axes[1].scatter(samples[:, 0], samples[:, 1], s=2, c="tab:orange", alpha=0.5)
    axes[1].set_title("samples of x_0")
    axes[2].hist2d(x0[:, 0], x0[:, 1], bins=100, range=[[-lim, lim], [-lim, lim]], cmap="Greys")
    axes[2].set_title("true x_0 density (held out)")
    for ax in axes:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    fig.suptitle(title)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def plot_digits(path, x_T, restored, clean, *, title="", cols=16):
    """Blocks of three rows (degraded / restored / clean) of up to `cols` digits each."""
    plt = pyplot()
    n = min(len(clean), MAX_PLOTTED_DIGITS)
    cols = min(cols, n)
    blocks = -(-n // cols)
    h, w = clean.shape[1:3]
    rows = 3 * blocks
    canvas = np.ones((rows * (h + 1) + blocks, cols * (w + 1) + 1), np.float32)
    for i in range(n):
        block, q = divmod(i, cols)
        for r, images in enumerate((x_T, restored, clean)):
            top = 1 + (3 * block + r) * (h + 1) + block
            left = 1 + q * (w + 1)
            canvas[top : top + h, left : left + w] = np.clip((images[i, ..., 0] + 1) / 2, 0, 1)
    fig, ax = plt.subplots(figsize=(0.45 * cols + 1.2, 0.45 * rows + 1))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([1 + (r + 0.5) * (h + 1) for r in range(3)])
    ax.set_yticklabels(["degraded", "restored", "clean"])
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
