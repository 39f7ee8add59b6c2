r"""Diffusion bridge processes pinned at `x_T` (DDBM: Zhou et al. 2024).

A forward process $dx = f(t) x\,dt + g(t)\,dW$ with marginals $x_t = \alpha_t x_0 + \sigma_t
\varepsilon$ ($\mathrm{SNR}_t = \alpha_t^2/\sigma_t^2$), conditioned (Doob's h-transform) to end
at a given $x_T$, has the Gaussian bridge marginals

$$q(x_t \mid x_0, x_T) = \mathcal N(a_t x_T + b_t x_0,\ c_t I),\quad
a_t = \frac{\mathrm{SNR}_T}{\mathrm{SNR}_t}\frac{\alpha_t}{\alpha_T},\
b_t = \alpha_t\Big(1 - \frac{\mathrm{SNR}_T}{\mathrm{SNR}_t}\Big),\
c_t = \sigma_t^2\Big(1 - \frac{\mathrm{SNR}_T}{\mathrm{SNR}_t}\Big)$$

(`c_t` a variance). Zhou, Lou, Li & Ermon, "Denoising Diffusion Bridge Models", ICLR 2024.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import check_float_array, check_positive

__all__ = ["VE", "VP", "AbstractBridge"]


def expand(t, x):
    """`t` (a scalar or one value per sample, shape `(batch,)`) shaped to broadcast against a
    batch-first `x`: `()` stays, `(B,)` becomes `(B, 1, ..., 1)`."""
    t = jnp.asarray(t)
    if t.ndim == 0:
        return t
    x_shape = jnp.shape(x)
    if t.ndim != 1 or not x_shape or x_shape[0] != t.shape[0]:
        raise ValueError(
            f"t must be a scalar or have shape (batch,) matching the leading axis of x: "
            f"t has shape {t.shape}, x has shape {x_shape}"
        )
    return jnp.reshape(t, t.shape + (1,) * (len(x_shape) - 1))


def check_x_T(x_T, *, like=None, name: str = "x_T") -> jax.Array:
    """Boundary check of the bridge's pinned endpoint `x_T`: present, floating, batch-first,
    and (given `like`) shaped like it."""
    if x_T is None:
        raise ValueError(
            f"{name} is required: a diffusion bridge is pinned at its endpoint x_T "
            f"(pass the conditioning sample, shape (batch, ...))"
        )
    if not isinstance(x_T, jax.Array | np.ndarray | float | int | list | tuple):
        raise TypeError(f"{name} must be an array of shape (batch, ...), got {type(x_T).__name__}")
    x_T = check_float_array(name, x_T, batch=True)
    if like is not None and x_T.shape != jnp.shape(like):
        raise ValueError(
            f"{name} must have the shape of x {jnp.shape(like)} (one endpoint per sample), "
            f"got {x_T.shape}"
        )
    return x_T


class AbstractBridge(eqx.Module):
    r"""A diffusion bridge on $[0, T]$ pinned at $x_T$ (Zhou et al. 2024, "Denoising Diffusion
    Bridge Models").

    A concrete bridge gives its forward process through `log_alpha(t)`, `sigma_sq(t)`,
    `log_snr(t)`, the SNR ratio `snr_ratio(t)` $= \mathrm{SNR}_T/\mathrm{SNR}_t$ and its
    complement `snr_gap(t)` $= 1 - \mathrm{SNR}_T/\mathrm{SNR}_t$ (both computed without
    cancellation near $T$ and $0$), the drift coefficient `f(t)` $= \frac{d}{dt}\log\alpha_t$ and
    the squared diffusion `g2(t)`, and its end time `T` (a field or a property) and default
    `t_min` (the last positive time of the default sampling grid). Everything else follows
    here. Times are scalars or one per sample (shape `(batch,)`, broadcast against batch-first
    `x`).
    """

    # `T`, the end time where the bridge is pinned at x_T: a field or a property of a subclass
    t_min: eqx.AbstractVar[float]  # the default last positive time of a sampling grid

    @abc.abstractmethod
    def log_alpha(self, t): ...

    @abc.abstractmethod
    def sigma_sq(self, t): ...

    @abc.abstractmethod
    def log_snr(self, t): ...

    @abc.abstractmethod
    def snr_ratio(self, t):
        r"""$\mathrm{SNR}_T/\mathrm{SNR}_t \in [0, 1]$."""

    @abc.abstractmethod
    def snr_gap(self, t):
        r"""$1 - \mathrm{SNR}_T/\mathrm{SNR}_t \in [0, 1]$."""

    @abc.abstractmethod
    def f(self, t):
        r"""Drift coefficient of the forward SDE, $\frac{d}{dt}\log\alpha_t$."""

    @abc.abstractmethod
    def g2(self, t):
        r"""Squared diffusion coefficient of the forward SDE, $\frac{d\sigma_t^2}{dt} - 2 f
        \sigma_t^2$."""

    # -- derived ------------------------------------------------------------------------------
    def alpha(self, t):
        return jnp.exp(self.log_alpha(t))

    def sigma(self, t):
        return jnp.sqrt(self.sigma_sq(t))

    def snr(self, t):
        return jnp.exp(self.log_snr(t))

    def coefficients(self, t):
        r"""`(a_t, b_t, c_t)` of $q(x_t \mid x_0, x_T) = \mathcal N(a_t x_T + b_t x_0, c_t I)$,
        `c_t` a variance: $a_T = 1,\ b_T = c_T = 0$ and $a_0 = 0,\ b_0 = 1,\ c_0 = 0$."""
        t = jnp.asarray(t)
        gap = self.snr_gap(t)
        a = self.snr_ratio(t) * jnp.exp(self.log_alpha(t) - self.log_alpha(self.T))
        return a, self.alpha(t) * gap, self.sigma_sq(t) * gap

    def perturb(self, x0, x_T, t, key):
        r"""A sample of $q(x_t \mid x_0, x_T)$: $a_t x_T + b_t x_0 + \sqrt{c_t}\,\varepsilon$."""
        x_T = check_x_T(x_T, like=x0)
        a, b, c = (expand(v, x0) for v in self.coefficients(t))
        eps = jr.normal(key, jnp.shape(x0), jnp.result_type(x0))
        return a * x_T + b * x0 + jnp.sqrt(c) * eps

    def h_transform(self, x, t, x_T):
        r"""$\nabla_{x_t}\log p(x_T \mid x_t) = \frac{(\alpha_t/\alpha_T) x_T - x_t}
        {\sigma_t^2(\mathrm{SNR}_t/\mathrm{SNR}_T - 1)} = \frac{a_t x_T - (\mathrm{SNR}_T/
        \mathrm{SNR}_t)\,x_t}{c_t}$, the drift added by Doob's h-transform (divided by $g^2$);
        VE: $(x_T - x_t)/(T^2 - t^2)$. Singular at $t = T$.

        Near $t = 0$ ($c_t \to 0$ and $\mathrm{SNR}_T/\mathrm{SNR}_t \to 0$: 0/0 above) the
        same quantity is taken as $((\alpha_t/\alpha_T) x_T - x_t) / (\alpha_t^2 \sigma_T^2 /
        \alpha_T^2 - \sigma_t^2)$, finite at $t = 0$; the first form, free of cancellation near
        $T$, is used where $\mathrm{SNR}_T/\mathrm{SNR}_t \ge 1/2$."""
        a, _, c = (expand(v, x) for v in self.coefficients(t))
        ratio = expand(self.snr_ratio(t), x)
        near_T = (a * x_T - ratio * x) / c
        alpha_t = expand(self.alpha(t), x)
        alpha_T = self.alpha(jnp.asarray(self.T, alpha_t.dtype))
        denom = alpha_t**2 * self.sigma_sq(jnp.asarray(self.T, alpha_t.dtype)) / alpha_T**2
        near_0 = ((alpha_t / alpha_T) * x_T - x) / (denom - expand(self.sigma_sq(t), x))
        return jnp.where(ratio < 0.5, near_0, near_T)

    def score(self, x, t, x_T, denoised):
        r"""The bridge score $\nabla_{x_t}\log q(x_t \mid x_T) \approx -(x_t - a_t x_T - b_t
        \hat x_0)/c_t$ from a denoiser output $\hat x_0 = D(x_t, t, x_T)$ (Tweedie)."""
        a, b, c = (expand(v, x) for v in self.coefficients(t))
        return -(x - a * x_T - b * denoised) / c

    def reverse_drift(self, x, t, x_T, denoised, guidance=1.0):
        r"""Drift of the reverse-time bridge SDE, $f x - g^2(s - w h)$, with diffusion $g$
        (DDBM; $w$ = `guidance`, $w = 1$ the exact bridge)."""
        s = self.score(x, t, x_T, denoised)
        h = self.h_transform(x, t, x_T)
        return expand(self.f(t), x) * x - expand(self.g2(t), x) * (s - guidance * h)

    def pf_ode_drift(self, x, t, x_T, denoised, guidance=1.0):
        r"""Drift of the bridge probability-flow ODE, $f x - g^2(s/2 - w h)$ (DDBM)."""
        s = self.score(x, t, x_T, denoised)
        h = self.h_transform(x, t, x_T)
        return expand(self.f(t), x) * x - expand(self.g2(t), x) * (0.5 * s - guidance * h)

    def diffusion(self, t):
        """$g(t)$, the diffusion coefficient of the forward (and reverse) SDE."""
        return jnp.sqrt(self.g2(t))


class VE(AbstractBridge):
    r"""The VE bridge (Brownian bridge of $dx = \sqrt{2t}\,dW$): $\alpha_t = 1$, $\sigma_t = t$,
    $T$ = `sigma_max`;

    $$q(x_t \mid x_0, x_T) = \mathcal N\Big(\tfrac{t^2}{T^2} x_T + \big(1 - \tfrac{t^2}{T^2}\big)
    x_0,\ t^2\big(1 - \tfrac{t^2}{T^2}\big) I\Big),\qquad h = \frac{x_T - x_t}{T^2 - t^2}.$$

    DDBM (Zhou et al. 2024) uses `sigma_max = 80` (DIODE: 20) and samples down to
    `t_min = 0.002` (EDM's `sigma_min`).
    """

    sigma_max: float = 80.0
    t_min: float = 0.002

    def __check_init__(self):
        check_positive("sigma_max", self.sigma_max)
        check_positive("t_min", self.t_min)
        if float(self.t_min) >= float(self.sigma_max):
            raise ValueError(f"t_min must be < sigma_max, got {self.t_min} >= {self.sigma_max}")

    @property
    def T(self) -> float:
        """The end time, `sigma_max`."""
        return self.sigma_max

    def log_alpha(self, t):
        return jnp.zeros_like(jnp.asarray(t))

    def sigma_sq(self, t):
        return jnp.asarray(t) ** 2

    def log_snr(self, t):
        return -2.0 * jnp.log(t)

    def snr_ratio(self, t):
        return (jnp.asarray(t) / self.T) ** 2

    def snr_gap(self, t):
        t = jnp.asarray(t)
        return (self.T - t) * (self.T + t) / self.T**2

    def f(self, t):
        return jnp.zeros_like(jnp.asarray(t))

    def g2(self, t):
        return 2.0 * jnp.asarray(t)

    def h_transform(self, x, t, x_T):
        t = expand(t, x)
        return (x_T - x) / ((self.T - t) * (self.T + t))


class VP(AbstractBridge):
    r"""The VP bridge: the VP SDE $dx = -\tfrac12\beta(t)x\,dt + \sqrt{\beta(t)}\,dW$ with
    $\beta(t) = \beta_{min} + \beta_d t$ pinned at $x_T$; $\alpha_t = e^{-B(t)/2}$,
    $\sigma_t^2 = 1 - \alpha_t^2$, $\mathrm{SNR}_t = 1/\mathrm{expm1}(B(t))$,
    $B(t) = \beta_{min} t + \beta_d t^2/2$.

    DDBM's setting (Zhou et al. 2024): `beta_d = 2`, `beta_min = 0.1`, `T = 1`, sampled down to
    `t_min = 1e-4`.
    """

    beta_d: float = 2.0
    beta_min: float = 0.1
    T: float = eqx.field(default=1.0, kw_only=True)
    t_min: float = eqx.field(default=1e-4, kw_only=True)

    def __check_init__(self):
        check_positive("beta_d", self.beta_d)
        if not (np.isfinite(float(self.beta_min)) and float(self.beta_min) >= 0):
            raise ValueError(f"beta_min must be finite and >= 0, got {self.beta_min}")
        check_positive("T", self.T)
        check_positive("t_min", self.t_min)
        if float(self.t_min) >= float(self.T):
            raise ValueError(f"t_min must be < T, got {self.t_min} >= {self.T}")

    def _b(self, t):
        t = jnp.asarray(t)
        return self.beta_min * t + 0.5 * self.beta_d * t**2

    def _b_gap(self, t):
        """`B(T) - B(t)`, exact near `T`: `(T - t)(beta_min + beta_d (T + t)/2)`."""
        t = jnp.asarray(t)
        return (self.T - t) * (self.beta_min + 0.5 * self.beta_d * (self.T + t))

    def log_alpha(self, t):
        return -0.5 * self._b(t)

    def sigma_sq(self, t):
        return -jnp.expm1(-self._b(t))

    def log_snr(self, t):
        return -jnp.log(jnp.expm1(self._b(t)))

    def snr_ratio(self, t):
        return jnp.expm1(self._b(t)) / jnp.expm1(self._b(self.T))

    def snr_gap(self, t):
        return jnp.exp(self._b(t)) * jnp.expm1(self._b_gap(t)) / jnp.expm1(self._b(self.T))

    def f(self, t):
        return -0.5 * (self.beta_min + self.beta_d * jnp.asarray(t))

    def g2(self, t):
        return self.beta_min + self.beta_d * jnp.asarray(t)
