"""DEIS (tAB): Adams–Bashforth with variable-step coefficients in sigma."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ._base import AbstractSlopeMultistep, to_d
from ._lms import lms_coefficients


class DEIS(AbstractSlopeMultistep):
    r"""DEIS, the tAB variant in sigma-space: for $dx/d\sigma = \epsilon(x, \sigma) =
    (x - D(x;\sigma))/\sigma$ (the VE/EDM probability-flow ODE, whose exponential integrator
    has no linear part in this parametrization), $\epsilon$ is extrapolated by the polynomial
    in $\sigma$ through the last `order` evaluations and integrated exactly over
    $[\sigma_i, \sigma_{i+1}]$: Adams–Bashforth with variable-step coefficients
    $C_{ij} = \int_{\sigma_i}^{\sigma_{i+1}} L_j(\sigma)\,d\sigma$ (Lagrange basis $L_j$),
    computed inside the step by Gauss–Legendre quadrature (exact for these polynomials).
    In this parametrization it is `LMS` with an Euler last step, and shares its coefficients.

    Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator"
    (ICLR 2023), tAB-DEIS with t = sigma. Order `order` (default 3); the first steps use the
    orders 1, 2, ... (warm start, no extra evaluations). The last step, to sigma = 0, is an
    Euler step (`x -> D(x; sigma)`), as in DPM-Solver++ and UniPC. 1 denoiser evaluation per
    step (NFE = steps).

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the exact
    limit of its first step, `x_1 = D(x, inf) + sigma_1 x`, then runs it from `sigma_1`.
    """

    order: int = eqx.field(default=3, static=True)

    def __check_init__(self):
        if not (isinstance(self.order, int) and 1 <= self.order <= 6):
            raise ValueError(f"DEIS order must be an int in 1 .. 6, got {self.order}")

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        del key
        sigma = sigmas[i]
        denoised = denoise(x, sigma)
        if final:
            return denoised, carry, denoised  # Euler to sigma = 0
        # the same exact Lagrange integrals as LMS: orders 1, 2, ... while warming up
        ds = jnp.concatenate([to_d(x, sigma, denoised)[None], carry])
        coeffs = lms_coefficients(sigmas, i, self.order, jnp.minimum(i + 1, self.order))
        x_next = x + jnp.tensordot(coeffs.astype(x.dtype), ds, axes=1)
        carry = ds[:-1]
        return x_next, carry, denoised
