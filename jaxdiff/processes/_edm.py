"""EDM's process: time is the noise level (Karras et al. 2022)."""

from __future__ import annotations

import jax.numpy as jnp

from .._checks import check_nonnegative, check_range
from ._base import AbstractProcess


class EDM(AbstractProcess):
    r"""EDM's process: $s(t) = 1$, $\sigma(t) = t$, so $dx = \sqrt{2t}\,dW$ and the
    probability-flow ODE is $dx/d\sigma = (x - D(x; \sigma))/\sigma$.

    Defaults: `sigma_min = 0.002`, `sigma_max = 80` (Karras et al. 2022, "Elucidating the
    Design Space of Diffusion-Based Generative Models"); `t_min = sigma_min`,
    `t_max = sigma_max`.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __check_init__(self):
        check_range("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)

    @property
    def t_min(self):
        return self.sigma_min

    @property
    def t_max(self):
        return self.sigma_max

    def scale(self, t):
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def log_scale(self, t):
        return jnp.zeros_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def sigma(self, t):
        return jnp.asarray(t, dtype=jnp.result_type(t, float))

    def sigma_sq(self, t):
        return jnp.asarray(t, dtype=jnp.result_type(t, float)) ** 2

    def t_of_sigma(self, sigma):
        check_nonnegative("sigma", sigma)
        return jnp.asarray(sigma, dtype=jnp.result_type(sigma, float))
