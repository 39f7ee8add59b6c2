"""DDPM's ancestral sampler for VP models, in sigma-space."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from ._base import AbstractSampler

_VARIANCES = ("posterior", "beta")


class DDPM(AbstractSampler):
    r"""Ancestral sampling of denoising diffusion probabilistic models (Ho, Jain & Abbeel 2020,
    "Denoising Diffusion Probabilistic Models", Alg. 2) between consecutive grid levels of a
    variance-preserving model, written in sigma-space ($\bar\alpha = 1/(1+\sigma^2)$,
    $y = x_t/\sqrt{\bar\alpha}$, one DDPM step from $\sigma$ to $\sigma'$ with
    $\beta = 1 - \bar\alpha/\bar\alpha'$).

    The posterior mean $\tilde\mu$ becomes
    $y' = (\sigma'^2/\sigma^2)\,y + (1 - \sigma'^2/\sigma^2)\,D(y;\sigma)$; the noise is
    $\tilde\beta = \beta(1-\bar\alpha')/(1-\bar\alpha)$ (`variance="posterior"`, equal to
    `DDIM(eta=1)`) or $\beta$ (`variance="beta"`), divided by $\bar\alpha'$ in sigma-space.
    The last step (to sigma = 0) returns the mean, $D$. Order 1 (weak); 1 denoiser
    evaluation per step.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the
    deterministic first step `x_1 = D(x, inf) + sigma_1 x` (the limit of its step without
    the fresh noise; equal in distribution given the exact denoiser, whose `D(x, inf)` is
    the data mean), then runs it from `sigma_1`.
    """

    variance: str = eqx.field(default="posterior", static=True)

    stochastic: ClassVar[bool] = True
    bulk_noise: ClassVar[bool] = True

    def __check_init__(self):
        if self.variance not in _VARIANCES:
            raise ValueError(f"variance must be one of {_VARIANCES}, got {self.variance!r}")

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:
            return denoised, carry, denoised
        ratio = (sigma_next / sigma) ** 2
        mean = ratio * x + (1 - ratio) * denoised
        if self.variance == "posterior":
            var = sigma_next**2 * (1 - ratio)
        else:
            var = (sigma**2 - sigma_next**2) * (1 + sigma_next**2) / (1 + sigma**2)
        return mean + jnp.sqrt(var) * self.draws(key, x), carry, denoised
