"""The sampler interface: a small immutable object with `init`/`step`, run by one `lax.scan`."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_positive
from .._fixed_grid import StepNoise


class AbstractSampler(eqx.Module):
    """A fixed-grid sampler in sigma-space (k-diffusion/EDM convention).

    The core (`jaxdiff.sample`) runs `step` for every interval `[sigmas[i], sigmas[i+1]]` of a
    decreasing grid that ends at 0: steps `0 .. n-2` inside one `lax.scan`, the last step
    (to sigma = 0) after it with `final=True`, so samplers branch on the last step in Python
    rather than computing both sides of a `jnp.where`.

    A concrete sampler implements:

    - `nfe(num_steps)`: denoiser evaluations for a grid of `num_steps + 1` sigmas;
    - `init(x, sigmas)`: the carry (e.g. a history of denoised values; `None` if stateless);
      stochastic samplers that draw state once per call override `init_with_key` instead;
    - `step(denoise, x, carry, i, sigmas, key, *, final)`: one step from `sigmas[i]` to
      `sigmas[i + 1]`, returning `(x_next, carry_next, denoised)` where `denoised` is the
      denoiser output at `(x, sigmas[i])` (for callbacks and trajectories).

    `stochastic` says whether `step` uses its `key` (then `jaxdiff.sample` requires one).

    Bulk noise (opt-in, for speed): a sampler with `bulk_noise = True` says that everything
    its `step` draws from `key` is `step_noise(key, x)` (default: one standard normal shaped
    like `x`), and takes it through `self.draws(key, x)`. The driver may then hand `step` a
    `StepNoise` holding those draws, made for a chunk of steps at once, in place of the key
    (the same numbers, to float rounding); called with a key, `step` draws them itself, as
    before. Samplers that do not opt in always get their key.

    A sampler never sees `sigma = inf`: a grid that starts there (pure noise) gets a
    first-order first step from `jaxdiff.sample`, then the sampler runs on the rest.
    Options are fields: samplers are pytrees whose configuration is static.
    """

    stochastic: ClassVar[bool] = False
    bulk_noise: ClassVar[bool] = False

    def step_noise(self, key: jax.Array, x: jax.Array) -> Any:
        """Everything `step` draws from its `key` (for `bulk_noise` samplers): by default one
        standard normal shaped like `x`. Depends on `x`'s shape and dtype only."""
        return jr.normal(key, x.shape, x.dtype)

    def draws(self, key, x) -> Any:
        """`step_noise(key, x)`, or the draws already made when `key` is a `StepNoise`."""
        if isinstance(key, StepNoise):
            return key.draws
        return self.step_noise(key, x)

    @abc.abstractmethod
    def nfe(self, num_steps: int) -> int:
        """Denoiser evaluations for `num_steps` steps (a grid of `num_steps + 1` sigmas)."""

    def init(self, x: jax.Array, sigmas: jax.Array) -> Any:
        """The initial carry; stateless samplers keep the default `None`."""
        del x, sigmas
        return None

    def init_with_key(self, x: jax.Array, sigmas: jax.Array, key: jax.Array) -> Any:
        """The initial carry of a stochastic sampler, given the call's key (not a per-step
        key): for state drawn once per call, e.g. a Brownian path shared by all steps.
        Defaults to `init(x, sigmas)`; `jaxdiff.sample` calls it whenever it has a key."""
        del key
        return self.init(x, sigmas)

    @abc.abstractmethod
    def step(self, denoise, x, carry, i, sigmas, key, *, final: bool):
        """One step from `sigmas[i]` to `sigmas[i + 1]` (which is 0 when `final`)."""


class AbstractAncestral(AbstractSampler):
    """A sampler that adds fresh noise every step: `eta` scales how much (0: none, the
    deterministic sampler), `s_noise` multiplies the fresh noise (EDM's `S_noise`)."""

    eta: float = 1.0
    s_noise: float = 1.0

    stochastic: ClassVar[bool] = True

    def __check_init__(self):
        check_eta_s_noise(self.eta, self.s_noise)


class AbstractSlopeMultistep(AbstractSampler):
    """A linear multistep method on the PF-ODE slope `d = (x - D)/sigma` that carries the
    slopes of the previous `order - 1` steps (zeros while warming up) and takes the last step,
    to sigma = 0, as an Euler step (`x -> D(x; sigma)`). 1 denoiser evaluation per step."""

    order: eqx.AbstractVar[int]

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def init(self, x, sigmas):
        del sigmas
        # d_{i-1}, d_{i-2}, ...: the slopes of the previous steps
        return jnp.zeros((self.order - 1, *x.shape), x.dtype)


def check_eta_s_noise(eta, s_noise) -> None:
    """`eta >= 0` and `s_noise >= 0`, checked when concrete."""
    check_positive("eta", eta, allow_zero=True)
    check_positive("s_noise", s_noise, allow_zero=True)


def two_stage_nfe(num_steps: int) -> int:
    """NFE of a two-stage sampler whose last step (to sigma = 0) is one Euler step."""
    return max(2 * num_steps - 1, 0)


def to_d(x, sigma, denoised):
    """The probability-flow ODE's slope in sigma-space, `dx/dsigma = (x - D(x; sigma)) / sigma`."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from, sigma_to, eta=1.0):
    """`(sigma_down, sigma_up)` of an ancestral step from `sigma_from` to `sigma_to`: a
    deterministic step to `sigma_down` followed by fresh noise of std `sigma_up`, with
    `sigma_down^2 + sigma_up^2 = sigma_to^2` (Ho et al. 2020; k-diffusion's
    `get_ancestral_step`). `eta = 0` is deterministic, `eta = 1` is DDPM-like."""
    sigma_up = jnp.minimum(
        sigma_to,
        eta
        * jnp.sqrt(jnp.maximum(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2, 0.0)),
    )
    sigma_down = jnp.sqrt(jnp.maximum(sigma_to**2 - sigma_up**2, 0.0))
    return sigma_down, sigma_up
