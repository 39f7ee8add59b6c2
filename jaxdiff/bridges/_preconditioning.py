r"""Bridge preconditioning (Zhou et al. 2024, "Denoising Diffusion Bridge Models").

With $x_t = a_t x_T + b_t x_0 + \sqrt{c_t}\,\varepsilon$, data second moments
$\sigma_0^2 = \mathbb E x_0^2$, $\sigma_T^2 = \mathbb E x_T^2$, $\sigma_{0T} = \mathbb E x_0 x_T$
and $A = a_t^2\sigma_T^2 + b_t^2\sigma_0^2 + 2a_tb_t\sigma_{0T} + c_t$ (the variance of $x_t$):

$$c_{in} = \frac1{\sqrt A},\quad c_{skip} = \frac{b_t\sigma_0^2 + a_t\sigma_{0T}}{A},\quad
c_{out} = \frac{\sqrt{a_t^2(\sigma_0^2\sigma_T^2 - \sigma_{0T}^2) + \sigma_0^2 c_t}}{\sqrt A},$$

$c_{skip} x_t$ the best linear guess of $x_0$ from $x_t$ alone and $c_{out}^2$ its error, so the
network's target has unit variance. For $a = 0,\ b = 1$ these are EDM's (Karras et al. 2022).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._checks import check_instance
from ._process import AbstractBridge, check_x_T, expand

__all__ = ["BridgePrecond", "bridge_scalings"]


def bridge_scalings(a, b, c, sigma_data_0=0.5, sigma_data_T=0.5, cov=0.0):
    """`(c_skip, c_out, c_in)` of the bridge preconditioning from the coefficients `(a, b, c)`
    (`c` a variance) and the data moments (see the module docstring)."""
    s0, sT = sigma_data_0**2, sigma_data_T**2
    big_a = a**2 * sT + b**2 * s0 + 2 * a * b * cov + c
    c_in = 1 / jnp.sqrt(big_a)
    c_skip = (b * s0 + a * cov) / big_a
    c_out = jnp.sqrt(a**2 * (s0 * sT - cov**2) + s0 * c) * c_in
    return c_skip, c_out, c_in


class BridgePrecond(eqx.Module):
    r"""A bridge denoiser from a raw network, DDBM's preconditioning:

    $$D(x_t, t, x_T) = c_{skip}(t)\,x_t + c_{out}(t)\,F(c_{in}(t)\,x_t,\ c_{noise}(t),\ x_T),$$

    with the scalings of the module docstring and $c_{noise} = \ln(t)/4$ (DDBM feeds
    $1000 \cdot \ln(t)/4$ to a U-Net whose time embedding expects that range; EDM's $\ln\sigma/4$
    is the same up to the factor). `x_T` reaches the network unscaled (DDBM concatenates it to the
    input channels).

    **Arguments:** `raw(x, c_noise, x_T)` with `c_noise` of shape `()` or `(batch,)`; `bridge`;
    `sigma_data_0`, `sigma_data_T` the RMS of `x_0` and `x_T` (0.5 for images in [-1, 1]);
    `cov` $= \mathbb E[x_0 x_T]$ (DDBM: 0, or `sigma_data**2 / 2`), with
    `cov**2 <= sigma_data_0**2 sigma_data_T**2`.
    """

    raw: Any
    bridge: AbstractBridge
    sigma_data_0: float = 0.5
    sigma_data_T: float = 0.5
    cov: float = 0.0

    def __check_init__(self):
        if not callable(self.raw):
            raise TypeError(
                f"raw must be a callable network F(x, c_noise, x_T), got {type(self.raw).__name__}"
            )
        check_instance("bridge", self.bridge, AbstractBridge, "a jaxdiff.bridges bridge (VE or VP)")
        s0, sT, cov = float(self.sigma_data_0), float(self.sigma_data_T), float(self.cov)
        if not (s0 > 0 and sT > 0 and np.isfinite(s0) and np.isfinite(sT)):
            raise ValueError(f"sigma_data_0 and sigma_data_T must be > 0, got {s0}, {sT}")
        if not cov**2 <= s0**2 * sT**2:
            raise ValueError(
                f"cov must satisfy cov**2 <= sigma_data_0**2 * sigma_data_T**2, got {cov}"
            )

    def coefficients(self, t):
        """`(c_skip, c_out, c_in, c_noise)` at time `t`."""
        t = jnp.asarray(t)
        a, b, c = self.bridge.coefficients(t)
        c_skip, c_out, c_in = bridge_scalings(
            a, b, c, self.sigma_data_0, self.sigma_data_T, self.cov
        )
        return c_skip, c_out, c_in, jnp.log(t) / 4

    def __call__(self, x_t, t, x_T=None):
        """`D(x_t, t, x_T)`; `t` a scalar or shape `(batch,)`."""
        x_T = check_x_T(x_T, like=x_t)
        c_skip, c_out, c_in, c_noise = self.coefficients(t)
        c_skip, c_out, c_in = (expand(v, x_t) for v in (c_skip, c_out, c_in))
        return c_skip * x_t + c_out * self.raw(c_in * x_t, c_noise, x_T)
