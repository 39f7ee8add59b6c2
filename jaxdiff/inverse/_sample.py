r"""`jaxdiff.inverse.sample`: posterior samples given a linear observation, one compiled
program per call."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.random as jr
import numpy as np

from .._checks import (
    check_float_array,
    check_grid,
    check_instance,
    check_model,
    is_per_sample_key,
)
from .._fixed_grid import check_run_options
from ..samplers._base import AbstractSampler
from ..samplers._core import check_denoiser, resolve_sampler
from ..samplers._dpmpp_2s_ancestral import DPMpp2SAncestral
from ..samplers._euler_ancestral import EulerAncestral
from ._dps import DPS
from ._mcgdiff import MCGdiff
from ._observation import LinearObservation
from ._pigdm import PiGDM
from ._repaint import RePaint
from ._tmpd import TMPD

__all__ = ["METHODS", "num_evaluations", "sample"]

#: the posterior samplers by name: `sample(..., method=name, **options)` builds
#: `METHODS[name](**options)`
METHODS = {"dps": DPS, "pigdm": PiGDM, "tmpd": TMPD, "repaint": RePaint, "smc": MCGdiff}

_Method = DPS | PiGDM | TMPD | RePaint | MCGdiff


def resolve_method(method, options: dict):
    """A method instance from a name and its options, or an instance (then no options)."""
    if isinstance(method, tuple(METHODS.values())):
        if options:
            raise TypeError(
                f"options {sorted(options)} given with a method instance: set them on the "
                f"instance ({type(method).__name__}(...)) or pass method by name"
            )
        return method
    expected = ", ".join(map(repr, METHODS))
    if not isinstance(method, str):
        raise TypeError(
            f"method must be one of {expected} or a method instance, got {type(method).__name__}"
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {expected}, got {method!r}")
    cls = METHODS[method]
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for method {method!r}; its options: {known}")
    return cls(**options)


def resolve_solver(method, solver) -> AbstractSampler:
    """The sampler a method runs: for `None`, `EulerAncestral()` (DDPM's ancestral steps,
    the papers' sampler), or `DPMpp2SAncestral()` for `MCGdiff` (a second-order move, so
    that the chain it reweights is close to the prior)."""
    if solver is None:
        return DPMpp2SAncestral() if isinstance(method, MCGdiff) else EulerAncestral()
    solver = resolve_sampler(solver)
    if isinstance(method, MCGdiff):
        method.check_solver(solver)
    return solver


def sample(denoiser, observation, x, sigmas, *, method, solver=None, key=None, **options):
    r"""Posterior samples of `x_0` given `observation` (`y = A x_0 + noise_std n`), with a
    diffusion prior given by its denoiser.

    **Arguments:**

    - `denoiser`: `denoiser(x, sigma) -> E[x_0 | x]` of the prior, batched `x`, scalar
      `sigma` (as `jaxdiff.sample`'s), or a pair `(fn, params)`.
    - `observation`: a `LinearObservation(A, y, noise_std)`; `y` one observation shared by
      every row of `x`, or one per row.
    - `x`: the initial noise at `sigmas[0]`, `(batch, *sample_shape)`, e.g.
      `sigmas[0] * normal(key, shape)`.
    - `sigmas`: a decreasing grid ending at 0 (`jaxdiff.schedules`), finite (start at a
      finite `sigma_max`).
    - `method`: `"dps"` (`DPS`), `"pigdm"` (`PiGDM`), `"tmpd"` (`TMPD`): the prior's denoiser
      corrected by an approximate likelihood score, run by `solver`; `"repaint"`
      (`RePaint`): masked inpainting with resampling, run by `solver`; `"smc"` (`MCGdiff`):
      sequential Monte Carlo, asymptotically exact as `num_particles` grows. Or an instance
      of one of these classes.
    - `solver`: a sampler of `jaxdiff.samplers` or its name; default `EulerAncestral()`
      (DDPM's ancestral steps, the papers' samplers). For `"smc"`, an ancestral sampler
      (its transitions), default `DPMpp2SAncestral()`.
    - `key`: PRNG key, required by stochastic methods and samplers; one key per row of `x`
      (`jaxdiff.per_sample_keys`) makes each row depend on its own key only.
    - `**options`: the method's options (e.g. `zeta=` for DPS, `num_particles=` for SMC).

    **Returns:** the posterior samples at `sigma = 0`, shaped like `x`.

    One call is one compiled program: new observations `y` (of the same shape), a new noise
    level, new weights, a new key or new initial noise do not recompile.
    """
    method = resolve_method(method, options)
    check_instance("observation", observation, LinearObservation, "a LinearObservation")
    x = check_float_array("x", x, batch=True)
    per_row = observation.per_sample(x)
    sigmas = check_grid(sigmas, name="sigmas", unit="sigma")
    denoiser = check_model("denoiser", denoiser, "denoiser(x, sigma)")
    solver = resolve_solver(method, solver)
    if isinstance(method, RePaint):
        method.check(observation, x, solver)
    stochastic = solver.stochastic or isinstance(method, RePaint | MCGdiff)
    key = check_run_options(
        key,
        x,
        stochastic=stochastic,
        who=f"{type(method).__name__} on {type(solver).__name__}",
        callback=None,
    )
    if key is not None and not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jr.wrap_key_data(key)
    return _sample(method, denoiser, observation, x, sigmas.astype(x.dtype), solver, key, per_row)


def num_evaluations(method, sigmas, *, solver=None, **options) -> int:
    """Denoiser evaluations (forward passes, without the gradients' backward passes) of one
    returned sample of `sample(..., method=method, solver=solver)` on the grid `sigmas`."""
    method = resolve_method(method, options)
    solver = resolve_solver(method, solver)
    n = np.asarray(check_grid(sigmas, name="sigmas", unit="sigma")).shape[0] - 1
    if isinstance(method, MCGdiff):
        return method.num_particles * solver.nfe(n)
    if isinstance(method, RePaint):
        # every step but the last costs what a step inside the grid costs
        per_step = solver.nfe(2) - solver.nfe(1)
        return (method.num_steps(n) - 1) * per_step + solver.nfe(1)
    return solver.nfe(n)


@eqx.filter_jit
def _sample(method, denoiser, observation, x, sigmas, solver, key, per_row):
    check_denoiser(denoiser, x, sigmas[0])
    if key is not None and is_per_sample_key(key):

        def row(x_row, y_row, key_row):
            obs = observation.with_y(y_row) if per_row else observation
            return method.run(denoiser, obs, x_row[None], sigmas, solver, key_row)[0]

        return jax.vmap(row, in_axes=(0, 0 if per_row else None, 0))(x, observation.y, key)
    return method.run(denoiser, observation, x, sigmas, solver, key)
