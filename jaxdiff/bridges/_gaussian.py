r"""The exact oracle for bridges: jointly Gaussian pairs $(x_0, x_T)$.

Per dimension $j$ (dimensions independent), $(x_0, x_T)$ is Gaussian with means
$(\mu_0, \mu_T)$, variances $(v_0, v_T)$ and covariance $\rho$. Then

- $p(x_0 \mid x_T) = \mathcal N(m, v)$ with $m = \mu_0 + \frac{\rho}{v_T}(x_T - \mu_T)$,
  $v = v_0 - \rho^2/v_T$ (the target of a bridge sampler);
- the bridge gives $x_t = a_t x_T + b_t x_0 + \sqrt{c_t}\,\varepsilon$, a linear Gaussian
  observation of $x_0$ given $x_T$, so $x_0 \mid x_t, x_T$ is Gaussian and the exact bridge
  denoiser is

$$\mathbb E[x_0 \mid x_t, x_T] = m + k_t\,(x_t - a_t x_T - b_t m),\qquad
k_t = \frac{v\,b_t}{b_t^2 v + c_t} = \frac{v\,\alpha_t}{b_t\,\alpha_t v + \sigma_t^2},$$

using $b_t/c_t = \alpha_t/\sigma_t^2$, a form that stays finite at $t = T$ ($b = c = 0$, where
$x_t = x_T$ and the denoiser returns $m$) and at $t = 0$ ($k = 1$). The posterior variance is
$v\,c_t/(b_t^2 v + c_t) = v\,\sigma_t^2/(b_t\alpha_t v + \sigma_t^2)$.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import check_instance
from ._process import AbstractBridge, check_x_T, expand

__all__ = ["GaussianBridgeDenoiser", "GaussianPair"]


class GaussianPair(eqx.Module):
    r"""Jointly Gaussian $(x_0, x_T)$, independent across dimensions (shape `(d,)` parameters,
    or scalars for `d` = 1 or broadcasting): means `mean0`, `meanT`, variances `var0`, `varT`,
    covariance `cov` (with `cov**2 < var0 * varT`). Samples have shape `(n, d)`."""

    mean0: jax.Array
    meanT: jax.Array
    var0: jax.Array
    varT: jax.Array
    cov: jax.Array

    def __init__(self, mean0, meanT, var0, varT, cov=0.0):
        arrays = [jnp.asarray(v) for v in (mean0, meanT, var0, varT, cov)]
        names = ("mean0", "meanT", "var0", "varT", "cov")
        for name, v in zip(names, arrays, strict=True):
            if not jnp.issubdtype(v.dtype, jnp.floating):
                arrays[names.index(name)] = v.astype(jnp.result_type(float))
            if v.ndim > 1:
                raise ValueError(f"{name} must be a scalar or shape (d,), got shape {v.shape}")
        try:
            shape = jnp.broadcast_shapes(*(v.shape for v in arrays))
        except ValueError as e:
            raise ValueError(f"GaussianPair parameters must broadcast to a shape (d,): {e}") from e
        arrays = [jnp.broadcast_to(v, shape or (1,)) for v in arrays]  # scalars: d = 1
        var0, varT, cov = (np.asarray(v) for v in arrays[2:])
        if not (np.all(var0 > 0) and np.all(varT > 0)):
            raise ValueError(f"var0 and varT must be > 0, got {var0}, {varT}")
        if not np.all(cov**2 < var0 * varT):
            raise ValueError(
                f"cov must satisfy cov**2 < var0 * varT (a non-degenerate p(x_0 | x_T)), got {cov}"
            )
        self.mean0, self.meanT, self.var0, self.varT, self.cov = arrays

    @property
    def dim(self) -> int:
        return self.mean0.shape[0]

    def sample(self, key, n: int):
        """`n` pairs `(x0, x_T)`, each of shape `(n, d)`."""
        shape = (int(n), *self.mean0.shape)
        k0, kT = jr.split(key)
        dtype = self.mean0.dtype
        zT = jr.normal(kT, shape, dtype)
        z0 = jr.normal(k0, shape, dtype)
        x_T = self.meanT + jnp.sqrt(self.varT) * zT
        mean, var = self.conditional(x_T)
        return mean + jnp.sqrt(var) * z0, x_T

    def sample_T(self, key, n: int):
        """`n` endpoints from the marginal of `x_T`, shape `(n, d)`."""
        shape = (int(n), *self.meanT.shape)
        return self.meanT + jnp.sqrt(self.varT) * jr.normal(key, shape, self.meanT.dtype)

    def conditional(self, x_T):
        r"""`(mean, var)` of $p(x_0 \mid x_T)$: mean shaped like `x_T`, var of shape `(d,)`."""
        x_T = check_x_T(x_T)
        mean = self.mean0 + self.cov / self.varT * (x_T - self.meanT)
        return mean, self.var0 - self.cov**2 / self.varT

    def denoiser(self, bridge: AbstractBridge) -> GaussianBridgeDenoiser:
        r"""The exact bridge denoiser $D(x_t, t, x_T) = \mathbb E[x_0 \mid x_t, x_T]$."""
        check_instance("bridge", bridge, AbstractBridge, "a jaxdiff.bridges bridge (VE or VP)")
        return GaussianBridgeDenoiser(self, bridge)

    def posterior(self, x_t, t, x_T, bridge: AbstractBridge):
        r"""`(mean, var)` of $x_0 \mid x_t, x_T$ under `bridge` (see the module docstring)."""
        x_T = check_x_T(x_T, like=x_t)
        m, v = self.conditional(x_T)
        a, b, _ = (expand(c, x_t) for c in bridge.coefficients(t))
        alpha, s2 = expand(bridge.alpha(t), x_t), expand(bridge.sigma_sq(t), x_t)
        den = b * alpha * v + s2
        return m + v * alpha / den * (x_t - a * x_T - b * m), v * s2 / den


class GaussianBridgeDenoiser(eqx.Module):
    """The exact bridge denoiser of a `GaussianPair` under a bridge:
    `denoiser(x_t, t, x_T) -> E[x_0 | x_t, x_T]`, `t` a scalar or shape `(batch,)`."""

    pair: GaussianPair
    bridge: AbstractBridge

    def __call__(self, x_t, t, x_T=None):
        return self.pair.posterior(x_t, t, x_T, self.bridge)[0]
