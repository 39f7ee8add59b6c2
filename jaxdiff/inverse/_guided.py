r"""Posterior sampling as a denoiser transform: the likelihood's score added to the prior's.

By Tweedie's formula for the posterior, `E[x_0 | x_sigma, y] = D(x, sigma) + sigma^2
grad_x log p(y | x_sigma)`: a denoiser for the posterior is the prior's denoiser plus
`sigma^2` times the score of the observation given the noisy sample. DPS, PiGDM and TMPD are
three approximations of that score; each gives a denoiser that every sampler of
`jaxdiff.samplers` runs (`jaxdiff.sample`), in one compiled program.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ..samplers._core import sample
from ._observation import LinearObservation
from ._spectrum import Spectrum

__all__ = ["AbstractGuidance", "GuidedDenoiser", "shared_y", "solve_psd"]


def shared_y(observation: LinearObservation, x: jax.Array) -> jax.Array:
    """`y` with a leading batch axis: `(1, ...)` for one observation shared by the batch `x`,
    `(batch, ...)` for one per sample."""
    y = observation.y
    if y.shape == observation.observation_shape(x.shape[1:]):
        return y[None]
    return y


def solve_psd(matrix: jax.Array, rhs: jax.Array) -> jax.Array:
    """`matrix^{-1} rhs` for a batch of (nearly) symmetric positive semi-definite matrices
    `(batch, n, n)` and right-hand sides `(batch, n)`, with a relative jitter of 16 ulps of the
    mean diagonal (a singular matrix is one with observations that are noise-free and
    fully explained)."""
    n = matrix.shape[-1]
    scale = jnp.trace(matrix, axis1=-2, axis2=-1)[..., None, None] / n
    jitter = 16 * jnp.finfo(matrix.dtype).eps * scale * jnp.eye(n, dtype=matrix.dtype)
    return jnp.linalg.solve(matrix + jitter, rhs[..., None])[..., 0]


class AbstractGuidance(eqx.Module):
    """A posterior sampler that transforms the denoiser: `denoiser(D, observation)` is
    `D'(x, sigma) = D(x, sigma) + sigma^2 g(x, sigma)`, with `g` the method's approximation of
    `grad_x log p(y | x_sigma)`. Runs on any sampler (`solver=`); by default on
    `EulerAncestral()` (DDPM's ancestral steps in sigma-space, the papers' samplers)."""

    @abc.abstractmethod
    def guide(
        self,
        denoiser: Callable,
        observation: LinearObservation,
        spectrum: Spectrum | None,
        x: jax.Array,
        sigma: jax.Array,
    ) -> jax.Array:
        """The guided denoiser's value at `(x, sigma)`."""

    def needs_spectrum(self) -> bool:
        """Whether `guide` uses the operator's spectrum (then it is computed once per call)."""
        return True

    def denoiser(self, denoiser: Callable, observation: LinearObservation) -> GuidedDenoiser:
        """The guided denoiser `D'(x, sigma)` for `observation` (a pytree: a new observation
        of the same shape does not recompile the sampler that runs it)."""
        return GuidedDenoiser(self, denoiser, observation, None)

    def run(self, denoiser, observation, x, sigmas, solver, key):
        spectrum = None
        if self.needs_spectrum():
            spectrum = observation.operator.spectrum(tuple(x.shape[1:]), x.dtype)
        guided = GuidedDenoiser(self, denoiser, observation, spectrum)
        return sample(guided, x, sigmas, solver=solver, key=key)


class GuidedDenoiser(eqx.Module):
    """`D'(x, sigma) = method.guide(D, observation, x, sigma)`: a denoiser for the posterior
    given `observation` (see `AbstractGuidance`)."""

    method: AbstractGuidance
    prior: Callable
    observation: LinearObservation
    spectrum: Any

    def __call__(self, x, sigma):
        spectrum = self.spectrum
        if spectrum is None and self.method.needs_spectrum():
            spectrum = self.observation.operator.spectrum(tuple(x.shape[1:]), x.dtype)
        return self.method.guide(self.prior, self.observation, spectrum, x, sigma)
