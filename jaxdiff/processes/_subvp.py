"""The sub-VP process of Song et al. (2021)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._base import AbstractProcess, check_positive_increasing
from ._vp import integrated_beta, t_of_integrated_beta


class SubVP(AbstractProcess):
    r"""Sub-variance-preserving process ("sub-VP SDE").

    $dx = -\tfrac12 \beta(t) x\,dt + \sqrt{\beta(t)(1 - e^{-2B(t)})}\,dW$: the VP drift with a
    smaller diffusion, so the marginal std is $1 - e^{-B(t)}$ instead of
    $\sqrt{1 - e^{-B(t)}}$. In EDM's form $s(t) = e^{-B/2}$ (as VP) and
    $\sigma(t) = (1 - s^2)/s = 2\sinh(B/2)$.

    Defaults as VP: `beta_min = 0.1`, `beta_max = 20`, `[t_min, t_max] = [1e-3, 1]`
    (Song et al. 2021, "Score-Based Generative Modeling through SDEs", eq. 29).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def __check_init__(self):
        if not (np.isfinite(float(self.beta_min)) and np.isfinite(float(self.beta_max))):
            raise ValueError(
                f"beta_min and beta_max must be finite, got {self.beta_min}, {self.beta_max}"
            )
        if float(self.beta_min) < 0 or float(self.beta_max) <= 0:
            raise ValueError(
                f"beta_min must be >= 0 and beta_max > 0, got {self.beta_min}, {self.beta_max}"
            )
        if float(self.beta_max) < float(self.beta_min):
            raise ValueError(
                f"beta_min must be <= beta_max, got beta_min={self.beta_min}, "
                f"beta_max={self.beta_max}"
            )
        check_positive_increasing("t_min", self.t_min, "t_max", self.t_max, allow_zero=True)

    def _b(self, t):
        return integrated_beta(t, self.beta_min, self.beta_max)

    def log_scale(self, t):
        return -0.5 * self._b(t)

    def scale(self, t):
        return jnp.exp(-0.5 * self._b(t))

    def sigma(self, t):
        return 2.0 * jnp.sinh(0.5 * self._b(t))

    def t_of_sigma(self, sigma):
        return t_of_integrated_beta(2.0 * jnp.arcsinh(0.5 * sigma), self.beta_min, self.beta_max)
