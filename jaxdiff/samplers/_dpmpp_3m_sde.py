"""DPM-Solver++(3M) SDE."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from ._base import AbstractSampler, check_eta_s_noise
from ._dpmpp_2m_sde import sde_noise
from ._noise import brownian_tree, check_noise


class DPMpp3MSDE(AbstractSampler):
    r"""DPM-Solver++(3M) SDE: the third-order multistep solver of the reverse SDE in
    `t = -log sigma` with the data prediction; `eta` interpolates between the probability-flow
    ODE (`eta = 0`) and the reverse SDE (`eta = 1`), `h_eta = (1 + eta) h`.

    Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
    Models" (the multistep solvers; third order as in DPM-Solver-3's phi functions), made
    stochastic by Katherine Crowson in k-diffusion's `sample_dpmpp_3m_sde`. Order 3 on the
    ODE (`eta = 0`); first order on the first step, second on the second; 1 denoiser
    evaluation per step (NFE = steps); the last step, to sigma = 0, returns the denoiser output.

    **Options:** `eta`, `s_noise` (multiplies the noise); `noise="step"` or `"tree"` as in
    `DPMpp2MSDE`.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the
    deterministic first step `x_1 = D(x, inf) + sigma_1 x` (the limit of its step without
    the fresh noise; equal in distribution given the exact denoiser, whose `D(x, inf)` is
    the data mean), then runs it from `sigma_1`.
    """

    eta: float = 1.0
    s_noise: float = 1.0
    noise: str = eqx.field(default="step", static=True)

    stochastic: ClassVar[bool] = True

    bulk_noise: ClassVar[bool] = True

    def step_noise(self, key, x):
        # noise="tree" draws nothing from the step's key
        return () if self.noise == "tree" else jr.normal(key, x.shape, x.dtype)

    def __check_init__(self):
        check_eta_s_noise(self.eta, self.s_noise)
        check_noise(self.noise)

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def init(self, x, sigmas):
        # (denoised_1, denoised_2) of the last two steps, and the Brownian tree state
        return (jnp.zeros_like(x), jnp.zeros_like(x)), None

    def init_with_key(self, x, sigmas, key):
        history, _ = self.init(x, sigmas)
        return history, brownian_tree(x, sigmas, key) if self.noise == "tree" else None

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        (denoised_1, denoised_2), w_state = carry
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:  # denoising step to sigma = 0
            return denoised, ((denoised, denoised_1), w_state), denoised
        t, s = -jnp.log(sigma), -jnp.log(sigma_next)
        h = s - t
        h_eta = h * (self.eta + 1)
        x = jnp.exp(-h_eta) * x - jnp.expm1(-h_eta) * denoised
        # h_1, h_2: the previous steps' h (guarded where they do not exist yet)
        t_1 = -jnp.log(sigmas[jnp.maximum(i - 1, 0)])
        t_2 = -jnp.log(sigmas[jnp.maximum(i - 2, 0)])
        h_1 = jnp.where(i >= 1, t - t_1, h)
        h_2 = jnp.where(i >= 2, t_1 - t_2, h)
        r0, r1 = h_1 / h, h_2 / h
        phi_2 = jnp.expm1(-h_eta) / h_eta + 1
        phi_3 = phi_2 / h_eta - 0.5
        d1_0 = (denoised - denoised_1) / r0
        d1_1 = (denoised_1 - denoised_2) / r1
        # third order from the third step, second order on the second, first on the first
        d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
        d2 = (d1_0 - d1_1) / (r0 + r1)
        x = x + jnp.where(i >= 2, phi_2 * d1 - phi_3 * d2, jnp.where(i == 1, phi_2 * d1_0, 0))
        z, w_state = sde_noise(self.noise, x, w_state, sigma, sigma_next, key)
        x = x + z * (sigma_next * jnp.sqrt(-jnp.expm1(-2 * h * self.eta)) * self.s_noise)
        return x, ((denoised, denoised_1), w_state), denoised
