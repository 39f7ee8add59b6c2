"""Ancestral sampling with DPM-Solver++(2S) steps."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from ._base import AbstractAncestral, ancestral_step, to_d, two_stage_nfe


class DPMpp2SAncestral(AbstractAncestral):
    r"""Ancestral sampling with DPM-Solver++(2S) steps: a single-step second-order step in
    `t = -log sigma` with the data prediction (intermediate point at `r = 1/2`) down to
    `sigma_down`, then fresh noise of std `sigma_up`.

    Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
    Models" (Alg. 1, DPM-Solver++(2S)), with ancestral noise (Ho et al. 2020); k-diffusion's
    `sample_dpmpp_2s_ancestral`. Weak order 1 (the noise); 2 denoiser evaluations per step, 1 on
    the last step to sigma = 0 (an Euler step; NFE = 2 steps - 1).

    **Options:** `eta` scales the noise (`0`: deterministic DPM-Solver++(2S)), `s_noise`
    multiplies the fresh noise.

    From a grid that starts at `sigma = inf` (pure noise) this sampler's own first step has no
    finite limit: `jaxdiff.sample` takes a first-order first step in its place
    (`x_1 = D(x, inf) + sigma_1 x`), then runs it from `sigma_1`.
    """

    bulk_noise: ClassVar[bool] = True

    def nfe(self, num_steps: int) -> int:
        return two_stage_nfe(num_steps)

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:  # Euler to sigma = 0: exactly x -> denoised
            return x + to_d(x, sigma, denoised) * (sigma_next - sigma), carry, denoised
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, self.eta)
        to_zero = sigma_down == 0  # only for a very large eta: then an Euler step to 0
        t = -jnp.log(sigma)
        t_next = -jnp.log(jnp.where(to_zero, sigma, sigma_down))
        r = 0.5
        h = t_next - t
        s = t + r * h
        x_2 = jnp.exp(t - s) * x - jnp.expm1(-h * r) * denoised
        denoised_2 = denoise(x_2, jnp.exp(-s))
        x_2s = jnp.exp(t - t_next) * x - jnp.expm1(-h) * denoised_2
        x = jnp.where(to_zero, denoised, x_2s)
        x = x + self.draws(key, x) * (self.s_noise * sigma_up)
        return x, carry, denoised
