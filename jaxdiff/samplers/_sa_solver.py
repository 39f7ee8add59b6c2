"""SA-Solver: the stochastic Adams predictor-corrector in data prediction."""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_number
from ._base import AbstractSampler

# diffusers' default tau_func, `1 if 200 <= t <= 800 else 0` in the timesteps of its default
# schedule (linear betas 1e-4 .. 0.02 over 1000 steps, alphas_cumprod in float32), as sigmas:
# sigma_t = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t]) at t = 200 and t = 800
DIFFUSERS_TAU_INTERVAL = (0.7235912084579468, 25.735980987548828)
_SERIES_TERMS = 20  # phi-function series below z = 1: the next term is < 1/20! ~ 4e-19


def _as_tuple(value):
    """A list becomes a tuple (static fields must be hashable); anything else is checked."""
    return tuple(value) if isinstance(value, list) else value


def _moments(z, m: int):
    r"""$\mu_l = z \int_0^1 e^{-z(1-s)} s^l\,ds = z\,l!\,\varphi_{l+1}(-z)$ for
    $l = 0 .. m-1$, $z \ge 0$: by its series (Horner) below $z = 1$, where the recurrence
    cancels, and by the recurrence $\psi_l = (1 - l\,\psi_{l-1})/z$,
    $\psi_0 = (1 - e^{-z})/z$ above (where it loses at most a factor $l!$ of precision)."""
    small = z < 1
    zs = jnp.where(small, 1, z)  # the recurrence's branch, kept finite at z = 0
    zt = jnp.where(small, z, 0)  # the series' branch, kept small
    psi = -jnp.expm1(-zs) / zs
    out = []
    for ell in range(m):
        if ell:
            psi = (1 - ell * psi) / zs
        # psi_l = l! sum_k (-z)^k / (k + l + 1)!
        series = jnp.zeros_like(zt)
        for k in reversed(range(_SERIES_TERMS)):
            series = series * zt + (-1) ** k * math.factorial(ell) / math.factorial(k + ell + 1)
        out.append(z * jnp.where(small, series, psi))
    return out


def adams_weights(nodes, z, order, max_order: int):
    r"""Weights $w_j$, $j < $ `max_order` (static), of $\sum_j w_j D_j$: the exact integral
    $k \int_{\lambda_s}^{\lambda_t} e^{k(\lambda - \lambda_t)} P(\lambda)\,d\lambda$,
    $k = 1 + \tau^2$, of the polynomial $P$ interpolating $D_j$ at the first `order`
    (traced) nodes $\lambda_j$, given as `nodes` $s_j = (\lambda_j - \lambda_s)/h$,
    $h = \lambda_t - \lambda_s$, $z = kh$; zero weights past `order`. With the Lagrange basis
    $\ell_j(s) = \sum_l a_{jl} s^l$, $w_j = \sum_l a_{jl}\mu_l$. For two nodes (order 2)
    $\mu_1$ is replaced by its leading term $z/2$, as in diffusers' `SASolverScheduler` (the
    predictor's weight on $D_i - D_{i-1}$ becomes $k h^2 / (2 h_{i-1})$, the corrector's on
    $D_t - D_s$ becomes $k h/2$; an $O(h^3)$ change)."""
    mu = _moments(z, max_order)
    if max_order >= 2:
        mu[1] = jnp.where(order == 2, z / 2, mu[1])
    weights = []
    for j in range(max_order):
        coeffs = [jnp.ones_like(z)] + [jnp.zeros_like(z)] * (max_order - 1)  # of l_j in s
        denom = jnp.ones_like(z)
        for q in range(max_order):
            if q == j:
                continue
            active = q < order  # multiply by (s - s_q) / (s_j - s_q), or by 1
            coeffs = [
                jnp.where(active, (coeffs[ell - 1] if ell else 0) - nodes[q] * coeffs[ell], c)
                for ell, c in enumerate(coeffs)
            ]
            denom = denom * jnp.where(active, nodes[j] - nodes[q], 1)
        w = sum(c * m for c, m in zip(coeffs, mu, strict=True)) / denom
        weights.append(jnp.where(j < order, w, 0))
    return weights


class SASolver(AbstractSampler):
    r"""SA-Solver: the stochastic Adams predictor (order `predictor_order`) and corrector
    (order `corrector_order`) on the variance-controlled diffusion SDE, in data prediction.

    Xue, Yi, Luo, Zhang, Sun, Li & Ma 2023, "SA-Solver: Stochastic Adams Solver for Fast
    Sampling of Diffusion Models" (NeurIPS 2023, arXiv 2309.05019); diffusers'
    `SASolverScheduler` (`algorithm_type="data_prediction"`), whose step it equals on the same
    grid and noise (float64, checked to 1e-12).

    With $\lambda = -\log\sigma$ and $\tau(\sigma) \ge 0$ the noise control (`tau = 0` the
    probability-flow ODE, `tau = 1` the reverse-time SDE), the SDE
    $dx = (1 + \tau^2)(D - x)\,d\lambda + \tau\sqrt{2}\,\sigma\,d\bar w_\lambda$ has, with $\tau$
    constant over a step $\lambda_s \to \lambda_t$ ($h = \lambda_t - \lambda_s$,
    $k = 1 + \tau^2$), the exact solution

    $$x_t = e^{-kh} x_s + k \int_{\lambda_s}^{\lambda_t} e^{k(\lambda - \lambda_t)}
      D(\lambda)\,d\lambda + \sigma_t \sqrt{1 - e^{-2\tau^2 h}}\;\xi.$$

    The predictor replaces $D$ by the polynomial through the last $p$ evaluations
    $D_i, D_{i-1}, \ldots$ (Adams–Bashforth), the corrector by the one through the new
    evaluation $D_{i+1}$ and the last $c - 1$ ones (Adams–Moulton), each integrated exactly
    against the exponential (closed form, `adams_weights`), with diffusers' simplification for
    order 2. Step `i` evaluates $D$ at the predicted $x_i$, corrects $x_i$ with the corrector
    from the corrected $x_{i-1}$ (reusing that evaluation and the predictor's noise $\xi$ of
    step $i-1$), then predicts $x_{i+1}$ with fresh noise from the step's key: 1 denoiser
    evaluation per step (NFE = steps). $\tau$ is taken at the step's start, $\sigma_i$, by both.
    Warm-up: predictor order `min(predictor_order, i + 1)`, corrector order
    `min(corrector_order, i + 2)`; with `lower_order_final` also at most `n - i` and
    `n - i + 1` on a grid of `n` steps (diffusers' rules).

    **Order** on the probability-flow ODE (`tau = 0`): that of the corrector, $\min(p + 1, c)$,
    up to 3 here: the last predicted $x_{n-1}$ is not corrected, and `lower_order_final`
    makes its predictor order 2. Measured (fitted on 2-D problems): 0.84 for orders (1, 1),
    2.0 for the default (2, 2) and for (3, 2), 3.1 to 3.3 for (3, 3), (3, 4) and (4, 4).

    **Accuracy** (the ring mixture's exact denoiser, sliced 2-Wasserstein distance of 4000
    samples to exact ones; 0.087 between two exact sets): on diffusers' default timesteps
    (sigma 157 -> 0.34, then 0) 0.118 at NFE 10, as DPM-Solver++(2M) SDE (0.121); on Karras
    grids 80 -> 0.002, 1.32 at NFE 10 but 0.116 at NFE 20 (DPM-Solver++(2M) SDE 0.37 and
    0.126). Few long steps down to small sigma do not suit it: its order-2 weight on
    $D_i - D_{i-1}$, $k h^2 / (2 h_{i-1})$, overshoots there (the PF-ODE's error at NFE 10,
    `tau=0`: 1.37; with the exact integral's weight 0.43; DPM-Solver++(2M) 0.31).

    The last step, to sigma = 0 ($\lambda = \infty$, where an interpolating polynomial has no
    finite integral), returns the denoiser output $D(x_{n-1}; \sigma_{n-1})$ at the predicted
    $x_{n-1}$, with no corrector (a correction of $x_{n-1}$ would not change it). diffusers'
    grid instead ends at the training schedule's smallest sigma, where its last step still
    corrects and then predicts; on grids ending at 0 its update is not finite.

    **Fields** (diffusers' names and defaults): `predictor_order` (1 to 4, default 2),
    `corrector_order` (1 to 4, default 2), `tau` (the noise level inside the interval,
    default 1; static: `tau = 0` is deterministic and needs no key), `tau_interval`
    (`(sigma_lo, sigma_hi)`: $\tau(\sigma) = $ `tau` for `sigma_lo <= sigma <= sigma_hi`, 0
    outside; default `DIFFUSERS_TAU_INTERVAL` = (0.7236, 25.736), the sigmas at timesteps 200
    and 800 of diffusers' default linear schedule, so that the default is diffusers' default
    `tau_func = lambda t: 1 if 200 <= t <= 800 else 0` expressed in sigma; `(0, inf)` puts
    the noise everywhere), `lower_order_final` (default True). diffusers' `tau_func` is
    any function of its timesteps; here $\tau$ is one value inside one sigma interval and 0
    outside, the form of diffusers' default and of its documented ODE (`lambda t: 0`, here
    `tau=0`) and SDE (`lambda t: 1`, here `tau_interval=(0, inf)`) choices. Only the data prediction
    (`algorithm_type="data_prediction"`, diffusers' default) is provided.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the
    deterministic first step `x_1 = D(x, inf) + sigma_1 x` (equal in distribution given the
    exact denoiser), then runs it from `sigma_1` with a fresh history.
    """

    predictor_order: int = eqx.field(default=2, static=True)
    corrector_order: int = eqx.field(default=2, static=True)
    tau: float = eqx.field(default=1.0, static=True)
    tau_interval: tuple[float, float] = eqx.field(
        default=DIFFUSERS_TAU_INTERVAL, static=True, converter=_as_tuple
    )
    lower_order_final: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        for name in ("predictor_order", "corrector_order"):
            value = getattr(self, name)
            if isinstance(value, bool) or value not in (1, 2, 3, 4):
                raise ValueError(f"SASolver {name} must be 1, 2, 3 or 4, got {value!r}")
        tau = check_number("tau", self.tau)
        if tau is None or tau < 0:
            raise ValueError(f"SASolver tau must be a concrete number >= 0, got {self.tau!r}")
        interval = self.tau_interval
        ok = isinstance(interval, tuple | list) and len(interval) == 2
        if ok:
            try:
                lo, hi = (float(v) for v in interval)
            except (TypeError, ValueError):
                ok = False
            else:
                ok = 0 <= lo <= hi and not math.isnan(hi)
        if not ok:
            raise ValueError(
                "SASolver tau_interval must be a pair (sigma_lo, sigma_hi) with "
                f"0 <= sigma_lo <= sigma_hi, got {interval!r}"
            )
        if not isinstance(self.lower_order_final, bool):
            raise ValueError(
                f"SASolver lower_order_final must be True or False, got {self.lower_order_final!r}"
            )

    @property
    def stochastic(self) -> bool:
        return self.tau > 0

    def nfe(self, num_steps: int) -> int:
        return num_steps

    @property
    def _history(self) -> int:
        return max(self.predictor_order, self.corrector_order, 2) - 1

    def init(self, x, sigmas):
        del sigmas
        # (x_{i-1} after its correction, the noise of step i-1, [D_{i-1}, D_{i-2}, ...])
        return x, jnp.zeros_like(x), jnp.zeros((self._history, *x.shape), x.dtype)

    def _tau(self, sigma):
        lo, hi = self.tau_interval
        return jnp.where((sigma >= lo) & (sigma <= hi), self.tau, 0.0).astype(sigma.dtype)

    def _update(self, x, values, nodes, sigma_from, h, order, max_order, sigma_to, noise):
        """The exponential Adams update of `x` at `sigma_from` over `h` in lambda, with the
        interpolation `nodes` (as `adams_weights` takes them) and their `values` (`D`s), of
        traced `order` (1 .. `max_order`, static), plus its noise; tau at `sigma_from`."""
        tau = self._tau(sigma_from)
        k = 1 + tau**2
        w = adams_weights(nodes, k * h, order, max_order)
        x_new = jnp.exp(-k * h) * x
        for j in range(max_order):
            x_new = x_new + w[j] * values[j]
        if self.stochastic:
            x_new = x_new + sigma_to * jnp.sqrt(-jnp.expm1(-2 * tau**2 * h)) * noise
        return x_new

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:  # to sigma = 0: x -> D (see the docstring)
            return denoised, carry, denoised
        n = sigmas.shape[0] - 1  # static
        x_prev, noise_prev, hist = carry  # hist[k] = D_{i-1-k}
        size = self._history + 1

        def lam(j):  # lambda_j = -log sigma_j; distinct stand-ins below lambda_0 for j < 0
            return jnp.where(j >= 0, -jnp.log(sigmas[jnp.maximum(j, 0)]), -jnp.log(sigmas[0]) + j)

        # the corrector (i >= 1): x_i from x_{i-1} (corrected) with D_i, D_{i-1}, ...; order and
        # tau of step i - 1, its noise
        b = jnp.maximum(i - 1, 0)
        c = jnp.minimum(self.corrector_order, b + 2)
        if self.lower_order_final:
            c = jnp.minimum(c, n - b + 1)
        lam_b, lam_i = lam(b), lam(i)
        h_c = jnp.where(i >= 1, lam_i - lam_b, 1)
        nodes = (jnp.stack([lam(i - k) for k in range(size)]) - lam_b) / h_c
        values = jnp.concatenate([denoised[None], hist])
        x_corr = self._update(
            x_prev, values, nodes, sigmas[b], h_c, c, self.corrector_order, sigma, noise_prev
        )
        x = jnp.where(i >= 1, x_corr, x)
        # the predictor: x_{i+1} from x_i with D_i, D_{i-1}, ...
        p = jnp.minimum(self.predictor_order, i + 1)
        if self.lower_order_final:
            p = jnp.minimum(p, n - i)
        lam_next = -jnp.log(sigma_next)
        nodes = (jnp.stack([lam(i - k) for k in range(size)]) - lam_i) / (lam_next - lam_i)
        if self.stochastic:
            noise = jr.normal(key, x.shape, x.dtype)
        else:
            noise = jnp.zeros_like(x)
        x_next = self._update(
            x, values, nodes, sigma, lam_next - lam_i, p, self.predictor_order, sigma_next, noise
        )
        return x_next, (x, noise, values[:-1]), denoised
