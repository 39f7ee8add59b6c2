"""Ancestral sampling with DPM-Solver-2 steps."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from ._base import AbstractAncestral, ancestral_step, to_d, two_stage_nfe


class DPM2Ancestral(AbstractAncestral):
    r"""Ancestral sampling with DPM-Solver-2 steps: a second-order (midpoint in log sigma)
    step of the probability-flow ODE down to `sigma_down`, then fresh noise of std `sigma_up`.

    Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling
    in Around 10 Steps" (DPM-Solver-2), with ancestral noise (Ho et al. 2020); k-diffusion's
    `sample_dpm_2_ancestral`. Weak order 1 (the noise); 2 denoiser evaluations per step, 1 on
    the last step to sigma = 0 (an Euler step; NFE = 2 steps - 1).

    **Options:** `eta` scales the noise (`0`: k-diffusion's `sample_dpm_2`), `s_noise`
    multiplies the fresh noise. Where `eta` is so large that `sigma_down = 0` before the last
    step, the step is an Euler step to 0 followed by the noise (k-diffusion then adds none).

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
        d = to_d(x, sigma, denoised)
        if final:  # Euler to sigma = 0: exactly x -> denoised
            return x + d * (sigma_next - sigma), carry, denoised
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, self.eta)
        # DPM-Solver-2 (a value guard keeps log finite where sigma_down = 0)
        to_zero = sigma_down == 0
        sigma_mid = jnp.exp(0.5 * (jnp.log(sigma) + jnp.log(jnp.where(to_zero, sigma, sigma_down))))
        x_2 = x + d * (sigma_mid - sigma)
        d_2 = to_d(x_2, sigma_mid, denoise(x_2, sigma_mid))
        x = x + jnp.where(to_zero, d, d_2) * (sigma_down - sigma)
        x = x + self.draws(key, x) * (self.s_noise * sigma_up)
        return x, carry, denoised
