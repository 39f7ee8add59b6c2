"""``jaxdiff oracle``: four samplers on an exact Gaussian-mixture oracle, scored exactly.

The data distribution is a 2-D Gaussian mixture (`jaxdiff.analytic`), whose score is known in
closed form at every time of every process. Sampling it with that exact score leaves only the
sampler's own errors (time discretisation, the prior at t_max, the stop at t_min), and the
mixture's exact log-density measures them: the mean log-likelihood of the samples should
match E_p[log p], computed by quadrature.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import jaxdiff as jd
from jaxdiff.sde import ODE_SOLVERS

from ._args import int_at_least, nonnegative_int

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
    "ring": ("8-mode ring", lambda: jd.analytic.ring()),
    "grid": ("5x5 grid", lambda: jd.analytic.grid()),
}
# ODE solver names, without the aliases that only make sense for SDEs.
ODE_SOLVER_CHOICES = sorted(set(ODE_SOLVERS) - {"euler_maruyama", "milstein"})
SDE_SOLVER = "euler_maruyama"
MC_SAMPLES = 200_000  # exact samples for the Monte Carlo cross-check of the quadrature


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
    parser.add_argument(
        "--seed", type=nonnegative_int, default=0, help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--out",
        default="jaxdiff-oracle.png",
        metavar="PATH",
        help="where to write the figure; the format follows the extension (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------- computation


@dataclass(frozen=True)
class Sampler:
    """One of the oracle run.s samplers: a process and the reverse SDE or probability-flow ODE."""

    process_name: str
    process: jd.AbstractProcess
    kind: str  # "sde" (reverse-time SDE) or "ode" (probability-flow ODE)
    solver: str

    @property
    def label(self) -> str:
        what = "reverse SDE" if self.kind == "sde" else "PF-ODE"
        return f"{self.process_name} {what}"

    @property
    def sigma_min(self) -> float:
        return float(self.process.sigma(self.process.t_min))


@dataclass(frozen=True)
class Reference:
    """The exact E_p[log p] of p = p(. ; sigma): quadrature, and a Monte Carlo cross-check."""

    sigma: float
    quadrature: float
    mass: float  # the quadrature of p itself: 1 up to quadrature error
    monte_carlo: float
    monte_carlo_se: float
    monte_carlo_n: int


@dataclass(frozen=True)
class Result:
    sampler: Sampler
    samples: np.ndarray  # x(t_min) / s(t_min), in data units
    log_prob: np.ndarray  # log p(samples; sigma(t_min)) under the exact mixture
    seconds: float  # wall time of the solve, compilation included
    steps: int
    score_evals: int

    @property
    def finite(self) -> np.ndarray:
        return np.isfinite(self.log_prob)

    @property
    def mean(self) -> float:
        return float(np.mean(self.log_prob[self.finite]))

    @property
    def se(self) -> float:
        lp = self.log_prob[self.finite]
        return float(np.std(lp, ddof=1) / math.sqrt(lp.size)) if lp.size > 1 else math.nan


def samplers(ode_solver: str) -> list[Sampler]:
    """The four samplers, in table order. VP stops at t_min = 1e-3, VE at t = 0 (sigma 0.01)."""
    vp, ve = jd.VP(), jd.VE()
    return [
        Sampler("VP", vp, "sde", SDE_SOLVER),
        Sampler("VP", vp, "ode", ode_solver),
        Sampler("VE", ve, "sde", SDE_SOLVER),
        Sampler("VE", ve, "ode", ode_solver),
    ]


def _log_prob(gm, x, sigma):
    """log p(x; sigma), compiled once per shape (sigma is traced, not a static float)."""
    x = jnp.asarray(x, gm.means.dtype)
    return _log_prob_jit(gm, x, jnp.asarray(sigma, x.dtype))


@eqx.filter_jit
def _log_prob_jit(gm, x, sigma):
    return gm.log_prob(x, sigma)


@eqx.filter_jit
def _log_prob_rows(gm, points, sigma):
    # One row of the quadrature grid at a time, to bound the memory of the (points, K, d)
    # intermediates.
    return jax.lax.map(lambda row: gm.log_prob(row, sigma), points)


def exact_samples(gm, rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """`n` exact samples of p(. ; sigma), drawn with NumPy from the mixture's parameters (an
    independent check, and no compilation)."""
    weights = np.asarray(gm.weights, np.float64)
    k = rng.choice(weights.size, size=n, p=weights / weights.sum())
    std = np.sqrt(np.asarray(gm.variances, np.float64)[k] + sigma**2)
    return np.asarray(gm.means, np.float64)[k] + std * rng.standard_normal((n, gm.dim))


def plot_box(gm) -> tuple[np.ndarray, np.ndarray]:
    """A square window around the mixture: its modes plus a margin of several stds."""
    means = np.asarray(gm.means, np.float64)
    std = math.sqrt(float(np.max(gm.variances)))
    center = 0.5 * (means.min(0) + means.max(0))
    half = 0.5 * float(np.max(means.max(0) - means.min(0))) + max(6.0 * std, 0.5)
    return center - half, center + half


def quadrature_expected_log_prob(gm, sigma: float) -> tuple[float, float]:
    """E_p[log p] for p = p(. ; sigma) by quadrature on a fine 2-D grid; also the quadrature
    of p itself (1 up to quadrature error).

    The integrand p log p is smooth and decays like a Gaussian, so a Riemann sum on a uniform
    grid of ten points per (smallest) standard deviation, over the modes +- 10 (largest)
    stds, is exact far below float32 rounding.
    """
    if gm.dim != 2:
        raise ValueError(f"the quadrature is 2-D; the mixture has dimension {gm.dim}")
    var = np.asarray(gm.variances, np.float64) + sigma**2
    std_min, std_max = math.sqrt(var.min()), math.sqrt(var.max())
    means = np.asarray(gm.means, np.float64)
    lo, hi = means.min(0) - 10.0 * std_max, means.max(0) + 10.0 * std_max
    h = std_min / 10.0
    n = np.ceil((hi - lo) / h).astype(int) + 1
    xs, ys = (lo[i] + h * np.arange(n[i]) for i in range(2))
    points = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).astype(np.float32)
    sigma_ = jnp.asarray(sigma, gm.means.dtype)
    lp = np.asarray(_log_prob_rows(gm, jnp.asarray(points, gm.means.dtype), sigma_), np.float64)
    p = np.exp(lp)
    return float(np.sum(p * lp) * h * h), float(np.sum(p) * h * h)


def expected_log_prob(gm, sigma: float, rng: np.random.Generator) -> Reference:
    """E_p[log p] for p = p(. ; sigma) by quadrature, cross-checked by Monte Carlo with
    `MC_SAMPLES` exact samples."""
    quadrature, mass = quadrature_expected_log_prob(gm, sigma)
    mc = np.asarray(_log_prob(gm, exact_samples(gm, rng, MC_SAMPLES, sigma), sigma), np.float64)
    return Reference(
        sigma=sigma,
        quadrature=quadrature,
        mass=mass,
        monte_carlo=float(mc.mean()),
        monte_carlo_se=float(mc.std(ddof=1) / math.sqrt(mc.size)),
        monte_carlo_n=MC_SAMPLES,
    )


def _stages(solver: str) -> int:
    """Score evaluations per step of a fixed-step solve with `solver`."""
    if solver == SDE_SOLVER:
        return 1
    tableau = getattr(ODE_SOLVERS[solver](), "tableau", None)
    if tableau is None:
        return 1
    return len(tableau.b_sol) - int(bool(tableau.fsal))


def run_sampler(sampler: Sampler, gm, key: jax.Array, num: int, steps: int) -> Result:
    """Samples `num` points from the prior at t_max down to t_min in `steps` uniform steps,
    with the mixture's exact process-time score; returns them in data units."""
    process = sampler.process
    score = gm.process_score(process)
    sde = process.reverse(score) if sampler.kind == "sde" else process.probability_flow(score)
    t_max, t_min = float(process.t_max), float(process.t_min)
    k_prior, k_noise = jr.split(key)
    start = time.perf_counter()
    x_max = process.prior_sample(k_prior, (num, gm.dim))
    xs = jd.solve_sde(
        sde,
        x_max,
        np.array([t_max, t_min]),
        key=None if sde.is_ode else k_noise,
        dt=(t_max - t_min) / steps,
        solver=sampler.solver,
    )
    x = xs[-1] / process.scale(t_min)
    samples = np.asarray(jax.block_until_ready(x), np.float64)
    seconds = time.perf_counter() - start
    log_prob = np.asarray(_log_prob(gm, x, sampler.sigma_min), np.float64)
    evals = steps * _stages(sampler.solver) if sde.is_ode else steps
    return Result(sampler, samples, log_prob, seconds, steps, evals)


# ---------------------------------------------------------------------------- output


def _table(results: list[Result], refs: dict[str, Reference]) -> str:
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


_SOLVER_NAMES = {"euler_maruyama": "Euler-Maruyama", "heun": "Heun", "euler": "Euler"}


def _plot(path: Path, gm, mixture_name: str, results: list[Result], exact_data: float) -> None:
    # A Figure with its own Agg canvas: no pyplot, no global backend state.
    from matplotlib.figure import Figure

    lo, hi = plot_box(gm)
    n = 300
    xs, ys = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).astype(np.float32)
    log_p = np.asarray(_log_prob(gm, grid, 0.0), np.float64)
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
    fig.savefig(path, dpi=110, bbox_inches="tight")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    out = Path(args.out)
    if not out.parent.is_dir():
        args._parser.error(f"argument --out: directory {str(out.parent)!r} does not exist")
    mixture_name, make_mixture = MIXTURES[args.mixture]
    gm = make_mixture()
    methods = samplers(args.ode_solver)
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
                refs[m.process_name] = expected_log_prob(gm, m.sigma_min, rng)
        progress.update()
        results = []
        for i, m in enumerate(methods):
            progress.set_postfix_str(m.label)
            results.append(run_sampler(m, gm, jr.fold_in(key, i), args.num, args.steps))
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

    exact_data, _ = quadrature_expected_log_prob(gm, 0.0)
    try:
        _plot(out, gm, mixture_name, results, exact_data)
    except OSError as err:
        print(f"jaxdiff oracle: error: cannot write {str(out)!r}: {err}", file=sys.stderr)
        return 1
    total = time.perf_counter() - start
    print(f"wrote {out}; sampling {sampling_seconds:.1f} s, total {total:.1f} s")
    return 0
