"""`jaxdiff.schedules.optimize`: choose a sampling grid by gradient descent through the
compiled sampler (and the softmax parametrization of a grid it descends on), for grids from a
finite `sigma_max` and for grids that start at `inf` (pure noise: flow models)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from .._checks import (
    check_choice,
    check_count,
    check_grid,
    check_key,
    check_model,
    check_positive,
    check_range,
)
from .._deprecation import deprecated
from ..samplers._base import AbstractSampler
from ..samplers._core import resolve_sampler, sample
from ..samplers._heun import Heun
from ._closed_form import karras
from ._grid import carry_levels


class OptimizedSchedule(NamedTuple):
    """What `optimize` returns: the tuned grid, and its error before and after tuning."""

    sigmas: jax.Array  # the tuned grid, n + 1 values ending at 0
    initial_loss: float  # RMS trajectory error of the initial grid (held-out noise)
    final_loss: float  # RMS trajectory error of the tuned grid (held-out noise)
    losses: jax.Array  # the training loss at every iteration


def grid_from_params(theta, sigma_min, sigma_max):
    """n + 1 sigmas from n - 1 unconstrained parameters: the log-sigma decrements between
    sigma_max and sigma_min are a softmax of `theta`, then a final 0."""
    fractions = jnp.cumsum(jax.nn.softmax(theta))
    log_hi, log_lo = jnp.log(sigma_max), jnp.log(sigma_min)
    inner = jnp.exp(log_hi + (log_lo - log_hi) * fractions[:-1])
    return jnp.concatenate(
        [jnp.array([sigma_max]), inner, jnp.array([sigma_min]), jnp.zeros(1)]
    ).astype(theta.dtype)


def params_from_grid(sigmas):
    """The parameters whose `grid_from_params` is `sigmas` (n + 1 values, ending at 0)."""
    log_s = jnp.log(sigmas[:-1])
    steps = log_s[:-1] - log_s[1:]
    return jnp.log(steps / jnp.sum(steps))


def inf_grid_from_params(theta, sigma_min):
    """The finite part `[sigma_1, ..., sigma_min, 0]` (n values) of an n-step grid that starts
    at `inf`, from n - 1 unconstrained parameters: `theta[0]` is the log of the log-sigma span
    `log(sigma_1 / sigma_min)` (so the first finite level is free), `theta[1:]` the softmax
    logits of the log-sigma decrements between `sigma_1` and `sigma_min`."""
    span = jnp.exp(theta[0])
    fractions = jnp.cumsum(jax.nn.softmax(theta[1:]))
    log_lo = jnp.log(sigma_min)
    levels = jnp.exp(log_lo + span * (1 - fractions[:-1]))
    top = jnp.exp(log_lo + span)
    return jnp.concatenate([top[None], levels, jnp.array([sigma_min]), jnp.zeros(1)]).astype(
        theta.dtype
    )


def inf_params_from_grid(sigmas):
    """The parameters whose `inf_grid_from_params` is the finite part of `sigmas` (n + 1
    values: `inf`, n - 1 positive levels, 0; at least 3 steps)."""
    log_s = jnp.log(sigmas[1:-1])
    steps = log_s[:-1] - log_s[1:]
    span = jnp.sum(steps)
    return jnp.concatenate([jnp.log(span)[None], jnp.log(steps / span)])


def _rms(a, b):
    return jnp.sqrt(jnp.mean(jnp.sum((a - b).reshape(a.shape[0], -1) ** 2, axis=-1)))


def _is_many(denoisers) -> bool:
    """A sequence of denoisers, not one `(fn, params)` pair."""
    pair = isinstance(denoisers, tuple) and len(denoisers) == 2 and callable(denoisers[0])
    return isinstance(denoisers, Sequence) and not (pair and not callable(denoisers[1]))


# The reference of a grid that starts at inf: the first-order step from inf to REFERENCE_TOP
# (its error is O(c / REFERENCE_TOP^2) for data of scale c), then an adaptive Tsit5 solve of
# the probability-flow ODE in log sigma down to sigma_min * REFERENCE_END, then the denoiser.
REFERENCE_TOP = 1e5
REFERENCE_END = 1e-3


@eqx.filter_jit
def _reference_from_noise(denoiser, noise, sigma_min, tol):
    """A tight solve of the probability-flow ODE from pure noise (`sigma = inf`) to 0."""
    dtype = noise.dtype
    top = jnp.asarray(REFERENCE_TOP, dtype)
    y0 = denoiser(noise, jnp.asarray(jnp.inf, dtype)) + top * noise

    def vf(u, y, args):  # dy / dlog(sigma) = y - D(y; sigma)
        del args
        return y - denoiser(y, jnp.exp(u).astype(dtype))

    end = jnp.asarray(sigma_min * REFERENCE_END, dtype)
    sol = dfx.diffeqsolve(
        dfx.ODETerm(vf),
        dfx.Tsit5(),
        t0=jnp.log(top),
        t1=jnp.log(end),
        dt0=jnp.asarray(-0.05, dtype),
        y0=y0,
        stepsize_controller=dfx.PIDController(rtol=tol, atol=tol),
        saveat=dfx.SaveAt(t1=True),
        max_steps=16384,
    )
    return denoiser(sol.ys[-1], end)


def _is_inf(value) -> bool:
    try:
        return bool(np.isposinf(np.asarray(value, np.float64)))
    except (TypeError, ValueError):
        return False


def _initial_grid(init, n, sigma_min, sigma_max, sigma_first, from_noise):
    """The starting grid: `init(n, sigma_min, sigma_max)` (after an inf first step:
    `init(n - 1, sigma_min, sigma_first)`), or `init` itself when it is a grid."""
    if callable(init):
        if not from_noise:
            return jnp.asarray(init(n, sigma_min, sigma_max))
        finite = jnp.asarray(init(n - 1, sigma_min, sigma_first))
        return jnp.concatenate([jnp.full((1,), jnp.inf, finite.dtype), finite])
    grid = check_grid(init, name="init", unit="sigma", infinite_start=True)
    if grid.shape[0] != n + 1:
        raise ValueError(f"init must be a grid of n + 1 = {n + 1} values, got {grid.shape[0]}")
    starts_inf = bool(np.isinf(np.asarray(grid)[0]))
    if starts_inf != from_noise:
        raise ValueError(
            "init must start at inf exactly when sigma_max is inf"
            f" (sigma_max={sigma_max}, init starts at {float(grid[0])})"
        )
    if from_noise and not float(grid[1]) > float(sigma_min):
        raise ValueError(
            f"init's first finite level must be > sigma_min = {sigma_min}, got {float(grid[1])}"
        )
    if not jnp.issubdtype(grid.dtype, jnp.floating):
        grid = grid.astype(float)
    return grid


def optimize(
    denoisers: Callable | Sequence[Callable],
    shape: tuple[int, ...] | Sequence[tuple[int, ...]],
    n: int,
    *,
    solver: AbstractSampler | str,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    init: Callable | jax.Array | None = None,
    sigma_first: float | None = None,
    iterations: int = 200,
    learning_rate: float = 0.05,
    reference_steps: int = 512,
    key: jax.Array | None = None,
    objective: str = "rms",
    ranges: Sequence[tuple[float, float]] | None = None,
) -> OptimizedSchedule:
    r"""Tune an `n`-step grid for a deterministic `solver` by gradient descent (Adam, optax)
    through the compiled sampler, against high-accuracy reference solves from the same noise.

    The loss is the RMS distance between `jaxdiff.sample(denoiser, x, grid, solver=solver)` and
    a reference solve of the probability-flow ODE from the same initial noise, averaged over
    `denoisers` (tune on many models so the grid transfers). The grid is parametrized by a
    softmax over its log-sigma decrements, so it stays decreasing between `sigma_max` and
    `sigma_min` (then 0). The returned losses are measured on held-out noise. In the spirit of
    Align Your Steps (Sabour et al. 2024) and GITS (Chen et al. 2024), with the exact
    trajectory error as the objective.

    **Two kinds of grid:**

    - finite `sigma_max` (the default, 80): the grid runs from `sigma_max` to `sigma_min`, both
      fixed, then 0; the initial noise is `x = sigma_max * N(0, I)` and the reference a
      `reference_steps`-step Heun solve on a Karras grid.
    - `sigma_max=inf` (pure noise: flow models such as `jaxdiff.RectifiedFlow`, whose grids
      start at t = 1, and zero-terminal-SNR models): the grid is `[inf, sigma_1, ...,
      sigma_min, 0]` and `x = N(0, I)` is the unit-variance noise. The first step from `inf`
      is the fixed first-order step of `jaxdiff.sample` (`x_1 = D(x, inf) + sigma_1 x`, one
      evaluation) and everything after it is tuned, the first finite level `sigma_1`
      included (free above `sigma_min`); `n >= 3`. The reference is the first-order step
      from `inf` to `sigma = 1e5` (its error is of order `(c / 1e5)^2` for data of scale `c`)
      followed by an adaptive Tsit5 solve (relative and absolute tolerance 1e-10 in float64,
      1e-6 in float32) of the probability-flow ODE in `log sigma` down to
      `sigma_min / 1000`, then the denoiser: the endpoint of the ODE at sigma = 0, to about
      1e-8 on unit-scale mixtures. The grid's NFE is `1 + solver.nfe(n - 1)`
      (`jaxdiff.samplers.num_evaluations`).

    **Arguments:**

    - `denoisers`: a denoiser `D(x, sigma)` or a list of them (e.g. several mixtures); with
      `sigma_max=inf` each must accept `sigma = inf` (e.g. `jaxdiff.parametrizations
      .from_velocity` of a flow's velocity, or a `GaussianMixture.denoiser`).
    - `shape`: the shape of one batch of initial noise, e.g. `(512, 2)`, or one shape per
      denoiser (to tune on models of different dimensions at once).
    - `n`: the number of steps of the grid (n + 1 sigmas), the step from `inf` included.
    - `solver`: the deterministic sampler to tune for (an instance or its name).
    - `sigma_min`, `sigma_max`: the last positive level, and the first level (a finite
      number, or `inf`: see above).
    - `init`: the starting grid: a schedule `f(n, sigma_min, sigma_max)` (default
      `jaxdiff.schedules.karras`; with `sigma_max=inf` it is called as
      `f(n - 1, sigma_min, sigma_first)` after the step from `inf`), or a grid of `n + 1`
      values (e.g. `jaxdiff.schedules.flow(n, shift=3.0)`, starting at `inf` exactly when
      `sigma_max` is `inf`), of which only the relative log-sigma spacing is kept: its ends
      become `sigma_max` (after `inf`: its first finite level is kept) and `sigma_min`.
    - `sigma_first`: with `sigma_max=inf` only, the initial first finite level when `init`
      is a schedule (default 20; then tuned).
    - `reference_steps`: steps of the Heun reference of a finite-`sigma_max` grid (a grid
      from `inf` uses the adaptive reference above).
    - `objective`: how the per-denoiser RMS errors are combined: `"rms"` (their mean, the
      default) or `"log_rms"` (the mean of their logs, i.e. the geometric mean: every model
      counts by its relative improvement, so that problems with large errors do not dominate;
      better for a grid meant to transfer). The reported `initial_loss`/`final_loss` and
      `losses` are in the same units (for `"log_rms"`, the geometric mean itself).
    - `ranges`: tune one grid for several noise ranges at once (finite `sigma_max` only): a
      list of `(sigma_min, sigma_max)` pairs. The tuned grid lives on `[sigma_min,
      sigma_max]`; on each range it is carried by `jaxdiff.schedules.carry` (its levels kept
      where they are in absolute sigma, as `tuned` is carried), every range gets its own
      noise `sigma_max_r N(0, I)` and Heun reference, and the loss combines every denoiser
      on every range. The shipped `tuned` grids were made so (`benchmarks/tune_schedule.py`).
    - `key`: the PRNG key of the training and the held-out noise (split in two). Required in
      the next release: `key=None` (the default) is deprecated, warns (`DeprecationWarning`)
      and uses `jax.random.key(0)` for this release.

    **Returns:** an `OptimizedSchedule` whose `sigmas` are the tuned grid (`n + 1` values,
    starting at `inf` when `sigma_max` is).
    """
    solver = resolve_sampler(solver)
    if solver.stochastic:
        raise ValueError("solver must be deterministic: the loss compares trajectories")
    from_noise = _is_inf(sigma_max)
    if from_noise:
        n = check_count("n", n, minimum=3)
        check_positive("sigma_min", sigma_min)
        sigma_first = 20.0 if sigma_first is None else sigma_first
        check_range("sigma_min", sigma_min, "sigma_first", sigma_first)
    else:
        n = check_count("n", n, minimum=2)
        check_range("sigma_min", sigma_min, "sigma_max", sigma_max)
        if sigma_first is not None:
            raise ValueError("sigma_first applies only to a grid from sigma_max=inf")
    if ranges is not None:
        if from_noise:
            raise ValueError("ranges applies only to grids from a finite sigma_max")
        ranges = [tuple(r) for r in ranges]
        if not ranges or any(len(r) != 2 for r in ranges):
            raise ValueError("ranges must be a non-empty list of (sigma_min, sigma_max) pairs")
        for lo, hi in ranges:
            check_range("ranges' sigma_min", lo, "ranges' sigma_max", hi)
    check_choice("objective", objective, ("rms", "log_rms"))
    iterations = check_count("iterations", iterations)
    reference_steps = check_count("reference_steps", reference_steps)
    check_positive("learning_rate", learning_rate)
    if key is None:
        deprecated(
            "jaxdiff.schedules.optimize without a key (key=None, which used jax.random.key(0))",
            "an explicit key=jax.random.key(seed)",
        )
        key = jr.key(0)
    check_key(key)
    dens = [
        check_model("denoiser", d, "denoiser(x, sigma)")
        for d in (denoisers if _is_many(denoisers) else [denoisers])
    ]
    if not dens:
        raise ValueError("denoisers must not be empty")
    if len(shape) > 0 and all(isinstance(s, Sequence) for s in shape):
        shapes = [tuple(s) for s in shape]
        if len(shapes) != len(dens):
            raise ValueError(
                f"shape must be one shape or one per denoiser, got {len(shapes)} shapes for "
                f"{len(dens)} denoisers"
            )
    else:
        shapes = [tuple(shape)] * len(dens)
    k_train, k_test = jr.split(key)
    if init is None:
        init = karras
    if not callable(init) and isinstance(init, str | bytes):
        raise TypeError("init must be a schedule f(n, sigma_min, sigma_max) or a grid")
    start = _initial_grid(init, n, sigma_min, sigma_max, sigma_first, from_noise)
    dtype = start.dtype

    if from_noise:
        tol = 1e-10 if dtype == jnp.float64 else 1e-6

        def problem(k):
            xs = [jr.normal(jr.fold_in(k, j), s, dtype) for j, s in enumerate(shapes)]
            pairs = list(zip(dens, xs, strict=True))
            refs = [_reference_from_noise(d, x, sigma_min, tol) for d, x in pairs]
            # the step from inf is fixed: D(x, inf) is computed once, outside the descent
            firsts = [d(x, jnp.asarray(jnp.inf, dtype)) for d, x in pairs]
            return xs, refs, firsts

        def grid_of(theta):
            return inf_grid_from_params(theta, sigma_min)

        def solve_all(theta, xs, firsts):
            grid = grid_of(theta)
            return [
                sample(d, f + grid[0] * x, grid, solver=solver)
                for d, x, f in zip(dens, xs, firsts, strict=True)
            ]

        theta0 = jnp.concatenate(
            [
                jnp.log(jnp.log(start[1]) - jnp.log(sigma_min))[None],
                params_from_grid(start[1:]),
            ]
        ).astype(dtype)
    else:
        spans = [(sigma_min, sigma_max)] if ranges is None else ranges

        def problem(k):
            xs, refs = [], []
            for r, (lo, hi) in enumerate(spans):
                ref_grid = karras(reference_steps, lo, hi).astype(dtype)
                for j, (d, s) in enumerate(zip(dens, shapes, strict=True)):
                    x = hi * jr.normal(jr.fold_in(k, j + r * len(dens)), s, dtype)
                    xs.append(x)
                    refs.append(sample(d, x, ref_grid, solver=Heun()))
            return xs, refs, [None] * len(xs)

        def grid_of(theta):
            return grid_from_params(theta, sigma_min, sigma_max)

        def solve_all(theta, xs):
            grid = grid_of(theta)
            if ranges is None:
                grids = [grid] * len(xs)
            else:
                log_levels = jnp.log(grid[:-1])
                carried = [
                    carry_levels(n, jnp.asarray(lo, dtype), jnp.asarray(hi, dtype), log_levels)
                    for lo, hi in spans
                ]
                grids = [g for g in carried for _ in dens]
            ds = [d for _ in spans for d in dens]
            return [sample(d, x, g, solver=solver) for d, x, g in zip(ds, xs, grids, strict=True)]

        theta0 = params_from_grid(start)

    train, test = problem(k_train), problem(k_test)

    def loss(theta, data):
        xs, refs, firsts = data
        outs = solve_all(theta, xs, firsts) if from_noise else solve_all(theta, xs)
        errs = jnp.stack([_rms(o, r) for o, r in zip(outs, refs, strict=True)])
        if objective == "log_rms":
            return jnp.mean(jnp.log(errs))
        return jnp.mean(errs)

    opt = optax.adam(learning_rate)

    @eqx.filter_jit
    def run(theta, data):
        def body(carry, _):
            theta, state = carry
            value, grad = jax.value_and_grad(loss)(theta, data)
            updates, new_state = opt.update(grad, state)
            # a step whose loss or gradient is not finite (a grid on which the sampler
            # diverged) is skipped rather than poisoning the parameters
            ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
            theta = jnp.where(ok, optax.apply_updates(theta, updates), theta)
            state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new_state, state)
            return (theta, state), (value, ok)

        (theta, _), (values, oks) = jax.lax.scan(body, (theta, opt.init(theta)), None, iterations)
        return theta, values, oks

    theta, losses, oks = run(theta0, train)
    skipped = iterations - int(jnp.sum(oks))
    if skipped:
        warnings.warn(
            f"jaxdiff.schedules.optimize: {skipped} of {iterations} steps skipped because the "
            f"loss or its gradient was not finite (solver {type(solver).__name__})",
            RuntimeWarning,
            stacklevel=2,
        )
    sigmas = grid_of(theta)
    if from_noise:
        sigmas = jnp.concatenate([jnp.full((1,), jnp.inf, sigmas.dtype), sigmas])
    report = jnp.exp if objective == "log_rms" else (lambda v: v)
    return OptimizedSchedule(
        sigmas=sigmas,
        initial_loss=float(report(loss(theta0, test))),
        final_loss=float(report(loss(theta, test))),
        losses=report(losses),
    )
