"""The sub-VP process of Song et al. (2021)."""

from __future__ import annotations

import jax.numpy as jnp

from .._checks import check_nonnegative
from ._vp import AbstractLinearBeta, t_of_integrated_beta


class SubVP(AbstractLinearBeta):
    r"""Sub-variance-preserving process ("sub-VP SDE").

    $dx = -\tfrac12 \beta(t) x\,dt + \sqrt{\beta(t)(1 - e^{-2B(t)})}\,dW$: the VP drift with a
    smaller diffusion, so the marginal std is $1 - e^{-B(t)}$ instead of
    $\sqrt{1 - e^{-B(t)}}$. In EDM's form $s(t) = e^{-B/2}$ (as VP) and
    $\sigma(t) = (1 - s^2)/s = 2\sinh(B/2)$.

    Defaults as VP: `beta_min = 0.1`, `beta_max = 20`, `[t_min, t_max] = [1e-3, 1]`
    (Song et al. 2021, "Score-Based Generative Modeling through SDEs", eq. 29).
    """

    def sigma(self, t):
        return 2.0 * jnp.sinh(0.5 * self._b(t))

    def t_of_sigma(self, sigma):
        check_nonnegative("sigma", sigma)
        return t_of_integrated_beta(2.0 * jnp.arcsinh(0.5 * sigma), self.beta_min, self.beta_max)
