"""`jaxdiff.sample`: every fixed-grid sampler as one compiled program (one `lax.scan`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax

from .. import _fixed_grid as fixed_grid
from .._checks import (
    check_float_array,
    check_grid,
    check_model,
    check_model_output,
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
):
    r"""Sample by running `solver` over a decreasing sigma grid that ends at 0.

    One call is one compiled program: the steps are a `lax.scan` (the last step, to sigma = 0,
    follows it). Calling again with new weights (a denoiser that is a pytree, e.g. an equinox
    or flax NNX module, or a `(fn, params)` pair), a new key or new initial noise does not
    recompile; a new shape, dtype, step count or sampler does.

    **Arguments:**

    - `denoiser`: `denoiser(x, sigma) -> E[x_0 | x]` with batched `x` and a scalar `sigma`
      (k-diffusion/EDM convention), or a pair `(fn, params)` called as `fn(params, x, sigma)`.
    - `x`: the initial noise at `sigmas[0]`, e.g. `sigmas[0] * normal(key, shape)`.
    - `sigmas`: decreasing, `n + 1` entries, the last 0 (see `jaxdiff.schedules`).
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

    **Returns:** the sample at sigma = 0, or with `return_trajectory` a `SampleResult(x,
    trajectory)` (a named tuple: `x, trajectory = ...` unpacks it).
    """
    solver = resolve_sampler(solver)
    sigmas = check_grid(sigmas, name="sigmas", unit="sigma")
    x = check_float_array("x", x)
    denoiser = check_model("denoiser", denoiser, "denoiser(x, sigma)")
    key = check_run_options(
        key, x, stochastic=solver.stochastic, who=type(solver).__name__, callback=callback
    )
    x_out, trajectory = _sample(
        denoiser, x, sigmas.astype(x.dtype), solver, key, bool(return_trajectory), callback
    )
    return SampleResult(x_out, trajectory) if return_trajectory else x_out


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
def _sample(denoiser, x, sigmas, solver, key, return_trajectory, callback):
    # the shape/dtype check runs while tracing, once per compilation, not on every call
    # (an abstract trace of the network costs milliseconds of Python per call)
    check_denoiser(denoiser, x, sigmas[0])

    def denoise(x_, sigma):
        return denoiser(x_, sigma.astype(x_.dtype))

    def init(x_, key_):
        carry = solver.init(x_, sigmas) if key_ is None else solver.init_with_key(x_, sigmas, key_)
        return x_, carry

    def step(x0_, x_, carry, i, key_, final):
        del x0_
        return solver.step(denoise, x_, carry, i, sigmas, key_, final=final)

    return fixed_grid.run(
        init, step, x, sigmas, key=key, return_trajectory=return_trajectory, callback=callback
    )
