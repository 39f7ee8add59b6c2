"""Heun's method on the probability-flow ODE (EDM's deterministic sampler)."""

from __future__ import annotations

from ._base import AbstractSampler, to_d, two_stage_nfe


def heun_step(denoise, x, sigma, sigma_next, *, final):
    """One Heun step from `sigma` to `sigma_next`; an Euler step when `final` (sigma_next = 0).
    Returns `(x_next, denoised at (x, sigma))`."""
    denoised = denoise(x, sigma)
    d = to_d(x, sigma, denoised)
    dt = sigma_next - sigma
    x_euler = x + d * dt
    if final:
        return x_euler, denoised
    d_next = to_d(x_euler, sigma_next, denoise(x_euler, sigma_next))
    return x + 0.5 * (d + d_next) * dt, denoised


class Heun(AbstractSampler):
    r"""Heun's second-order method on the probability-flow ODE.

    Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
    Alg. 1; k-diffusion's `sample_heun` (no churn). Order 2; 2 denoiser evaluations per step,
    1 on the last step to sigma = 0 (NFE = 2 steps - 1).

    From a grid that starts at `sigma = inf` (pure noise) this sampler's own first step has no
    finite limit: `jaxdiff.sample` takes a first-order first step in its place
    (`x_1 = D(x, inf) + sigma_1 x`), then runs it from `sigma_1`.
    """

    def nfe(self, num_steps: int) -> int:
        return two_stage_nfe(num_steps)

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        x_next, denoised = heun_step(denoise, x, sigmas[i], sigmas[i + 1], final=final)
        return x_next, carry, denoised
