"""DPM-Solver++(2M) SDE."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._fixed_grid import StepNoise
from ._base import AbstractSampler, check_eta_s_noise
from ._noise import brownian_tree, check_noise, normal_increment


def sde_noise(noise, x, w_state, sigma, sigma_next, key):
    """A standard normal draw for the step `sigma -> sigma_next`: from the step's key (or drawn
    already, a `StepNoise`), or the normalized increment of the call's Brownian tree
    (`w_state = (tree, W(sigma))`)."""
    if noise == "tree":
        tree, w = w_state
        w_next = tree.evaluate(sigma_next)
        return normal_increment(w, w_next, sigma, sigma_next), (tree, w_next)
    if isinstance(key, StepNoise):
        return key.draws, w_state
    return jr.normal(key, x.shape, x.dtype), w_state


class DPMpp2MSDE(AbstractSampler):
    r"""DPM-Solver++(2M) SDE: the second-order multistep solver of the reverse SDE in
    `t = -log sigma` with the data prediction; `h = t_next - t`, `eta` interpolates between the
    probability-flow ODE (`eta = 0`, DPM-Solver++(2M)) and the reverse SDE (`eta = 1`).

    Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
    Models" (Sec. 4.2 and App. B, the SDE variant); k-diffusion's `sample_dpmpp_2m_sde`.
    Order 2 on the ODE (`eta = 0`); first-order on the first step; 1 denoiser evaluation
    per step (NFE = steps); the last step, to sigma = 0, returns the denoiser output.

    **Options:** `eta`, `s_noise` (multiplies the noise), `solver_type` (`"midpoint"` or
    `"heun"`, the second-order correction). `noise="step"` draws each step's noise from the
    step's key; `noise="tree"` takes the normalized increments
    `(W(sigma) - W(sigma_next)) / sqrt(sigma - sigma_next)` of one
    `diffrax.VirtualBrownianTree` per call over `[sigma_min, sigma_max]` of the grid (as
    k-diffusion's `BrownianTreeNoiseSampler`), so that refined grids with the same key
    converge to one solution.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the
    deterministic first step `x_1 = D(x, inf) + sigma_1 x` (the limit of its step without
    the fresh noise; equal in distribution given the exact denoiser, whose `D(x, inf)` is
    the data mean), then runs it from `sigma_1`.
    """

    eta: float = 1.0
    s_noise: float = 1.0
    solver_type: str = eqx.field(default="midpoint", static=True)
    noise: str = eqx.field(default="step", static=True)

    stochastic: ClassVar[bool] = True

    bulk_noise: ClassVar[bool] = True

    def step_noise(self, key, x):
        # noise="tree" draws nothing from the step's key
        return () if self.noise == "tree" else jr.normal(key, x.shape, x.dtype)

    def __check_init__(self):
        check_eta_s_noise(self.eta, self.s_noise)
        if self.solver_type not in ("midpoint", "heun"):
            raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {self.solver_type!r}")
        check_noise(self.noise)

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def init(self, x, sigmas):
        return jnp.zeros_like(x), None  # (old_denoised, Brownian tree state)

    def init_with_key(self, x, sigmas, key):
        w_state = brownian_tree(x, sigmas, key) if self.noise == "tree" else None
        return jnp.zeros_like(x), w_state

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        old_denoised, w_state = carry
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:  # denoising step to sigma = 0
            return denoised, (denoised, w_state), denoised
        t, s = -jnp.log(sigma), -jnp.log(sigma_next)
        h = s - t
        eta_h = self.eta * h
        x = sigma_next / sigma * jnp.exp(-eta_h) * x - jnp.expm1(-h - eta_h) * denoised
        # second-order correction from the previous step (none on the first step)
        h_last = t - (-jnp.log(sigmas[jnp.maximum(i - 1, 0)]))
        r_inv = h / jnp.where(i > 0, h_last, h)
        if self.solver_type == "heun":
            coeff = -jnp.expm1(-h - eta_h) / (-h - eta_h) + 1
        else:
            coeff = -0.5 * jnp.expm1(-h - eta_h)
        coeff = jnp.where(i > 0, coeff * r_inv, 0)
        x = x + coeff * (denoised - old_denoised)
        z, w_state = sde_noise(self.noise, x, w_state, sigma, sigma_next, key)
        x = x + z * (sigma_next * jnp.sqrt(-jnp.expm1(-2 * eta_h)) * self.s_noise)
        return x, (denoised, w_state), denoised
