"""The cosine-schedule VP process of Nichol & Dhariwal (2021)."""

from __future__ import annotations

import math

import jax.numpy as jnp

from .._checks import check_nonnegative, check_number, check_range, is_traced
from ._base import AbstractProcess


class CosineVP(AbstractProcess):
    r"""VP process with the cosine schedule of improved DDPM.

    $\bar\alpha(t) = \cos^2(\phi(t)) / \cos^2(\phi(0))$ with
    $\phi(t) = \frac{t + s}{1 + s}\frac{\pi}{2}$; $s(t) = \sqrt{\bar\alpha(t)}$,
    $\sigma(t) = \sqrt{1/\bar\alpha(t) - 1}$, computed without cancellation as
    $\sqrt{\sin(\phi - \phi_0)\sin(\phi + \phi_0)} / \cos\phi$.

    Defaults: `s = 0.008` (Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic
    Models"), `t_min = 1e-3`, `t_max = 0.9946` (DPM-Solver's choice, where sigma is about 119;
    at t = 1 sigma is infinite).
    """

    s: float = 0.008
    t_min: float = 1e-3
    t_max: float = 0.9946

    def __check_init__(self):
        s = check_number("s", self.s)
        if s is not None and not 0 <= s < 1:
            raise ValueError(f"s must lie in [0, 1), got {s}")
        check_range("t_min", self.t_min, "t_max", self.t_max, allow_zero=True)
        if not is_traced(self.t_max) and float(self.t_max) >= 1:
            raise ValueError(f"t_max must be < 1 (sigma is infinite at t = 1), got {self.t_max}")

    def _phi0(self):
        return self.s / (1 + self.s) * (math.pi / 2)

    def _cos_phi(self, t):
        # cos(phi(t)) = sin(pi/2 - phi(t)), accurate near t = 1
        return jnp.sin((1 - t) / (1 + self.s) * (math.pi / 2))

    def log_scale(self, t):
        return jnp.log(self._cos_phi(t)) - jnp.log(jnp.cos(self._phi0()))

    def scale(self, t):
        return self._cos_phi(t) / jnp.cos(self._phi0())

    def sigma_sq(self, t):
        phi0 = self._phi0()
        phi = (t + self.s) / (1 + self.s) * (math.pi / 2)
        dphi = t / (1 + self.s) * (math.pi / 2)
        return jnp.sin(dphi) * jnp.sin(phi + phi0) / self._cos_phi(t) ** 2

    def sigma(self, t):
        return jnp.sqrt(self.sigma_sq(t))

    def t_of_sigma(self, sigma):
        check_nonnegative("sigma", sigma)
        phi0 = self._phi0()
        # cos(phi) = cos(phi0) / sqrt(1 + sigma^2)
        #   =>  phi = atan2(sqrt(sigma^2 + sin^2 phi0), cos phi0)
        phi = jnp.arctan2(jnp.sqrt(sigma**2 + math.sin(phi0) ** 2), math.cos(phi0))
        return phi * (1 + self.s) * (2 / math.pi) - self.s
