"""DPM-Solver-2 style midpoint method on the probability-flow ODE."""

from __future__ import annotations

import jax.numpy as jnp

from ._base import AbstractSampler, to_d, two_stage_nfe


class DPM2(AbstractSampler):
    r"""A second-order midpoint method on $dx/d\sigma = (x - D(x;\sigma))/\sigma$ with the
    midpoint taken in log sigma, $\sigma_{mid} = \sqrt{\sigma_i \sigma_{i+1}}$: an Euler step
    to $\sigma_{mid}$, then the full step with the slope $d$ there.

    Inspired by DPM-Solver-2 (Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for Diffusion
    Probabilistic Model Sampling in Around 10 Steps") and Alg. 2 of Karras et al. 2022,
    "Elucidating the Design Space of Diffusion-Based Generative Models"; k-diffusion's
    `sample_dpm_2` (no churn). The last step, to sigma = 0, is an Euler step (`x -> D`).
    Order 2; 2 denoiser evaluations per step, 1 on the last (NFE = 2 steps - 1).

    From a grid that starts at `sigma = inf` (pure noise) this sampler's own first step has no
    finite limit: `jaxdiff.sample` takes a first-order first step in its place
    (`x_1 = D(x, inf) + sigma_1 x`), then runs it from `sigma_1`.
    """

    def nfe(self, num_steps: int) -> int:
        return two_stage_nfe(num_steps)

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        d = to_d(x, sigma, denoised)
        if final:  # Euler to sigma = 0
            return x + d * (sigma_next - sigma), carry, denoised
        log_sigma = jnp.log(sigma)
        sigma_mid = jnp.exp(log_sigma + 0.5 * (jnp.log(sigma_next) - log_sigma))
        x_2 = x + d * (sigma_mid - sigma)
        d_2 = to_d(x_2, sigma_mid, denoise(x_2, sigma_mid))
        return x + d_2 * (sigma_next - sigma), carry, denoised
