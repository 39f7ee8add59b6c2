"""Ancestral sampling with Euler steps."""

from __future__ import annotations

from typing import ClassVar

from ._base import AbstractAncestral, ancestral_step, to_d


class EulerAncestral(AbstractAncestral):
    r"""Ancestral sampling with Euler steps: an Euler step of the probability-flow ODE down to
    `sigma_down`, then fresh noise of std `sigma_up` (`sigma_down^2 + sigma_up^2 =
    sigma_next^2`, see `ancestral_step`).

    Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (ancestral sampling); Song et al.
    2021, "Score-Based Generative Modeling through Stochastic Differential Equations"
    (the reverse SDE it discretizes at `eta = 1`); k-diffusion's `sample_euler_ancestral`.
    Weak order 1; 1 denoiser evaluation per step (NFE = steps).

    **Options:** `eta` scales the noise (`0`: Euler's method on the ODE, `1`: DDPM-like);
    `s_noise` multiplies the fresh noise.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the
    deterministic first step `x_1 = D(x, inf) + sigma_1 x` (the limit of its step without
    the fresh noise; equal in distribution given the exact denoiser, whose `D(x, inf)` is
    the data mean), then runs it from `sigma_1`.
    """

    bulk_noise: ClassVar[bool] = True

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:  # to sigma = 0: exactly x -> denoised, no noise
            return x + to_d(x, sigma, denoised) * (sigma_next - sigma), carry, denoised
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, self.eta)
        x = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        x = x + self.draws(key, x) * (self.s_noise * sigma_up)
        return x, carry, denoised
