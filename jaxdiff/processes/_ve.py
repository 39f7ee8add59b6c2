"""The variance-exploding (VE) process of Song et al. (2021)."""

from __future__ import annotations

import jax.numpy as jnp

from .._checks import check_nonnegative, check_range
from ._base import AbstractProcess


class VE(AbstractProcess):
    r"""Variance-exploding process ("VE SDE"; NCSN in continuous time).

    $s(t) = 1$, $\sigma(t) = \sigma_{min} (\sigma_{max}/\sigma_{min})^t$ for $t \in [0, 1]$;
    $dx = \sigma(t)\sqrt{2 \ln(\sigma_{max}/\sigma_{min})}\,dW$.

    Defaults: `sigma_min = 0.01`, `sigma_max = 50` (Song et al. 2021, "Score-Based Generative
    Modeling through SDEs"; CIFAR-10 setting), `[t_min, t_max] = [0, 1]`.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    t_min: float = 0.0
    t_max: float = 1.0

    def __check_init__(self):
        check_range("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)
        check_range("t_min", self.t_min, "t_max", self.t_max, allow_zero=True)

    def scale(self, t):
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def log_scale(self, t):
        return jnp.zeros_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def sigma(self, t):
        return self.sigma_min * jnp.exp(t * jnp.log(self.sigma_max / self.sigma_min))

    def t_of_sigma(self, sigma):
        check_nonnegative("sigma", sigma)
        return jnp.log(sigma / self.sigma_min) / jnp.log(self.sigma_max / self.sigma_min)
