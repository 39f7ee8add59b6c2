"""Euler's method on the probability-flow ODE."""

from __future__ import annotations

from ._base import AbstractSampler, to_d


class Euler(AbstractSampler):
    r"""Euler's method on the probability-flow ODE $dx/d\sigma = (x - D(x;\sigma))/\sigma$.

    Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
    Alg. 1 without the corrector; k-diffusion's `sample_euler` (no churn). Order 1;
    1 denoiser evaluation per step (NFE = steps).

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the exact
    limit of its first step, `x_1 = D(x, inf) + sigma_1 x`, then runs it from `sigma_1`.
    """

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        # to sigma = 0 this is exactly x -> denoised
        return x + to_d(x, sigma, denoised) * (sigma_next - sigma), carry, denoised
