"""DPM-Solver++ (stochastic), k-diffusion's `sample_dpmpp_sde`."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from ._base import AbstractSampler, ancestral_step, check_eta_s_noise, to_d, two_stage_nfe
from ._noise import brownian_tree, check_noise, normal_increment


class DPMppSDE(AbstractSampler):
    r"""DPM-Solver++ (stochastic): a two-stage single-step solver in `t = -log sigma` with the
    data prediction, each stage an ancestral step (to `sigma_mid = sigma^(1-r) sigma_next^r`,
    then to `sigma_next` from the combination `(1 - 1/(2r)) D + 1/(2r) D_mid`).

    Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
    Models" (the second-order single-step solver), made stochastic by Katherine Crowson in
    k-diffusion's `sample_dpmpp_sde`. Weak order 1 (the noise); 2 denoiser evaluations per
    step, 1 on the last step to sigma = 0 (an Euler step; NFE = 2 steps - 1).

    The two stages' noises are the normalized increments of ONE Brownian path `W` in the time
    variable sigma, over `[sigma_mid, sigma]` and `[sigma_next, sigma]` (as k-diffusion's
    `BrownianTreeNoiseSampler`); they are correlated, not independent.

    **Options:** `eta` scales the noise (`0`: deterministic), `s_noise` multiplies it, `r` is
    the intermediate point in `t`. `noise="step"` draws each step's Brownian increments from
    the step's key; `noise="tree"` takes them from one `diffrax.VirtualBrownianTree` per call
    over `[sigma_min, sigma_max]` of the grid, so that refined grids with the same key
    converge to one solution (at the cost of a tree search per noise draw).

    From a grid that starts at `sigma = inf` (pure noise) this sampler's own first step has no
    finite limit: `jaxdiff.sample` takes a first-order first step in its place
    (`x_1 = D(x, inf) + sigma_1 x`), then runs it from `sigma_1`.
    """

    eta: float = 1.0
    s_noise: float = 1.0
    r: float = 0.5
    noise: str = eqx.field(default="step", static=True)

    stochastic: ClassVar[bool] = True

    bulk_noise: ClassVar[bool] = True

    def step_noise(self, key, x):
        # noise="step": two independent normals, the sub-steps' increments; "tree": none
        if self.noise == "tree":
            return ()
        key_1, key_2 = jr.split(key)
        return jr.normal(key_1, x.shape, x.dtype), jr.normal(key_2, x.shape, x.dtype)

    def __check_init__(self):
        check_eta_s_noise(self.eta, self.s_noise)
        if isinstance(self.r, int | float) and not 0 < self.r <= 1:
            raise ValueError(f"r must be in (0, 1], got {self.r!r}")
        check_noise(self.noise)

    def nfe(self, num_steps: int) -> int:
        return two_stage_nfe(num_steps)

    def init_with_key(self, x, sigmas, key):
        return brownian_tree(x, sigmas, key) if self.noise == "tree" else None

    def _noises(self, x, carry, sigma, sigma_mid, sigma_next, key):
        """The normalized increments of W over [sigma_mid, sigma] and [sigma_next, sigma]."""
        if self.noise == "tree":
            tree, w = carry
            w_mid, w_next = tree.evaluate(sigma_mid), tree.evaluate(sigma_next)
            z_1 = normal_increment(w, w_mid, sigma, sigma_mid)
            z_2 = normal_increment(w, w_next, sigma, sigma_next)
            return z_1, z_2, (tree, w_next)
        # the increments over [sigma_mid, sigma] and [sigma_next, sigma_mid], independent
        u_1, u_2 = self.draws(key, x)
        dw = jnp.sqrt(sigma - sigma_mid) * u_1 + jnp.sqrt(sigma_mid - sigma_next) * u_2
        return u_1, dw / jnp.sqrt(sigma - sigma_next), carry

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:  # Euler to sigma = 0: exactly x -> denoised
            return x + to_d(x, sigma, denoised) * (sigma_next - sigma), carry, denoised
        t, t_next = -jnp.log(sigma), -jnp.log(sigma_next)
        h = t_next - t
        s = t + h * self.r
        sigma_mid = jnp.exp(-s)
        fac = 1 / (2 * self.r)
        z_1, z_2, carry = self._noises(x, carry, sigma, sigma_mid, sigma_next, key)
        # stage 1: ancestral step to sigma_mid
        sigma_down, sigma_up = ancestral_step(sigma, sigma_mid, self.eta)
        log_ratio = jnp.log(sigma_down) - jnp.log(sigma)  # t - s_, -inf where sigma_down = 0
        x_2 = jnp.exp(log_ratio) * x - jnp.expm1(log_ratio) * denoised
        x_2 = x_2 + z_1 * (self.s_noise * sigma_up)
        denoised_2 = denoise(x_2, sigma_mid)
        # stage 2: ancestral step to sigma_next
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, self.eta)
        log_ratio = jnp.log(sigma_down) - jnp.log(sigma)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = jnp.exp(log_ratio) * x - jnp.expm1(log_ratio) * denoised_d
        x = x + z_2 * (self.s_noise * sigma_up)
        return x, carry, denoised
