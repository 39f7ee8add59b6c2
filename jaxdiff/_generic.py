"""The generic path: any diffrax solver on a process's probability-flow ODE or reverse SDE,
fixed-step or adaptive, reporting the function evaluations used."""

from __future__ import annotations

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import (
    check_callable,
    check_finite,
    check_float_array,
    check_instance,
    check_key,
    check_tolerances,
    is_traced,
    lookup,
)
from ._deprecation import process_after_state
from ._results import GenericResult
from .processes import AbstractProcess
from .sde import solve_sde
from .sde._solve import DiagonalDiffusion, time_reversed
from .sde._solvers import MAX_STEPS, SDE_SOLVERS, evaluations, ode_solver


def _check(score, x_T, process, fn):
    x_T, process = process_after_state(
        fn, x_T, process, AbstractProcess, f"{fn}(score, x_T, process)"
    )
    check_callable("score", score, "score(x, t)")
    check_instance("process", process, AbstractProcess, "a jaxdiff process")
    with jax.ensure_compile_time_eval():  # concrete even under an outer jit
        sigma_max = process.sigma(process.t_max)
    if not is_traced(sigma_max) and not np.isfinite(float(sigma_max)):
        raise ValueError(
            f"process.t_max = {process.t_max} is pure noise (sigma = inf), where a score is "
            f"singular: pass a process with a smaller t_max (e.g. "
            f"{type(process).__name__}(t_max=0.999)), or sample a flow model with jd.sample "
            f"from sigma = inf (jd.parametrizations.from_velocity)"
        )
    # a non-finite x_T would surface as the adaptive solver's "maximum number of steps" error
    return check_finite("x_T", check_float_array("x_T", x_T)), process


def sample_ode(
    score,
    x_T,
    process: AbstractProcess,
    *,
    solver: str | dfx.AbstractSolver = "tsit5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = MAX_STEPS,
) -> GenericResult:
    r"""Solve the probability-flow ODE of `process` from `t_max` down to `t_min` with a diffrax
    solver (Song et al. 2021, eq. 13): fixed `steps` (uniform in t) or, with `steps=None`,
    adaptive steps under a PID controller with tolerances `rtol`, `atol`.

    **Arguments:**

    - `score`: `score(x, t) -> grad_x log p_t(x)` (batched `x`, scalar `t`), e.g.
      `gm.process_score(process)` or `jaxdiff.score_from_denoiser(denoiser, process)`.
    - `x_T`: samples of the process's prior at `t_max`, finite (a NaN or inf is a `ValueError`
      for a concrete `x_T`, an error when the program runs for one traced by an outer `jit`);
      `process`: a `jaxdiff` process.
      (The old order `sample_ode(score, process, x_T)` still works, with a
      `DeprecationWarning`.)
    - `solver`: an ODE solver name (`"tsit5"`, `"dopri5"`, `"dopri8"`, `"heun"`, `"euler"`,
      ...) or a diffrax solver instance (adaptive solves need an embedded error estimate).

    **Returns:** `GenericResult(x, nfe, num_steps)`: the samples at `t_min` (process space),
    the score evaluations used and the steps taken (rejected ones included).
    """
    x_T, process = _check(score, x_T, process, "sample_ode")
    check_tolerances(steps, rtol, atol, max_steps)
    solver = ode_solver(solver, adaptive=steps is None)
    per_step, initial = evaluations(solver)
    t0, t1 = float(process.t_max), float(process.t_min)
    if steps is not None:
        ode = process.probability_flow(score)
        x = solve_sde(ode, x_T, np.array([t0, t1]), dt=(t0 - t1) / steps, solver=solver)[-1]
        n = jnp.asarray(steps)
        return GenericResult(x, n * per_step + initial, n)
    return _adaptive_ode(
        process.probability_flow(score),
        x_T,
        t0,
        t1,
        solver,
        rtol,
        atol,
        max_steps,
        per_step,
        initial,
    )


def _adaptive(terms, solver, t0, t1, y0, rtol, atol, max_steps, per_step, initial):
    """A PID-controlled solve from t0 to t1, saving the end only; NFE from the step count."""
    sol = dfx.diffeqsolve(
        terms,
        solver,
        t0,
        t1,
        dt0=(t1 - t0) / 64,  # given, so no evaluations go into choosing it
        y0=y0,
        stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
        saveat=dfx.SaveAt(t1=True),
        max_steps=max_steps,
        adjoint=dfx.ForwardMode(),
    )
    n = sol.stats["num_steps"]
    return GenericResult(sol.ys[-1], n * per_step + initial, n)


@eqx.filter_jit
def _adaptive_ode(ode, x_T, t0, t1, solver, rtol, atol, max_steps, per_step, initial):
    # diffrax handles the decreasing ODE time itself
    terms = dfx.ODETerm(ode.drift)
    return _adaptive(terms, solver, t0, t1, x_T, rtol, atol, max_steps, per_step, initial)


def sample_sde(
    score,
    x_T,
    process: AbstractProcess,
    *,
    key: jax.Array,
    solver: str | dfx.AbstractSolver = "euler_maruyama",
    steps: int | None = 1000,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    tol: float | None = None,
    max_steps: int = MAX_STEPS,
) -> GenericResult:
    r"""Solve the reverse-time SDE of `process` (Anderson 1982; Song et al. 2021, eq. 6) from
    `t_max` down to `t_min` with a diffrax solver: fixed `steps` (uniform in t, the fast grid
    Brownian path of `jaxdiff.solve_sde`), or with `steps=None` adaptive steps under a PID
    controller on a `diffrax.VirtualBrownianTree` of resolution `tol` (default
    `(t_max - t_min) * 1e-4`); adaptive solves need a solver with an error estimate
    (`"heun"`, `"spark"`, ...).

    Arguments as `sample_ode`, plus `key` (required, keyword-only); the old order
    `sample_sde(score, process, x_T)` still works, with a `DeprecationWarning`.

    **Returns:** `GenericResult(x, nfe, num_steps)` as `sample_ode`.
    """
    x_T, process = _check(score, x_T, process, "sample_sde")
    check_tolerances(steps, rtol, atol, max_steps)
    check_key(key)
    solver_obj = lookup("solver", solver, SDE_SOLVERS, dfx.AbstractSolver, "SDE solver")
    per_step, initial = evaluations(solver_obj)
    sde = process.reverse(score)
    t0, t1 = float(process.t_max), float(process.t_min)
    if steps is not None:
        x = solve_sde(sde, x_T, np.array([t0, t1]), key=key, dt=(t0 - t1) / steps, solver=solver)[
            -1
        ]
        n = jnp.asarray(steps)
        return GenericResult(x, n * per_step + initial, n)
    tol = (t0 - t1) * 1e-4 if tol is None else tol
    return _adaptive_sde(
        sde, x_T, key, t0, t1, solver_obj, rtol, atol, tol, max_steps, per_step, initial
    )


@eqx.filter_jit
def _adaptive_sde(sde, x_T, key, t0, t1, solver, rtol, atol, tol, max_steps, per_step, initial):
    # Solved forward in tau = -t, as jaxdiff.solve_sde does, so diffrax sees increasing time.
    fwd = time_reversed(sde)
    bm = dfx.VirtualBrownianTree(
        -t0,
        -t1,
        tol=tol,
        shape=jax.ShapeDtypeStruct(x_T.shape, x_T.dtype),
        key=key,
        levy_area=dfx.SpaceTimeLevyArea,
    )
    terms = dfx.MultiTerm(
        dfx.ODETerm(fwd.drift), dfx.ControlTerm(DiagonalDiffusion(fwd.diffusion), bm)
    )
    return _adaptive(terms, solver, -t0, -t1, x_T, rtol, atol, max_steps, per_step, initial)
