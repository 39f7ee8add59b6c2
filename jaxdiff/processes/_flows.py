r"""Flow-matching interpolants: the affine paths $x_t = \alpha(t) x_0 + \beta(t)\varepsilon$ of
rectified flows and conditional flow matching, as processes in EDM's form.

An affine path is exactly a process $x_t = s(t)(x_0 + \sigma(t)\varepsilon)$ with $s = \alpha$
and $\sigma = \beta / \alpha$, so every sampler in sigma-space serves flow models. Time runs
from data at $t = 0$ to noise at $t = 1$ (diffusers, Stable Diffusion 3); at $t = 1$,
$\alpha = 0$ and $\sigma = \infty$: the samplers start there from pure noise (a grid whose
first entry is `inf`, see `jaxdiff.sample`).

The velocity of the path is $v = \dot\alpha x_0 + \dot\beta\varepsilon$ (for the linear path
$v = \varepsilon - x_0$). Given the posterior mean $D = E[x_0 \mid x_t]$ the marginal velocity
is $\dot\alpha D + \dot\beta\hat\varepsilon$ with $\hat\varepsilon = (x_t - \alpha D)/\beta$, and
conversely $D = (\beta v - \dot\beta x_t)/(\dot\alpha\beta - \alpha\dot\beta)$; both are finite
at $t = 1$ where the score form is not ($\alpha = 0$).

- Liu, Gong & Liu (2023), "Flow Straight and Fast" (rectified flow);
- Lipman et al. (2023), "Flow Matching for Generative Modeling";
- Albergo & Vanden-Eijnden (2023), "Building Normalizing Flows with Stochastic Interpolants";
- Ma et al. (2024), "SiT": the trigonometric (GVP) path and SDE sampling with a free
  diffusion coefficient.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import (
    check_callable,
    check_count,
    check_nonnegative,
    check_number,
    check_range,
    is_traced,
)
from ..sde import SDE
from ._base import AbstractProcess, process_input


def _as_float(t):
    return jnp.asarray(t, dtype=jnp.result_type(t, float))


class AbstractFlow(AbstractProcess):
    r"""An affine interpolant $x_t = \alpha(t) x_0 + \beta(t)\varepsilon$ on $t \in [0, 1]$
    with $\alpha$ decreasing from 1 to 0 and $\beta$ increasing from 0 (t = 0 is data, t = 1 is
    noise).

    A concrete flow implements `alpha(t)`, `beta(t)` and `t_of_sigma`; derivatives come from
    `jax.jvp`. Besides the process interface it has the path's velocity field from a denoiser,
    a score or a velocity network (`velocity_from_denoiser`, `velocity_from_score`,
    `denoiser_from_velocity`, `score_from_velocity`), and its probability-flow ODE and reverse
    SDE take a velocity (`velocity=`, finite at t = 1) as well as a score.
    """

    t_min: float = 0.0
    t_max: float = 1.0

    def __check_init__(self):
        check_range("t_min", self.t_min, "t_max", self.t_max, allow_zero=True)
        if not is_traced(self.t_max) and float(self.t_max) > 1:
            raise ValueError(f"t_max must be <= 1 (a flow's time is in [0, 1]), got {self.t_max}")

    @abc.abstractmethod
    def alpha(self, t):
        """The data coefficient `alpha(t)` (1 at t = 0, 0 at t = 1)."""

    @abc.abstractmethod
    def beta(self, t):
        """The noise coefficient `beta(t)` (0 at t = 0)."""

    def coefficients(self, t):
        """`(alpha, beta, d alpha / dt, d beta / dt)` at `t` (exact derivatives, `jax.jvp`)."""
        t = _as_float(t)
        alpha, d_alpha = jax.jvp(self.alpha, (t,), (jnp.ones_like(t),))
        beta, d_beta = jax.jvp(self.beta, (t,), (jnp.ones_like(t),))
        return alpha, beta, d_alpha, d_beta

    # -- the process form ----------------------------------------------------------------------
    def scale(self, t):
        return self.alpha(_as_float(t))

    def sigma(self, t):
        t = _as_float(t)
        return self.beta(t) / self.alpha(t)

    def noise_std(self, t):
        return self.beta(_as_float(t))

    # -- conversions ---------------------------------------------------------------------------
    def velocity_from_denoiser(self, denoiser: Callable) -> VelocityFromDenoiser:
        r"""The marginal velocity `v(x_t, t) = alpha' D + beta' (x_t - alpha D) / beta` of a
        sigma-space denoiser `D(x, sigma)` (at t = 1 the denoiser is called at `sigma = inf`
        with the unit-variance noise `x_t / beta`)."""
        check_callable("denoiser", denoiser, "denoiser(x, sigma)")
        return VelocityFromDenoiser(denoiser, self)

    def denoiser_from_velocity(self, velocity: Callable) -> DenoiserFromVelocity:
        r"""The sigma-space denoiser of a velocity network `velocity(x_t, t)`:
        `D = (beta v - beta' x_t) / (alpha' beta - alpha beta')` at `t = t_of_sigma(sigma)`,
        `x_t = alpha x` (at `sigma = inf`, `x_t = beta(1) x` for the unit-variance noise `x`)."""
        check_callable("velocity", velocity, "velocity(x_t, t)")
        return DenoiserFromVelocity(velocity, self)

    def velocity_from_score(self, score: Callable) -> VelocityFromScore:
        r"""The velocity of a process-time score: `v = (alpha'/alpha)(x + beta^2 score) -
        beta' beta score` (singular at t = 1, where alpha = 0)."""
        check_callable("score", score, "score(x, t)")
        return VelocityFromScore(score, self)

    def score_from_velocity(self, velocity: Callable) -> ScoreFromVelocity:
        r"""The score of a velocity field: `score = (alpha v - alpha' x) / (beta (alpha' beta -
        alpha beta'))`, finite on all of [0 < t <= 1] (at t = 1 it is `-x / beta^2`)."""
        check_callable("velocity", velocity, "velocity(x_t, t)")
        return ScoreFromVelocity(velocity, self)

    # -- ODE and SDEs ---------------------------------------------------------------------------
    def probability_flow(self, score: Callable | None = None, *, velocity=None) -> SDE:
        """The flow ODE `dx/dt = v(x, t)` (a `jaxdiff.SDE` with zero diffusion), from a
        `score(x, t)` as for every process, or from a `velocity(x, t)` (finite at t = 1)."""
        v, _ = self._fields(score, velocity, need_score=False)
        return SDE(_FlowDrift(v, None, None), None)

    def reverse(self, score: Callable | None = None, *, velocity=None, diffusion=None) -> SDE:
        r"""The reverse-time SDE with the flow's marginals and a free diffusion coefficient
        $w(t)$ (Ma et al. 2024, SiT, eq. 8; SiT's $w_t$ is $w(t)^2$ here):

        $$dx = [v(x, t) - \tfrac12 w(t)^2\,\nabla\log p_t(x)]\,dt + w(t)\,d\bar W,$$

        solved from `t_max` down to `t_min` (decreasing `ts`). `diffusion` is `w(t)`: a
        callable of `t` or a number; the default `None` is the forward SDE's `g(t)` (the
        reverse SDE of Anderson 1982, infinite at t = 1 for these paths), `0` gives the
        probability-flow ODE, SiT's choice `w(t)^2 = beta(t)` is `lambda t: jnp.sqrt(flow.beta(t))`.
        Pass `score` or `velocity` (the other is derived; with `velocity` the drift is finite
        at t = 1 for a finite `w`).
        """
        v, s = self._fields(score, velocity, need_score=True)
        if diffusion is None:
            diffusion = self.diffusion_coef  # a bound method of a module: a pytree
        elif not callable(diffusion):
            if isinstance(diffusion, str):
                raise TypeError(f"diffusion must be a callable w(t) or a number, got {diffusion!r}")
            check_number("diffusion", diffusion)
            diffusion = _Constant(jnp.asarray(diffusion))
        return SDE(_FlowDrift(v, s, _Squared(diffusion)), _DiffusionOf(diffusion), additive=True)

    def _fields(self, score, velocity, *, need_score):
        if (score is None) == (velocity is None):
            raise TypeError("pass exactly one of score (score(x, t)) or velocity= (velocity(x, t))")
        if velocity is not None:
            check_callable("velocity", velocity, "velocity(x, t)")
            return velocity, (ScoreFromVelocity(velocity, self) if need_score else None)
        check_callable("score", score, "score(x, t)")
        return VelocityFromScore(score, self), score


class AffineFlow(AbstractFlow):
    r"""Any affine interpolant $x_t = \alpha(t) x_0 + \beta(t)\varepsilon$ given by two
    functions of `t` (jax-traceable; derivatives by `jax.jvp`).

    `alpha` must decrease from `alpha(0) = 1` to `alpha(1) = 0` and `beta` increase from
    `beta(0) = 0`, so that `sigma = beta / alpha` increases from 0 to infinity (checked on a few
    points at construction). `t_of_sigma` inverts `sigma` by bisection in `log sigma` (`iterations`
    halvings; 64 reach float64's resolution).
    """

    alpha_fn: Callable = eqx.field(static=True)
    beta_fn: Callable = eqx.field(static=True)
    iterations: int = eqx.field(static=True)

    def __init__(
        self,
        alpha_fn: Callable,
        beta_fn: Callable,
        *,
        iterations: int = 64,
        t_min: float = 0.0,
        t_max: float = 1.0,
    ):
        self.alpha_fn = alpha_fn
        self.beta_fn = beta_fn
        self.iterations = iterations
        self.t_min = t_min
        self.t_max = t_max

    def __check_init__(self):  # (equinox runs AbstractFlow's check too)
        check_callable("alpha_fn", self.alpha_fn, "alpha(t)")
        check_callable("beta_fn", self.beta_fn, "beta(t)")
        check_count("iterations", self.iterations)
        ts = jnp.linspace(0.0, 1.0, 17)
        a, b = self.alpha_fn(ts), self.beta_fn(ts)
        if is_traced((a, b)):
            return
        if not (abs(float(a[0]) - 1) < 1e-6 and abs(float(a[-1])) < 1e-6):
            raise ValueError(
                f"alpha_fn must go from alpha(0) = 1 to alpha(1) = 0, got {a[0]} and {a[-1]}"
            )
        if abs(float(b[0])) > 1e-6 or float(b[-1]) <= 0:
            raise ValueError(
                f"beta_fn must go from beta(0) = 0 to beta(1) > 0, got {b[0]} and {b[-1]}"
            )
        log_snr = jnp.log(a[1:-1]) - jnp.log(b[1:-1])
        if not bool(jnp.all(jnp.diff(log_snr) < 0)):
            raise ValueError("beta(t) / alpha(t) must increase with t (alpha_fn, beta_fn)")

    def alpha(self, t):
        return self.alpha_fn(t)

    def beta(self, t):
        return self.beta_fn(t)

    def t_of_sigma(self, sigma):
        check_nonnegative("sigma", sigma)
        sigma = _as_float(sigma)
        log_sigma = jnp.log(sigma)

        def halve(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            below = jnp.log(self.beta(mid)) - jnp.log(self.alpha(mid)) < log_sigma
            return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

        lo, hi = jax.lax.fori_loop(
            0, self.iterations, halve, (jnp.zeros_like(sigma), jnp.ones_like(sigma))
        )
        t = 0.5 * (lo + hi)
        return jnp.where(sigma == 0, 0.0, jnp.where(jnp.isinf(sigma), 1.0, t)).astype(t.dtype)


class RectifiedFlow(AbstractFlow):
    r"""The linear path of rectified flow and conditional flow matching,
    $x_t = (1 - t) x_0 + t\varepsilon$, velocity $v = \varepsilon - x_0$
    (Liu et al. 2023; Lipman et al. 2023; Stable Diffusion 3, Flux).

    In EDM's form $s(t) = 1 - t$, $\sigma(t) = t / (1 - t)$, $t = \sigma / (1 + \sigma)$, and a
    velocity network gives $D = x_t - t\,v$ in data units. Times in `[t_min, t_max] = [0, 1]`.
    """

    def alpha(self, t):
        return 1 - _as_float(t)

    def beta(self, t):
        return _as_float(t)

    def coefficients(self, t):
        t = _as_float(t)
        one = jnp.ones_like(t)
        return 1 - t, t, -one, one

    def sigma(self, t):
        t = _as_float(t)
        return t / (1 - t)

    def t_of_sigma(self, sigma):
        check_nonnegative("sigma", sigma)
        # 1 / (1 + 1/sigma): exact at sigma = 0 (t = 0) and sigma = inf (t = 1)
        return 1 / (1 + 1 / _as_float(sigma))


class TrigFlow(AbstractFlow):
    r"""The trigonometric (GVP) path $x_t = \cos(\pi t/2) x_0 + \sin(\pi t/2)\varepsilon$
    (variance preserving when the data have unit variance; Albergo & Vanden-Eijnden 2023;
    Ma et al. 2024, SiT's GVP). In EDM's form $s = \cos(\pi t/2)$, $\sigma = \tan(\pi t/2)$,
    $t = \tfrac{2}{\pi}\arctan\sigma$. The cosine schedule of Nichol & Dhariwal without their
    offset, run to $t = 1$. Times in `[0, 1]`.
    """

    def alpha(self, t):
        # sin(pi (1 - t) / 2) is exactly 0 at t = 1 (cos(pi / 2) is 6e-17, not 0)
        return jnp.sin((1 - _as_float(t)) * (math.pi / 2))

    def beta(self, t):
        return jnp.sin(_as_float(t) * (math.pi / 2))

    def sigma(self, t):
        t = _as_float(t)
        return self.beta(t) / self.alpha(t)

    def t_of_sigma(self, sigma):
        check_nonnegative("sigma", sigma)
        return jnp.arctan(_as_float(sigma)) * (2 / math.pi)


# ------------------------------------------------------------------------------ fields


def _safe(a):
    return jnp.where(a == 0, jnp.ones_like(a), a)


def broadcast_coefficients(process: AbstractFlow, x, t):
    """`process.coefficients(t)` shaped to broadcast against `x`: `t` is a scalar or one time
    per sample (shape `(batch,)`, as in training)."""
    t = jnp.asarray(t, dtype=jnp.result_type(x))
    coefficients = process.coefficients(t)
    if t.ndim == 0:
        return coefficients
    return tuple(c.reshape(c.shape + (1,) * (jnp.ndim(x) - c.ndim)) for c in coefficients)


def _sigma_space(process: AbstractFlow, x, t):
    """`(y, sigma)`: the sigma-space input of a process-space `x` at `t`; at `alpha = 0`,
    `sigma = inf` and `y = x / beta` (the unit-variance noise of the inf convention)."""
    alpha, beta, _, _ = broadcast_coefficients(process, x, t)
    sigma = jnp.where(alpha == 0, jnp.inf, beta / _safe(alpha))
    y = x / jnp.where(alpha == 0, beta, alpha)
    if jnp.ndim(t) == 1:  # one sigma per sample, shape (batch,)
        sigma = sigma.reshape(sigma.shape[:1])
    return y, sigma


class VelocityFromDenoiser(eqx.Module):
    denoiser: Any
    process: AbstractFlow

    def __call__(self, x, t):
        alpha, beta, d_alpha, d_beta = broadcast_coefficients(self.process, x, t)
        y, sigma = _sigma_space(self.process, x, t)
        d = self.denoiser(y, sigma.astype(y.dtype))
        # E[eps | x_t]; at t = 0 (beta = 0) its limit is 0: x_t is the data, eps independent
        eps = jnp.where(beta == 0, 0.0, (x - alpha * d) / _safe(beta))
        return d_alpha * d + d_beta * eps


class DenoiserFromVelocity(eqx.Module):
    velocity: Any
    process: AbstractFlow

    def __call__(self, y, sigma):
        x_t, t = process_input(self.process, y, sigma)
        t = t.astype(jnp.result_type(y))
        alpha, beta, d_alpha, d_beta = self.process.coefficients(t)
        v = self.velocity(x_t, t)
        if jnp.shape(v) != jnp.shape(x_t):  # checked while tracing
            raise ValueError(
                f"velocity(x_t, t) must return an array shaped like x_t {jnp.shape(x_t)}, got "
                f"{jnp.shape(v)}"
            )
        return (beta * v - d_beta * x_t) / (d_alpha * beta - alpha * d_beta)


class VelocityFromScore(eqx.Module):
    score: Any
    process: AbstractFlow

    def __call__(self, x, t):
        alpha, beta, d_alpha, d_beta = broadcast_coefficients(self.process, x, t)
        s = self.score(x, t)
        return (d_alpha / alpha) * (x + beta**2 * s) - d_beta * beta * s


class ScoreFromVelocity(eqx.Module):
    velocity: Any
    process: AbstractFlow

    def __call__(self, x, t):
        alpha, beta, d_alpha, d_beta = broadcast_coefficients(self.process, x, t)
        v = self.velocity(x, t)
        return (alpha * v - d_alpha * x) / (beta * (d_alpha * beta - alpha * d_beta))


class _FlowDrift(eqx.Module):
    velocity: Any
    score: Any
    w_squared: Any  # w(t)^2, or None for the ODE

    def __call__(self, t, x, args):
        v = self.velocity(x, t)
        if jnp.shape(v) != jnp.shape(x):  # checked while tracing
            raise ValueError(
                f"the velocity must be shaped like x {jnp.shape(x)}, got {jnp.shape(v)}"
            )
        if self.w_squared is None:
            return v
        return v - 0.5 * self.w_squared(t) * self.score(x, t)


class _Constant(eqx.Module):
    value: jax.Array

    def __call__(self, t):
        return jnp.broadcast_to(self.value, jnp.shape(t)).astype(jnp.result_type(t, float))


class _Squared(eqx.Module):
    fn: Any

    def __call__(self, t):
        return jnp.asarray(self.fn(t)) ** 2


class _DiffusionOf(eqx.Module):
    fn: Any

    def __call__(self, t, x, args):
        w = jnp.asarray(self.fn(t))
        return jax.tree_util.tree_map(
            lambda v: jnp.broadcast_to(w, jnp.shape(v)).astype(v.dtype), x
        )
