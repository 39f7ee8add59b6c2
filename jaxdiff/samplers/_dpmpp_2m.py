"""DPM-Solver++(2M): the second-order multistep solver in data prediction."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ._base import AbstractSampler


class DPMpp2M(AbstractSampler):
    r"""DPM-Solver++(2M): with $t = -\log\sigma$, $h = t_{i+1} - t_i$ and
    $r = (t_i - t_{i-1}) / h$,

    $$x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i} x_i - (e^{-h} - 1)
    \Big[\big(1 + \tfrac{1}{2r}\big) D_i - \tfrac{1}{2r} D_{i-1}\Big].$$

    Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
    Models", Alg. 2; k-diffusion's `sample_dpmpp_2m`. With $d_1 = (D_i - D_{i-1}) / r$ it is
    $x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i} x_i - (e^{-h} - 1) D_i - \tfrac12 (e^{-h} - 1) d_1$,
    the "midpoint" form: the official code's `solver_type="dpmsolver"` and diffusers'
    `DPMSolverMultistepScheduler(solver_order=2)` with its default `solver_type="midpoint"`,
    which equals this sampler on the same grid (to rounding in float64). diffusers'
    `solver_type="heun"` (the official `"taylor"`: $+\varphi_2 d_1$ with
    $\varphi_2 = (e^{-h} - 1)/h + 1$ instead of $-\tfrac12 (e^{-h} - 1) d_1$) is a different
    second-order method, which `DPMpp3M(solver_type="heun")` uses. The first step (no history)
    is first order (DDIM); so is the last step, to sigma = 0, where the update is `x -> D` (the
    second-order term diverges as sigma_next -> 0, so every implementation takes it first order).
    Order 2; 1 denoiser evaluation per step (NFE = steps).

    `lower_order_final` follows DPM-Solver++ / diffusers (`lower_order_final` with fewer than 15
    steps: first order at the last step, at most second order at the one before). For 2M on a
    grid ending at 0 both already hold, so the option changes nothing here; it is kept for
    symmetry with `DPMpp3M`. Both settings equal k-diffusion.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the exact
    limit of its first step, `x_1 = D(x, inf) + sigma_1 x`, then runs it from `sigma_1`.
    """

    lower_order_final: bool = eqx.field(default=True, static=True)

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def init(self, x, sigmas):
        del sigmas
        return jnp.zeros_like(x)  # D at the previous step

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:  # first order to sigma = 0: exactly x -> D
            return denoised, denoised, denoised
        t, t_next = -jnp.log(sigma), -jnp.log(sigma_next)
        h = t_next - t
        h_last = t + jnp.log(sigmas[jnp.maximum(i - 1, 0)])
        r = jnp.where(i > 0, h_last / h, 1)
        c = jnp.where(i > 0, 1 / (2 * r), 0)  # 0: first order at the first step
        denoised_d = denoised + c * (denoised - carry)
        x_next = (sigma_next / sigma) * x - jnp.expm1(-h) * denoised_d
        return x_next, denoised, denoised
