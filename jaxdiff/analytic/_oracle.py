"""Samplers scored exactly on a Gaussian-mixture oracle.

A Gaussian mixture's score is known in closed form at every time of every process. Sampling it
with that exact score leaves only the sampler's own errors (time discretisation, the prior at
t_max, the stop at t_min), and the mixture's exact log-density measures them: the mean
log-likelihood of the samples should match E_p[log p], computed here by 2-D quadrature (and
cross-checked by Monte Carlo). ``jaxdiff oracle`` prints and plots these numbers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import check_count, check_key, check_positive
from ..processes import VE, VP, AbstractProcess
from ..sde import ODE_SOLVERS, SDE_SOLVERS, solve_sde
from ..sde._solvers import evaluations
from ._gaussian_mixture import GaussianMixture

__all__ = [
    "MC_SAMPLES",
    "SDE_SOLVER",
    "ExpectedLogProb",
    "OracleResult",
    "OracleSampler",
    "exact_samples",
    "expected_log_prob",
    "mixture_log_prob",
    "oracle_samplers",
    "quadrature_expected_log_prob",
    "run_oracle_sampler",
]

#: The solver of the reverse-time SDEs.
SDE_SOLVER = "euler_maruyama"
#: Exact samples for the Monte Carlo cross-check of the quadrature.
MC_SAMPLES = 200_000


@dataclass(frozen=True)
class OracleSampler:
    """A sampler of the oracle: a process and its reverse SDE or probability-flow ODE."""

    process_name: str
    process: AbstractProcess
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
class ExpectedLogProb:
    """The exact E_p[log p] of p = p(. ; sigma): quadrature, and a Monte Carlo cross-check."""

    sigma: float
    quadrature: float
    mass: float  # the quadrature of p itself: 1 up to quadrature error
    monte_carlo: float
    monte_carlo_se: float
    monte_carlo_n: int


@dataclass(frozen=True)
class OracleResult:
    """The samples of one `OracleSampler` and their exact log-densities."""

    sampler: OracleSampler
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


def oracle_samplers(ode_solver: str) -> list[OracleSampler]:
    """The four samplers, in table order: the reverse SDE (`SDE_SOLVER`) and the
    probability-flow ODE (`ode_solver`) of VP and of VE. VP stops at t_min = 1e-3, VE at t = 0
    (sigma 0.01)."""
    if ode_solver not in ODE_SOLVERS:
        raise ValueError(
            f"unknown ODE solver {ode_solver!r}; expected one of: {', '.join(ODE_SOLVERS)}"
        )
    vp, ve = VP(), VE()
    return [
        OracleSampler("VP", vp, "sde", SDE_SOLVER),
        OracleSampler("VP", vp, "ode", ode_solver),
        OracleSampler("VE", ve, "sde", SDE_SOLVER),
        OracleSampler("VE", ve, "ode", ode_solver),
    ]


def mixture_log_prob(gm: GaussianMixture, x, sigma) -> jax.Array:
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


def exact_samples(gm: GaussianMixture, rng: np.random.Generator, n: int, sigma: float):
    """`n` exact samples of p(. ; sigma), drawn with NumPy from the mixture's parameters (an
    independent check, and no compilation)."""
    n = check_count("n", n)
    check_positive("sigma", sigma, allow_zero=True)
    weights = np.asarray(gm.weights, np.float64)
    k = rng.choice(weights.size, size=n, p=weights / weights.sum())
    std = np.sqrt(np.asarray(gm.variances, np.float64)[k] + sigma**2)
    return np.asarray(gm.means, np.float64)[k] + std * rng.standard_normal((n, gm.dim))


def quadrature_expected_log_prob(gm: GaussianMixture, sigma: float) -> tuple[float, float]:
    """E_p[log p] for p = p(. ; sigma) by quadrature on a fine 2-D grid; also the quadrature
    of p itself (1 up to quadrature error).

    The integrand p log p is smooth and decays like a Gaussian, so a Riemann sum on a uniform
    grid of ten points per (smallest) standard deviation, over the modes +- 10 (largest)
    stds, is exact far below float32 rounding.
    """
    if gm.dim != 2:
        raise ValueError(f"the quadrature is 2-D; the mixture has dimension {gm.dim}")
    check_positive("sigma", sigma, allow_zero=True)
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


def expected_log_prob(
    gm: GaussianMixture, sigma: float, rng: np.random.Generator
) -> ExpectedLogProb:
    """E_p[log p] for p = p(. ; sigma) of a 2-D mixture by quadrature, cross-checked by Monte
    Carlo with `MC_SAMPLES` exact samples drawn with `rng`."""
    quadrature, mass = quadrature_expected_log_prob(gm, sigma)
    mc = np.asarray(
        mixture_log_prob(gm, exact_samples(gm, rng, MC_SAMPLES, sigma), sigma), np.float64
    )
    return ExpectedLogProb(
        sigma=sigma,
        quadrature=quadrature,
        mass=mass,
        monte_carlo=float(mc.mean()),
        monte_carlo_se=float(mc.std(ddof=1) / math.sqrt(mc.size)),
        monte_carlo_n=MC_SAMPLES,
    )


def run_oracle_sampler(
    sampler: OracleSampler, gm: GaussianMixture, key: jax.Array, num: int, steps: int
) -> OracleResult:
    """Samples `num` points from the prior at t_max down to t_min in `steps` uniform steps,
    with the mixture's exact process-time score; returns them in data units, with their
    exact log-densities under p(. ; sigma(t_min))."""
    check_key(key)
    num = check_count("num", num)
    steps = check_count("steps", steps)
    process = sampler.process
    score = gm.process_score(process)
    sde = process.reverse(score) if sampler.kind == "sde" else process.probability_flow(score)
    t_max, t_min = float(process.t_max), float(process.t_min)
    k_prior, k_noise = jr.split(key)
    start = time.perf_counter()
    x_max = process.prior_sample(k_prior, (num, gm.dim))
    xs = solve_sde(
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
    log_prob = np.asarray(mixture_log_prob(gm, x, sampler.sigma_min), np.float64)
    registry = ODE_SOLVERS if sde.is_ode else SDE_SOLVERS
    per_step, initial = evaluations(registry[sampler.solver]())
    evals = steps * per_step + initial
    return OracleResult(sampler, samples, log_prob, seconds, steps, evals)
