"""The variance-preserving (VP) process of Song et al. (2021)."""

from __future__ import annotations

import jax.numpy as jnp

from .._checks import check_nonnegative, check_positive, check_range, is_traced
from ._base import AbstractProcess


def integrated_beta(t, beta_min, beta_max):
    """`B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2` for a linear beta."""
    return beta_min * t + 0.5 * (beta_max - beta_min) * t**2


def t_of_integrated_beta(b, beta_min, beta_max):
    """Inverse of `integrated_beta`: the positive root, in a cancellation-free form."""
    beta_d = beta_max - beta_min
    return 2.0 * b / (beta_min + jnp.sqrt(beta_min**2 + 2.0 * beta_d * b))


class AbstractLinearBeta(AbstractProcess):
    """A process with the VP drift $-\tfrac12\beta(t) x$ for the linear
    $\beta(t) = \beta_{min} + t(\beta_{max} - \beta_{min})$: $s(t) = e^{-B(t)/2}$
    (VP and sub-VP differ only in $\\sigma(t)$)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def __check_init__(self):
        check_positive("beta_min", self.beta_min, allow_zero=True)
        check_positive("beta_max", self.beta_max)
        if not is_traced((self.beta_min, self.beta_max)) and float(self.beta_max) < float(
            self.beta_min
        ):
            raise ValueError(
                f"beta_min must be <= beta_max, got beta_min={self.beta_min}, "
                f"beta_max={self.beta_max}"
            )
        check_range("t_min", self.t_min, "t_max", self.t_max, allow_zero=True)

    def _b(self, t):
        return integrated_beta(t, self.beta_min, self.beta_max)

    def log_scale(self, t):
        return -0.5 * self._b(t)

    def scale(self, t):
        return jnp.exp(-0.5 * self._b(t))


class VP(AbstractLinearBeta):
    r"""Variance-preserving process ("VP SDE"; DDPM in continuous time).

    $dx = -\tfrac12 \beta(t) x\,dt + \sqrt{\beta(t)}\,dW$ with
    $\beta(t) = \beta_{min} + t(\beta_{max} - \beta_{min})$; in EDM's form
    $s(t) = e^{-B(t)/2}$, $\sigma(t) = \sqrt{e^{B(t)} - 1}$, $B = \int_0^t \beta$.

    Defaults: `beta_min = 0.1`, `beta_max = 20` (Song et al. 2021, "Score-Based Generative
    Modeling through Stochastic Differential Equations"; EDM's beta_d = 19.9), times in
    `[t_min, t_max] = [1e-3, 1]`.
    """

    def sigma_sq(self, t):
        return jnp.expm1(self._b(t))

    def sigma(self, t):
        return jnp.sqrt(jnp.expm1(self._b(t)))

    def t_of_sigma(self, sigma):
        check_nonnegative("sigma", sigma)
        return t_of_integrated_beta(jnp.log1p(sigma**2), self.beta_min, self.beta_max)
