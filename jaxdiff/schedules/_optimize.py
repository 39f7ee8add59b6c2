"""`jaxdiff.schedules.optimize`: choose a sampling grid by gradient descent through the
compiled sampler (and the softmax parametrization of a grid it descends on)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

from .._checks import (
    check_callable,
    check_choice,
    check_count,
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


class OptimizedSchedule(NamedTuple):
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


def _rms(a, b):
    return jnp.sqrt(jnp.mean(jnp.sum((a - b).reshape(a.shape[0], -1) ** 2, axis=-1)))


def _is_many(denoisers) -> bool:
    """A sequence of denoisers, not one `(fn, params)` pair."""
    pair = isinstance(denoisers, tuple) and len(denoisers) == 2 and callable(denoisers[0])
    return isinstance(denoisers, Sequence) and not (pair and not callable(denoisers[1]))


def optimize(
    denoisers: Callable | Sequence[Callable],
    shape: tuple[int, ...] | Sequence[tuple[int, ...]],
    n: int,
    *,
    solver: AbstractSampler | str,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    init: Callable | None = None,
    iterations: int = 200,
    learning_rate: float = 0.05,
    reference_steps: int = 512,
    key: jax.Array | None = None,
    objective: str = "rms",
) -> OptimizedSchedule:
    r"""Tune an `n`-step grid for a deterministic `solver` by gradient descent (Adam, optax)
    through the compiled sampler, against high-NFE reference solves from the same noise.

    The loss is the RMS distance between `jaxdiff.sample(denoiser, x, grid, solver=solver)` and
    a `reference_steps`-step Heun solve of the probability-flow ODE from the same initial noise
    `x = sigma_max * N(0, I)`, averaged over `denoisers` (tune on many models so the grid
    transfers). The grid is parametrized by a softmax over its log-sigma decrements, so it stays
    decreasing between `sigma_max` and `sigma_min` (then 0). The returned losses are measured on
    held-out noise. In the spirit of Align Your Steps (Sabour et al. 2024) and GITS (Chen et al.
    2024), with the exact trajectory error as the objective.

    **Arguments:**

    - `denoisers`: a denoiser `D(x, sigma)` or a list of them (e.g. several mixtures).
    - `shape`: the shape of one batch of initial noise, e.g. `(512, 2)`, or one shape per
      denoiser (to tune on models of different dimensions at once).
    - `n`: the number of steps of the grid (n + 1 sigmas).
    - `solver`: the deterministic sampler to tune for (an instance or its name).
    - `init`: the starting schedule `f(n, sigma_min, sigma_max)` (default
      `jaxdiff.schedules.karras`).
    - `objective`: how the per-denoiser RMS errors are combined: `"rms"` (their mean, the
      default) or `"log_rms"` (the mean of their logs, i.e. the geometric mean: every model
      counts by its relative improvement, so that problems with large errors do not dominate;
      better for a grid meant to transfer). The reported `initial_loss`/`final_loss` and
      `losses` are in the same units (for `"log_rms"`, the geometric mean itself).
    - `key`: the PRNG key of the training and the held-out noise (split in two). Required in
      the next release: `key=None` (the default) is deprecated, warns (`DeprecationWarning`)
      and uses `jax.random.key(0)` for this release.
    """
    solver = resolve_sampler(solver)
    if solver.stochastic:
        raise ValueError("solver must be deterministic: the loss compares trajectories")
    n = check_count("n", n, minimum=2)
    check_range("sigma_min", sigma_min, "sigma_max", sigma_max)
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
    check_callable("init", init, "init(n, sigma_min, sigma_max)")
    start = jnp.asarray(init(n, sigma_min, sigma_max))
    dtype = start.dtype
    ref_grid = karras(reference_steps, sigma_min, sigma_max).astype(dtype)

    def problem(k):
        xs = [sigma_max * jr.normal(jr.fold_in(k, j), s, dtype) for j, s in enumerate(shapes)]
        refs = [sample(d, x, ref_grid, solver=Heun()) for d, x in zip(dens, xs, strict=True)]
        return xs, refs

    train, test = problem(k_train), problem(k_test)

    def loss(theta, data):
        grid = grid_from_params(theta, sigma_min, sigma_max)
        xs, refs = data
        errs = [
            _rms(sample(d, x, grid, solver=solver), r)
            for d, x, r in zip(dens, xs, refs, strict=True)
        ]
        errs = jnp.stack(errs)
        if objective == "log_rms":
            return jnp.mean(jnp.log(errs))
        return jnp.mean(errs)

    opt = optax.adam(learning_rate)
    theta0 = params_from_grid(start)

    @eqx.filter_jit
    def run(theta, data):
        def body(carry, _):
            theta, state = carry
            value, grad = jax.value_and_grad(loss)(theta, data)
            updates, state = opt.update(grad, state)
            return (optax.apply_updates(theta, updates), state), value

        (theta, _), values = jax.lax.scan(body, (theta, opt.init(theta)), None, iterations)
        return theta, values

    theta, losses = run(theta0, train)
    sigmas = grid_from_params(theta, sigma_min, sigma_max)
    report = jnp.exp if objective == "log_rms" else (lambda v: v)
    return OptimizedSchedule(
        sigmas=sigmas,
        initial_loss=float(report(loss(theta0, test))),
        final_loss=float(report(loss(theta, test))),
        losses=report(losses),
    )
