r"""Pseudoinverse-guided diffusion models (PiGDM)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._checks import check_positive
from ._guided import AbstractGuidance, shared_y


class PiGDM(AbstractGuidance):
    r"""Pseudoinverse-guided diffusion models: Song, Vahdat, Mardani & Kautz 2023,
    "Pseudoinverse-Guided Diffusion Models for Inverse Problems" (ICLR).

    PiGDM takes `p(x_0 | x_sigma)` Gaussian with mean `D(x, sigma)` and isotropic variance
    `r^2 = v sigma^2 / (v + sigma^2)` (the paper's choice: the posterior variance under a
    Gaussian prior of variance `v`, the data variance, 1 for data in [-1, 1]), so
    `p(y | x_sigma) ~ N(y; A D, r^2 A A^T + noise_std^2 I)` and, with the covariance held
    fixed,

    $$g = \Big(\frac{\partial D}{\partial x}\Big)^{\!T} A^T
          (r^2 A A^T + s_y^2 I)^{-1} (y - A D), \qquad D' = D + w\,\sigma^2 g.$$

    The solve is closed form in `A`'s singular basis (`A = U S V^T`: a mask or a downsampling
    in closed form, other operators through the SVD of their dense matrix). Exact for an
    isotropic Gaussian prior of variance `data_var` (then `D'` is the posterior's denoiser);
    biased otherwise.

    **Options:** `data_var` (> 0, default 1.0), `v` above; `scale` (> 0, default 1.0), the
    guidance weight `w` (1: the likelihood's score as derived; the paper adds the same
    gradient once per step of its 100-step DDIM grid, weighted by `sqrt(alpha_bar_t)`).

    NFE: 1 denoiser evaluation and 1 vector-Jacobian product per denoiser call (the
    sampler's NFE per step).
    """

    data_var: float = 1.0
    scale: float = 1.0

    def __check_init__(self):
        check_positive("data_var", self.data_var)
        check_positive("scale", self.scale)

    def guide(self, denoiser, observation, spectrum, x, sigma):
        denoised, pullback = jax.vjp(lambda z: denoiser(z, sigma), x)
        r2 = self.data_var * sigma**2 / (self.data_var + sigma**2)
        s, keep = spectrum.values, spectrum.keep
        noise_var = observation.noise_std**2
        # U^T (y - A D), then A^T (r^2 A A^T + s^2 I)^{-1} (y - A D)
        # = V [S / (r^2 S^2 + s^2)] U^T (y - A D)
        u_residual = spectrum.u_t(shared_y(observation, x)) - s * spectrum.project(denoised)
        coef = jnp.where(keep, s / jnp.where(keep, r2 * s**2 + noise_var, 1.0), 0.0)
        (g,) = pullback(spectrum.lift(coef * u_residual))
        return denoised + (self.scale * sigma**2) * g
