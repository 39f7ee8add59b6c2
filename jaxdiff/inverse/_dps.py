r"""Diffusion posterior sampling (DPS)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._checks import check_positive
from ._guided import AbstractGuidance


class DPS(AbstractGuidance):
    r"""Diffusion posterior sampling: Chung, Kim, Mccann, Klasky & Ye 2023, "Diffusion
    Posterior Sampling for General Noisy Inverse Problems" (ICLR).

    DPS replaces `p(y | x_sigma)` by `p(y | x_0 = D(x, sigma))` and the likelihood's weight
    `1 / (2 noise_std^2)` by the step size `zeta / ||y - A D||` (the paper's rule, Alg. 1), so
    that the guided denoiser is

    $$D'(x, \sigma) = D(x, \sigma) - \zeta\,
      \frac{\nabla_x \|y - A D(x, \sigma)\|^2}{\|y - A D(x, \sigma)\|}$$

    (one norm per sample; the gradient goes through the denoiser with `jax.vjp`). A sampler
    step from `sigma` to `sigma_next` moves `x` by the fraction `1 - sigma_next / sigma`
    (Euler, DDIM) or `1 - sigma_next^2 / sigma^2` (ancestral, the default `EulerAncestral`)
    of the denoiser's correction, so the paper's per-step move `zeta' grad ||r||^2 / ||r||`
    on its 1000-step DDPM grid is `zeta = zeta' / (1 - sigma_next^2 / sigma^2)` here: the
    correction in denoiser units does not depend on the step count. Biased: its samples do
    not approach the posterior as the steps grow (`p(y | D(x))` ignores the spread of
    `x_0` given `x_sigma`).

    **Options:** `zeta` (> 0, default 1.0), the step size.

    NFE: 1 denoiser evaluation and 1 vector-Jacobian product (a backward pass) per denoiser
    call, so about 3 forward passes' cost per call of the sampler (NFE per step: the
    sampler's).
    """

    zeta: float = 1.0

    def __check_init__(self):
        check_positive("zeta", self.zeta)

    def needs_spectrum(self):
        return False

    def guide(self, denoiser, observation, spectrum, x, sigma):
        del spectrum
        denoised, pullback = jax.vjp(lambda z: denoiser(z, sigma), x)
        residual = observation.residual(denoised)
        norm = jnp.sqrt(jnp.sum(residual.reshape(residual.shape[0], -1) ** 2, axis=-1))
        # -grad ||r||^2 = 2 J^T A^T r
        (g,) = pullback(observation.operator.transpose(residual, x.shape[1:]))
        step = 2.0 * self.zeta / jnp.where(norm > 0, norm, 1.0)
        return denoised + step.reshape(-1, *([1] * (x.ndim - 1))).astype(x.dtype) * g
