"""`jaxdiff.sample`: every fixed-grid sampler as one compiled program (one `lax.scan`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _fixed_grid as fixed_grid
from .._checks import (
    check_float_array,
    check_grid,
    check_grid_at_runtime,
    check_model,
    check_model_output,
    is_traced,
    lookup,
)
from .._fixed_grid import check_run_options
from .._results import SampleResult
from ._base import AbstractSampler
from ._names import SAMPLERS


def sample(
    denoiser,
    x,
    sigmas,
    *,
    solver: AbstractSampler | str | None = None,
    key: jax.Array | None = None,
    return_trajectory: bool = False,
    callback: Callable[[dict], Any] | None = None,
    checks: bool = False,
):
    r"""Sample by running `solver` over a decreasing sigma grid that ends at 0.

    One call is one compiled program: the steps are a `lax.scan` (the last step, to sigma = 0,
    follows it). Calling again with new weights (a denoiser that is a pytree, e.g. an equinox
    or flax NNX module, or a `(fn, params)` pair), a new key or new initial noise does not
    recompile; a new shape, dtype, step count or sampler does.

    **Arguments:**

    - `denoiser`: `denoiser(x, sigma) -> E[x_0 | x]` with batched `x` and a scalar `sigma`
      (k-diffusion/EDM convention), or a pair `(fn, params)` called as `fn(params, x, sigma)`.
      A denoiser may also define `step_start(x, sigma) -> (x_hat, denoised)` (CFG++,
      `jaxdiff.guidance.cfg_pp`): every step then starts from `x_hat` with `denoised` as its
      first evaluation (no extra NFE); samplers that first evaluate elsewhere (churn) refuse
      it with a `ValueError`.
    - `x`: the initial noise at `sigmas[0]`, e.g. `sigmas[0] * normal(key, shape)`; for a grid
      that starts at `inf`, the unit-variance noise `normal(key, shape)`.
    - `sigmas`: decreasing, `n + 1` entries, the last 0 (see `jaxdiff.schedules`). The first
      entry may be `inf`: pure noise, where flow models (`jaxdiff.RectifiedFlow` at t = 1) and
      zero-terminal-SNR models start. The denoiser is then called once at `sigma = inf` with
      the unit-variance noise and the first step is the exact limit of a first-order step,
      `x_1 = D(x, inf) + sigmas[1] x` (Euler's, DDIM's and DPM-Solver's first step); the
      sampler runs from `sigmas[1]` on. For samplers whose own first step has a finite limit
      that is first order (Euler, DDIM, the multistep samplers: their history starts afresh,
      and the weight of a step from `inf` vanishes in their extrapolation), this is their own
      limit; for two-stage samplers (Heun, DPM2, DPM-Solver++(2S), ...) and ancestral ones it
      is a first-order first step in their place (Heun's trapezoid has no finite limit from
      `inf`; given the exact denoiser, `D(x, inf)` is the data mean and the step is exact in
      distribution). NFE: `1 + solver.nfe(n - 1)` (`jaxdiff.samplers.num_evaluations`).
    - `solver`: a sampler from `jaxdiff.samplers`, or its name (`jaxdiff.samplers.by_name`'s,
      e.g. `"dpmpp_2m"`); default `Heun()`.
    - `key`: PRNG key, required by stochastic samplers (`solver.stochastic`). A batch of keys,
      one per sample (shape `(batch,)`, e.g. from `jaxdiff.per_sample_keys`), makes the noise
      of every sample depend only on its own key, not on the batch: the sampler then runs
      under `jax.vmap` over samples (the denoiser sees batches of 1), and a sample's result is
      the same whatever batch, chunk or device it is computed in. A different noise stream
      from the single-key default; no `callback` in this mode.
    - `return_trajectory`: also return `x` at every sigma, shape `(n + 1, *x.shape)`.
    - `callback`: called on the host after every step with a dict (`i`, `sigma`,
      `sigma_next`, `x`, `denoised`); a host sync per step, for inspection only.
    - `checks`: opt-in runtime checks for a grid traced by an outer `jax.jit`, whose values
      cannot be checked here (an increasing grid, or one that does not end at 0, would
      otherwise give NaN or wrong samples silently): with `checks=True` the compiled program
      raises (`equinox.error_if`) when the traced grid is not strictly decreasing or does not
      end at 0. It costs one reduction over the grid, before the step loop. A concrete grid is
      always checked at the call (a `ValueError` naming what is wrong: not 1-D, not finite,
      not decreasing, not ending at 0, `inf` other than first), so `checks` changes nothing
      for it; a traced grid that starts at `inf` always raises at run time.

    **Returns:** the sample at sigma = 0, or with `return_trajectory` a `SampleResult(x,
    trajectory)` (a named tuple: `x, trajectory = ...` unpacks it).
    """
    solver = resolve_sampler(solver)
    sigmas = check_grid(sigmas, name="sigmas", unit="sigma", infinite_start=True)
    if checks and is_traced(sigmas):
        sigmas = check_grid_at_runtime(sigmas, name="sigmas", unit="sigma")
    x = check_float_array("x", x)
    denoiser = check_model("denoiser", denoiser, "denoiser(x, sigma)")
    key = check_run_options(
        key, x, stochastic=solver.stochastic, who=type(solver).__name__, callback=callback
    )
    # a grid traced by an outer jit is checked for inf on the device instead
    start = "traced" if is_traced(sigmas) else bool(np.isinf(np.asarray(sigmas)[0]))
    x_out, trajectory = _sample(
        denoiser, x, sigmas.astype(x.dtype), solver, key, bool(return_trajectory), callback, start
    )
    return SampleResult(x_out, trajectory) if return_trajectory else x_out


def num_evaluations(solver, sigmas) -> int:
    """Denoiser evaluations of `jaxdiff.sample(denoiser, x, sigmas, solver=solver)`: the
    sampler's `nfe(n)` for a grid of `n + 1` entries, or `1 + nfe(n - 1)` for a grid that
    starts at `inf` (the first-order first step, then the sampler)."""
    solver = resolve_sampler(solver)
    sigmas = check_grid(sigmas, name="sigmas", unit="sigma", infinite_start=True)
    n = sigmas.shape[0] - 1
    if is_traced(sigmas) or not np.isinf(np.asarray(sigmas)[0]):
        return solver.nfe(n)
    return 1 + (solver.nfe(n - 1) if n > 1 else 0)


def resolve_sampler(solver) -> AbstractSampler:
    """A sampler from an instance, a name (`jaxdiff.samplers.SAMPLERS`) or `None` (Heun)."""
    if solver is None:
        return SAMPLERS["heun"]()
    return lookup("solver", solver, SAMPLERS, AbstractSampler, "sampler")


def check_denoiser(denoiser, x, sigma) -> None:
    """Abstractly traces `denoiser(x, sigma)` (no FLOPs): it must return an array like `x`."""
    check_model_output(
        lambda d, x_, s: d(x_, s), (denoiser, x, sigma), x, "denoiser(x, sigma)", "x"
    )


@eqx.filter_jit
def _sample(denoiser, x, sigmas, solver, key, return_trajectory, callback, start):
    # the shape/dtype check runs while tracing, once per compilation, not on every call
    # (an abstract trace of the network costs milliseconds of Python per call)
    check_denoiser(denoiser, x, sigmas[0])

    def denoise(x_, sigma):
        return denoiser(x_, sigma.astype(x_.dtype))

    if getattr(denoiser, "step_start", None) is not None:
        denoise = _StartHook(denoise, denoiser.step_start, type(solver).__name__)

    if start == "traced":  # a grid traced by an outer jit: its first entry must be finite
        x = eqx.error_if(
            x,
            jnp.isinf(sigmas[0]),
            "sigmas starts at inf: pass a concrete grid (not traced by an outer jit) to start "
            "from pure noise",
        )
    elif start:
        return _from_noise(denoise, x, sigmas, solver, key, return_trajectory, callback)
    return _run(denoise, x, sigmas, solver, key, return_trajectory, callback)


def _from_noise(denoise, noise, sigmas, solver, key, return_trajectory, callback):
    """A grid starting at `sigma = inf`: `noise` is the unit-variance noise, the first step is
    the exact limit of a first-order step, `x_1 = D(noise, inf) + sigma_1 noise` (of Euler, of
    DDIM and of every first-order multistep start), then `solver` runs on `sigmas[1:]`."""
    denoised = denoise(noise, sigmas[0])
    x_1 = denoised + sigmas[1] * noise
    if callback is not None:
        info = {"i": 0, "sigma": sigmas[0], "sigma_next": sigmas[1], "x": x_1}
        jax.debug.callback(callback, {**info, "denoised": denoised}, ordered=True)
    if sigmas.shape[0] == 2:  # [inf, 0]: one step, to the denoised noise
        x_out, trajectory = x_1, jnp.stack([noise, x_1]) if return_trajectory else None
        return x_out, trajectory
    if callback is not None:
        inner = callback

        def callback(info):
            inner({**info, "i": info["i"] + 1})

    x_out, trajectory = _run(denoise, x_1, sigmas[1:], solver, key, return_trajectory, callback)
    if return_trajectory:
        trajectory = jnp.concatenate([noise[None], trajectory])
    return x_out, trajectory


def _run(denoise, x, sigmas, solver, key, return_trajectory, callback):
    def init(x_, key_):
        carry = solver.init(x_, sigmas) if key_ is None else solver.init_with_key(x_, sigmas, key_)
        return x_, carry

    def step(x0_, x_, carry, i, key_, final):
        del x0_
        if isinstance(denoise, _StartHook):
            x_, first = denoise.start(x_, sigmas[i])
            return solver.step(first, x_, carry, i, sigmas, key_, final=final)
        return solver.step(denoise, x_, carry, i, sigmas, key_, final=final)

    return fixed_grid.run(
        init,
        step,
        x,
        sigmas,
        key=key,
        return_trajectory=return_trajectory,
        callback=callback,
        noise=solver.step_noise if solver.bulk_noise else None,
    )


class _StartHook:
    """The `step_start` contract: a denoiser may define `step_start(x, sigma) -> (x_hat,
    denoised)`, a state for the step to continue from and its denoiser output, computed in
    place of the step's first evaluation (CFG++, `jaxdiff.guidance.cfg_pp`, moves the state
    there). Every step then runs from `x_hat`, and its first denoiser call, which must be at
    `x_hat` itself (checked while tracing), returns `denoised` without a new evaluation; later
    calls evaluate the denoiser as usual. Samplers whose first evaluation is elsewhere (churn)
    cannot honour it: a `ValueError` names them. NFE unchanged."""

    def __init__(self, denoise, step_start, sampler_name):
        self.denoise, self.step_start, self.sampler_name = denoise, step_start, sampler_name

    def __call__(self, x_, sigma):
        return self.denoise(x_, sigma)

    def start(self, x, sigma):
        x_hat, denoised = self.step_start(x, sigma.astype(x.dtype))
        first = [True]

        def denoise(x_, sigma_):
            if first[0]:
                first[0] = False
                if x_ is not x_hat:
                    raise ValueError(
                        f"{self.sampler_name} first evaluates the denoiser away from the "
                        "step's start (churn or a predictor), so it cannot run a denoiser "
                        "with step_start (CFG++): use a sampler without churn (Euler, DDIM, "
                        "DPM-Solver++, ...)"
                    )
                return denoised
            return self.denoise(x_, sigma_)

        return x_hat, denoise
