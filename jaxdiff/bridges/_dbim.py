"""DBIM: diffusion bridge implicit models (non-Markovian bridges, DDIM for bridges)."""

from __future__ import annotations

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import check_count
from ._solver import AbstractBridgeSolver


def _log_b_over_c(bridge, t):
    r"""$\lambda_t = \log(b_t/\sqrt{c_t}) = \tfrac12(\log\mathrm{SNR}_t + \log(1 -
    \mathrm{SNR}_T/\mathrm{SNR}_t))$, the time variable of DBIM's exponential integrators."""
    return 0.5 * (bridge.log_snr(t) + jnp.log(bridge.snr_gap(t)))


class DBIM(AbstractBridgeSolver):
    r"""The DBIM sampler of Zheng, He, Lu, Zhu & Zhu 2024, "Diffusion Bridge Implicit Models".

    A booting step draws $x_{t_0}$ from $q(x_{t_0} \mid \hat x_0, x_T)$ with
    $\hat x_0 = D(x_T, T, x_T)$ (the "booting noise", the only randomness when `eta = 0`).
    Then, from $s$ to $t < s$, with $\hat x_0 = D(x_s, s, x_T)$ and $c$ a standard deviation
    ($\sqrt{c_t}$ of `bridge.coefficients`):

    $$x_t = a_t x_T + b_t\hat x_0 + \sqrt{c_t^2 - \omega^2}\,
    \frac{x_s - a_s x_T - b_s\hat x_0}{c_s} + \omega\,\varepsilon,\qquad
    \omega = \eta\,\sigma_t\sqrt{1 - \mathrm{SNR}_s/\mathrm{SNR}_t},$$

    `eta = 0` deterministic (an implicit, ODE-like sampler), `eta = 1` Markovian (the
    ancestral sampler of the bridge). `order` 2 and 3 (`eta = 0` only) are multistep
    exponential integrators in $\lambda_t = \log(b_t/c_t)$ reusing the previous denoiser outputs
    (lower order on the first steps and on the last step, to $t = 0$, which returns
    $\hat x_0$).

    Order: 1, 2 or 3 (`order`). NFE: 1 per step plus 1 for the booting step,
    `nfe(n) = n + 1`.
    """

    eta: float = 0.0
    order: int = 1

    def __check_init__(self):
        if not (np.isfinite(float(self.eta)) and 0 <= float(self.eta) <= 1):
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if isinstance(self.order, bool) or self.order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {self.order!r}")
        if self.order > 1 and float(self.eta) != 0:
            raise ValueError(
                f"order {self.order} is deterministic: it needs eta = 0, got eta={self.eta}"
            )

    @property
    def stochastic(self) -> bool:
        return True  # the booting noise, even for eta = 0

    def nfe(self, steps: int) -> int:
        return check_count("steps", steps) + 1

    def init(self, denoise, x_T, ts, bridge, key):
        t0 = ts[0]
        x0_hat = denoise(x_T, jnp.asarray(bridge.T, ts.dtype))
        a, b, c = bridge.coefficients(t0)
        x = a * x_T + b * x0_hat + jnp.sqrt(c) * jr.normal(key, x_T.shape, x_T.dtype)
        if self.order == 1:
            return x, None
        lam0 = _log_b_over_c(bridge, t0)
        # placeholder history (finite, distinct times): never selected, see `step`
        hist_x0 = jnp.stack([x0_hat] * (self.order - 1))
        hist_lam = lam0 - jnp.arange(1, self.order, dtype=ts.dtype)[::-1]
        return x, (hist_x0, hist_lam)

    def step(self, denoise, x, carry, i, ts, x_T, bridge, key, *, final):
        s, t = ts[i], ts[i + 1]
        x0_hat = denoise(x, s)
        a_s, b_s, c_s = bridge.coefficients(s)
        a_t, b_t, c_t = bridge.coefficients(t)
        if final:  # to t = 0: a = c = 0, b = 1, so x_0 = x0_hat (DBIM's noise-free last step)
            x_next = a_t * x_T + b_t * x0_hat + jnp.sqrt(c_t / c_s) * (x - a_s * x_T - b_s * x0_hat)
            return x_next, carry, x0_hat
        if self.order == 1:
            gap_st = -jnp.expm1(bridge.log_snr(s) - bridge.log_snr(t))  # 1 - SNR_s/SNR_t
            w2 = self.eta**2 * bridge.sigma_sq(t) * gap_st
            coef = jnp.sqrt(jnp.maximum(c_t - w2, 0.0) / c_s)
            x_next = a_t * x_T + b_t * x0_hat + coef * (x - a_s * x_T - b_s * x0_hat)
            if float(self.eta) > 0:
                x_next = x_next + jnp.sqrt(w2) * jr.normal(key, x.shape, x.dtype)
            return x_next, carry, x0_hat
        hist_x0, hist_lam = carry
        lam_s, lam_t = _log_b_over_c(bridge, s), _log_b_over_c(bridge, t)
        h = lam_t - lam_s
        coef = jnp.sqrt(c_t / c_s)
        base = coef * x + (a_t - coef * a_s) * x_T
        phi1 = -jnp.expm1(-h)  # 1 - e^{-h}
        phi2 = jnp.expm1(-h) + h  # e^{-h} + h - 1
        phi3 = 0.5 * h**2 - h - jnp.expm1(-h)  # h^2/2 - h + 1 - e^{-h}
        x_first = base + b_t * phi1 * x0_hat
        x0_u1, lam_u1 = hist_x0[-1], hist_lam[-1]
        h1 = lam_s - lam_u1
        x_second = x_first + b_t * phi2 * (x0_hat - x0_u1) / h1
        x_next = jnp.where(i == 0, x_first, x_second)
        if self.order == 3:
            x0_u2, lam_u2 = hist_x0[-2], hist_lam[-2]
            h2 = lam_u1 - lam_u2
            d1 = ((x0_hat - x0_u1) * (2 * h1 + h2) / h1 - (x0_u1 - x0_u2) * h1 / h2) / (h1 + h2)
            d2 = 2 * ((x0_hat - x0_u1) / h1 - (x0_u1 - x0_u2) / h2) / (h1 + h2)
            x_third = x_first + b_t * (phi2 * d1 + phi3 * d2)
            x_next = jnp.where(i >= 2, x_third, x_next)
        hist_x0 = jnp.concatenate([hist_x0[1:], x0_hat[None]])
        hist_lam = jnp.concatenate([hist_lam[1:], lam_s[None]])
        return x_next, (hist_x0, hist_lam), x0_hat
