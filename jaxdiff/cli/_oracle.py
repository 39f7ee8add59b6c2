"""``jaxdiff oracle``: four samplers on an exact Gaussian-mixture oracle, scored exactly.

The data distribution is a 2-D Gaussian mixture (`jaxdiff.analytic`), whose score is known in
closed form at every time of every process. Sampling it with that exact score leaves only the
sampler's own errors (time discretisation, the prior at t_max, the stop at t_min), and the
mixture's exact log-density measures them: the mean log-likelihood of the samples should
match E_p[log p], computed by quadrature. The computation is `jaxdiff.analytic`'s
(`oracle_samplers`, `run_oracle_sampler`, `expected_log_prob`); this module prints and plots.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import jax.random as jr
import numpy as np

from .. import analytic
from ..analytic import ExpectedLogProb, OracleResult
from ..analytic._oracle import mixture_log_prob
from ..sde import ODE_SOLVERS
from ._common import (
    fail,
    fail_write,
    int_at_least,
    output_file_problem,
    seed,
)
from ._output import FIGURE_SUFFIXES, save_figure

NAME = "oracle"
HELP = "sample an exact 2-D mixture with the VP/VE reverse SDE and probability-flow ODE"
DESCRIPTION = """\
Sample a 2-D Gaussian mixture (the exact oracle of jaxdiff.analytic) with four samplers:
the reverse-time SDE and the probability-flow ODE of the VP and of the VE process, each
driven by the mixture's exact score and solved with jaxdiff.solve_sde from the prior at
t_max down to t_min (Euler-Maruyama for the SDEs).

Prints, for each sampler, the mean log-likelihood of its samples x / s(t_min) under the
density it targets exactly, p(. ; sigma(t_min)) (the data density convolved with
N(0, sigma(t_min)^2 I), sigma(t_min) ~ 0.01), next to the exact value E_p[log p] from 2-D
quadrature, and writes a figure: the true density and the four sample clouds.

example:
  jaxdiff oracle --mixture grid --num 4000 --steps 1000 --out grid.png
"""

MIXTURES = {
    "ring": ("8-mode ring", analytic.ring),
    "grid": ("5x5 grid", analytic.grid),
}
# ODE solver names, without the aliases that only make sense for SDEs.
ODE_SOLVER_CHOICES = sorted(set(ODE_SOLVERS) - {"euler_maruyama", "milstein"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mixture",
        choices=sorted(MIXTURES),
        default="ring",
        help="the data distribution: 8 modes on a circle, or a 5x5 grid (default: %(default)s)",
    )
    parser.add_argument(
        "--num",
        type=int_at_least(2),
        default=3000,
        metavar="N",
        help="samples per sampler (default: %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=int_at_least(1),
        default=500,
        metavar="K",
        help="uniform time steps per solve, from t_max to t_min (default: %(default)s)",
    )
    parser.add_argument(
        "--ode-solver",
        choices=ODE_SOLVER_CHOICES,
        default="heun",
        help="solver for the probability-flow ODEs (default: %(default)s)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--out",
        default="jaxdiff-oracle.png",
        metavar="PATH",
        help="where to write the figure; the format follows the extension: "
        f"{', '.join(FIGURE_SUFFIXES)} (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------- output


def _table(results: list[OracleResult], refs: dict[str, ExpectedLogProb]) -> str:
    head = (
        f"{'sampler':<16} {'solver':<14} {'steps':>5} {'score evals':>11} {'mean log p':>10} "
        f"{'s.e.':>7} {'exact':>8} {'diff/s.e.':>9} {'wall s':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        exact = refs[r.sampler.process_name].quadrature
        z = (r.mean - exact) / r.se
        lines.append(
            f"{r.sampler.label:<16} {r.sampler.solver:<14} {r.steps:>5} {r.score_evals:>11} "
            f"{r.mean:>10.4f} {r.se:>7.4f} {exact:>8.4f} {z:>+9.2f} {r.seconds:>7.2f}"
        )
    return "\n".join(lines)


def plot_box(gm) -> tuple[np.ndarray, np.ndarray]:
    """A square window around the mixture: its modes plus a margin of several stds."""
    means = np.asarray(gm.means, np.float64)
    std = math.sqrt(float(np.max(gm.variances)))
    center = 0.5 * (means.min(0) + means.max(0))
    half = 0.5 * float(np.max(means.max(0) - means.min(0))) + max(6.0 * std, 0.5)
    return center - half, center + half


_SOLVER_NAMES = {"euler_maruyama": "Euler-Maruyama", "heun": "Heun", "euler": "Euler"}


def _plot(
    path: Path, gm, mixture_name: str, results: list[OracleResult], exact_data: float
) -> None:
    # A Figure with its own Agg canvas: no pyplot, no global backend state.
    from matplotlib.figure import Figure

    lo, hi = plot_box(gm)
    n = 300
    xs, ys = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).astype(np.float32)
    log_p = np.asarray(mixture_log_prob(gm, grid, 0.0), np.float64)
    levels = log_p.max() - np.array([10.0, 6.0, 3.0, 1.0])

    fig = Figure(figsize=(3.8 * (1 + len(results)), 4.5), layout="constrained")
    axes = fig.subplots(1, 1 + len(results), sharex=True, sharey=True)
    axes[0].imshow(
        np.exp(log_p),
        origin="lower",
        extent=(lo[0], hi[0], lo[1], hi[1]),
        cmap="viridis",
        interpolation="bilinear",
    )
    axes[0].set_title(
        f"true density p(x), {mixture_name}\nE_p[log p] = {exact_data:.3f} (sigma = 0)",
        fontsize=10,
    )
    for ax, r in zip(axes[1:], results, strict=True):
        ax.contour(xs, ys, log_p, levels=levels, colors="0.55", linewidths=0.6, linestyles="solid")
        ok = np.all(np.isfinite(r.samples), axis=-1)
        ax.scatter(r.samples[ok, 0], r.samples[ok, 1], s=2.5, alpha=0.4, color="C3", lw=0)
        solver = _SOLVER_NAMES.get(r.sampler.solver, r.sampler.solver)
        ax.set_title(
            f"{r.sampler.label} ({solver})\nmean log p = {r.mean:.3f} ± {r.se:.3f}", fontsize=10
        )
    for ax in axes:
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
        ax.tick_params(labelsize=8)
    fig.suptitle(
        f"jaxdiff oracle: {len(results[0].samples)} samples per sampler, {results[0].steps} steps, "
        "exact score; mean log p of x(t_min)/s(t_min) under p(. ; sigma(t_min))",
        fontsize=11,
    )
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    out = Path(args.out)
    problem = output_file_problem(out, FIGURE_SUFFIXES)
    if problem:
        return fail(NAME, problem)
    mixture_name, make_mixture = MIXTURES[args.mixture]
    gm = make_mixture()
    methods = analytic.oracle_samplers(args.ode_solver)
    key = jr.key(args.seed)

    start = time.perf_counter()
    progress = tqdm(
        total=1 + len(methods),
        desc="jaxdiff oracle",
        unit="stage",
        file=sys.stderr,
        disable=True if args.quiet else None,  # None: off when stderr is not a terminal
        leave=False,
    )
    with progress:
        progress.set_postfix_str("exact E_p[log p]")
        refs = {}
        for i, m in enumerate(methods):
            if m.process_name not in refs:
                rng = np.random.default_rng([args.seed, i])
                refs[m.process_name] = analytic.expected_log_prob(gm, m.sigma_min, rng)
        progress.update()
        results = []
        for i, m in enumerate(methods):
            progress.set_postfix_str(m.label)
            results.append(
                analytic.run_oracle_sampler(m, gm, jr.fold_in(key, i), args.num, args.steps)
            )
            progress.update()
    sampling_seconds = time.perf_counter() - start

    print(
        f"jaxdiff oracle: {mixture_name} Gaussian mixture in 2-D, {args.num} samples per sampler, "
        f"{args.steps} uniform steps from t_max to t_min, seed {args.seed}"
    )
    print(
        "mean log p: mean log-likelihood of the samples x(t_min)/s(t_min) under the density "
        "each sampler\ntargets exactly, p(. ; sigma(t_min)) = data * N(0, sigma(t_min)^2 I); "
        "exact: E_p[log p] by 2-D quadrature;\ndiff/s.e.: (mean log p - exact) / s.e.; "
        "wall s: the solve, JIT compilation included."
    )
    print()
    print(_table(results, refs))
    print()
    for name, ref in refs.items():
        z = (ref.monte_carlo - ref.quadrature) / ref.monte_carlo_se
        print(
            f"exact E_p[log p], {name} target (sigma = {ref.sigma:.4f}): "
            f"quadrature {ref.quadrature:.4f} (mass {ref.mass:.6f}); "
            f"Monte Carlo, {ref.monte_carlo_n} exact samples: "
            f"{ref.monte_carlo:.4f} ± {ref.monte_carlo_se:.4f} ({z:+.2f} s.e.)"
        )
    for r in results:
        bad = int(np.sum(~r.finite))
        if bad:
            print(
                f"warning: {r.sampler.label}: {bad} of {r.log_prob.size} samples non-finite "
                "(left out of its mean)"
            )

    exact_data, _ = analytic.quadrature_expected_log_prob(gm, 0.0)
    try:
        _plot(out, gm, mixture_name, results, exact_data)
    except OSError as err:
        return fail_write(NAME, out, err)
    total = time.perf_counter() - start
    print(f"wrote {out}; sampling {sampling_seconds:.1f} s, total {total:.1f} s")
    return 0
