"""``jaxdiff demo``: train a small score (or flow) network on a 2-D toy, sample it three ways,
score it.

The whole product in about a minute on two CPU cores: an MLP denoiser (flax NNX,
EDM-preconditioned) trained with the EDM loss on optax, checkpointed with orbax, then sampled
by three samplers of the compiled core. Each sample set is scored by its sliced Wasserstein
distance to held-out data, next to the distance between two held-out sets of the same size
(what a perfect model would reach).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ..train import OBJECTIVES, TOYS, build_network, draw_samples
from . import _train
from ._common import (
    fail,
    fail_write,
    int_at_least,
    output_file_problem,
    pyplot,
    seed,
)
from ._output import FIGURE_SUFFIXES, atomic_paths, write_figure, write_text

NAME = "demo"
HELP = "train an MLP on a 2-D toy in about a minute, sample it with three samplers, score it"
DESCRIPTION = """\
Train a small MLP score network (EDM preconditioning and loss, AdamW, EMA) on a 2-D toy
dataset, then sample it with three samplers of the compiled core -- Heun (EDM's
deterministic sampler), DPM-Solver++(2M) and DPM-Solver++(2M) SDE -- on a Karras grid.

Writes a figure (the held-out data density with each sample set over it) and a Markdown
table (beside the figure, same name, .md) with each sampler's sliced Wasserstein distance to
held-out data, next to the distance between two held-out sets of the same size: the floor a
perfect model reaches. Training runs in a temporary directory unless --run-dir is given (a
run there can be resumed, and sampled with 'jaxdiff sample --ckpt DIR').

With --objective flow the network is a rectified-flow velocity trained with the
flow-matching loss ('jaxdiff train --objective flow'), sampled from pure noise on the flow
grid (uniform in flow time) by Euler, Heun and DPM-Solver++(2M).

examples:
  jaxdiff demo --data moons --steps 3000 --out moons.png
  jaxdiff demo --objective flow --out flow.png
"""

SAMPLERS = (("heun", 18), ("dpmpp_2m", 20), ("dpmpp_2m_sde", 40))
#: the samplers of a flow model, on the flow grid
FLOW_SAMPLERS = (("euler", 20), ("heun", 10), ("dpmpp_2m", 20))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", choices=TOYS, default="ring", help="the 2-D toy dataset (default: %(default)s)"
    )
    parser.add_argument(
        "--steps",
        type=int_at_least(1),
        default=2500,
        metavar="N",
        help="training steps (default: %(default)s)",
    )
    parser.add_argument(
        "--num",
        type=int_at_least(2),
        default=4000,
        metavar="M",
        help="samples per sampler (default: %(default)s)",
    )
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="edm",
        help="edm: a score network; flow: a rectified-flow velocity network (default: %(default)s)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--run-dir",
        default=None,
        metavar="DIR",
        help="keep the training run here (default: a temporary directory)",
    )
    parser.add_argument(
        "--out",
        default="jaxdiff-demo.png",
        metavar="PATH",
        help=f"the figure ({', '.join(FIGURE_SUFFIXES)}); the table goes beside it as .md "
        "(default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    problem = output_file_problem(out, FIGURE_SUFFIXES)
    if problem:
        return fail(NAME, problem)
    if args.run_dir is not None:
        return _demo(args, Path(args.run_dir), out)
    with tempfile.TemporaryDirectory(prefix="jaxdiff-demo-") as tmp:
        return _demo(args, Path(tmp), out)


def _demo(args, run_dir: Path, out: Path) -> int:
    import jax

    from .. import train as jt
    from ..metrics import sliced_wasserstein
    from ..samplers import by_name
    from ..schedules import flow, karras

    total_start = time.perf_counter()
    # the train command with its defaults: the demo is `jaxdiff train` plus sampling
    train_parser = argparse.ArgumentParser()
    _train.add_arguments(train_parser)
    argv = ["--data", args.data, "--steps", str(args.steps), "--out", str(run_dir)]
    argv += ["--seed", str(args.seed), "--keep", "1", "--objective", args.objective]
    argv += ["--quiet"] if args.quiet else []
    train_args = train_parser.parse_args(argv)
    status = _train.run(train_args)
    if status:
        return status
    train_seconds = time.perf_counter() - total_start

    network, config = jt.load_model(run_dir, lambda c: build_network(c["network"], seed=0))
    # held-out data: fresh draws of the toy with keys the training set never used
    held = np.asarray(
        jt.load_dataset(args.data, key=jax.random.key(10_000 + args.seed), n=2 * args.num).x
    )
    held_a, held_b = held[: args.num], held[args.num :]
    sw_key = jax.random.key(1)
    floor = float(sliced_wasserstein(held_b, held_a, key=sw_key))

    rows, samples = [], {}
    is_flow = args.objective == "flow"
    for name, steps in FLOW_SAMPLERS if is_flow else SAMPLERS:
        solver = by_name(name)
        start = time.perf_counter()
        x = draw_samples(
            network,
            config,
            solver=solver,
            sigmas=flow(steps) if is_flow else karras(steps, 0.002, 80.0),
            num=args.num,
            key=jax.random.key(args.seed + 1),
        )
        seconds = time.perf_counter() - start
        sw = float(sliced_wasserstein(x, held_a, key=sw_key))
        samples[name] = x
        rows.append((name, steps, solver.nfe(steps), sw, sw / floor, seconds))

    table = _table(args, rows, floor, train_seconds)
    print()
    print(table)
    try:
        _write(out, table, held, samples, rows)
    except OSError as err:
        return fail_write(NAME, out, err)
    total = time.perf_counter() - total_start
    print(
        f"\nwrote {out} and {out.with_suffix('.md')}; training {train_seconds:.1f} s, "
        f"total {total:.1f} s"
    )
    return 0


def _table(args, rows, floor, train_seconds) -> str:
    model, grid = "MLP score model", "Karras grid 80 -> 0.002"
    if args.objective == "flow":
        model, grid = "MLP rectified flow", "flow grid from pure noise (uniform in t)"
    lines = [
        f"jaxdiff demo: {model} on '{args.data}', {args.steps} training steps "
        f"({train_seconds:.1f} s), {args.num} samples per sampler, {grid}",
        "",
        "| sampler | steps | NFE | sliced W2 to held-out | / floor | seconds |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, steps, nfe, sw, ratio, seconds in rows:
        lines.append(f"| {name} | {steps} | {nfe} | {sw:.4f} | {ratio:.2f} | {seconds:.1f} |")
    lines.append(f"| held-out vs held-out (floor) | - | - | {floor:.4f} | 1.00 | - |")
    return "\n".join(lines)


def _write(out: Path, table: str, held, samples, rows) -> None:
    """Writes the figure to `out` and the table beside it (.md), both or neither."""
    plt = pyplot()
    lim = float(np.quantile(np.abs(held), 0.995)) * 1.15
    # constrained layout keeps the (two-line) panel titles inside the figure
    fig, axes = plt.subplots(
        1, len(samples) + 1, figsize=(4 * (len(samples) + 1), 4.4), layout="constrained"
    )
    box = [[-lim, lim], [-lim, lim]]
    axes[0].hist2d(held[:, 0], held[:, 1], bins=100, range=box, cmap="Greys")
    axes[0].set_title("held-out data")
    for ax, (name, _steps, nfe, sw, ratio, _) in zip(axes[1:], rows, strict=True):
        ax.hist2d(held[:, 0], held[:, 1], bins=100, range=box, cmap="Greys")
        x = samples[name]
        ax.scatter(x[:, 0], x[:, 1], s=1.5, c="tab:orange", alpha=0.5)
        ax.set_title(f"{name}, {nfe} NFE\nsliced W2 {sw:.3f} ({ratio:.1f}x floor)")
    for ax in axes:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    try:
        with atomic_paths(out, out.with_suffix(".md")) as (figure, markdown):
            # the bounding box of everything drawn, titles included, plus a margin
            write_figure(fig, figure, out.suffix[1:], dpi=110, bbox_inches="tight", pad_inches=0.15)
            write_text(markdown, table + "\n")
    finally:
        plt.close(fig)
