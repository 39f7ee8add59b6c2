"""The common form of Gaussian noising processes, `x_t = s(t) (x_0 + sigma(t) eps)`."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import check_callable, check_float_array, check_instance, check_key, is_traced
from ..sde import SDE


class AbstractProcess(eqx.Module):
    r"""A forward noising process with Gaussian marginals in EDM's form

    $$x_t = s(t)\,(x_0 + \sigma(t)\,\varepsilon), \qquad \varepsilon \sim \mathcal N(0, I),$$

    (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
    Models", eq. 4). Its forward SDE is $dx = f(t) x\,dt + g(t)\,dW$ with
    $f = \frac{d}{dt}\log s$ and $g = s\sqrt{\frac{d}{dt}\sigma^2}$; the reverse-time SDE
    (Anderson 1982) and the probability-flow ODE (Song et al. 2021) follow from a score
    $\nabla_x \log p_t(x)$.

    A concrete process implements `scale`, `sigma`, `t_of_sigma` and `t_min`/`t_max` (fields
    or properties: the time range used for sampling); it may override `log_scale` and
    `sigma_sq` for accuracy. Derivatives come from `jax.jvp`, so they are exact.
    """

    @abc.abstractmethod
    def scale(self, t):
        """The scale `s(t)`."""

    @abc.abstractmethod
    def sigma(self, t):
        """The noise level `sigma(t)` (in the units of `x_0`)."""

    @abc.abstractmethod
    def t_of_sigma(self, sigma):
        """The inverse of `sigma(t)`, for `sigma >= 0` (a scalar or an array; `inf` is the
        end of a process that reaches pure noise). A concrete negative (or NaN) `sigma` is a
        `ValueError` (every jaxdiff process checks with `jaxdiff._checks.check_nonnegative`
        first); a traced one (inside `jit`, `vmap`, `grad`) cannot be checked and gives an
        unspecified value."""

    def log_scale(self, t):
        """`log s(t)`."""
        return jnp.log(self.scale(t))

    def sigma_sq(self, t):
        """`sigma(t)^2`."""
        return self.sigma(t) ** 2

    def noise_std(self, t):
        """`s(t) sigma(t)`: the standard deviation of the noise in `x_t` (finite where
        `sigma = inf` for a process that reaches pure noise, e.g. a flow at t = 1)."""
        return self.scale(t) * self.sigma(t)

    # -- coefficients of the forward SDE ------------------------------------------------------
    def drift_coef(self, t):
        """`f(t) = d/dt log s(t)`: the forward drift is `f(t) x`."""
        t = jnp.asarray(t, dtype=jnp.result_type(t, float))
        return jax.jvp(self.log_scale, (t,), (jnp.ones_like(t),))[1]

    def diffusion_coef(self, t):
        """`g(t) = s(t) sqrt(d sigma^2 / dt)`."""
        t = jnp.asarray(t, dtype=jnp.result_type(t, float))
        dsig2 = jax.jvp(self.sigma_sq, (t,), (jnp.ones_like(t),))[1]
        return self.scale(t) * jnp.sqrt(dsig2)

    # -- SDEs --------------------------------------------------------------------------------
    @property
    def sde(self) -> SDE:
        """The forward SDE `dx = f(t) x dt + g(t) dW`, a `jaxdiff.SDE` (additive noise)."""
        return SDE(_ForwardDrift(self), _Diffusion(self), additive=True)

    def reverse(self, score: Callable) -> SDE:
        r"""The reverse-time SDE `dx = [f x - g^2 score(x, t)] dt + g dW` (Anderson 1982), to
        be solved from `t_max` down to `t_min` (`jaxdiff.solve_sde` with decreasing `ts`).

        `score(x, t) -> grad_x log p_t(x)` takes batched `x` and a scalar `t`. Pass a pytree
        (an equinox Module, `jax.tree_util.Partial`, `gm.process_score(process)`) so that its
        arrays are traced: a lambda built anew for every call recompiles every solve and bakes
        the arrays it captures in as constants.
        """
        check_callable("score", score, "score(x, t)")
        return SDE(_ReverseDrift(self, score, 1.0), _Diffusion(self), additive=True)

    def probability_flow(self, score: Callable) -> SDE:
        """The probability-flow ODE `dx = [f x - g^2 score(x, t) / 2] dt` (Song et al. 2021),
        a `jaxdiff.SDE` with zero diffusion. As for `reverse`, pass `score` as a pytree (not a
        fresh lambda) to avoid recompiling."""
        check_callable("score", score, "score(x, t)")
        return SDE(_ReverseDrift(self, score, 0.5), None)

    # -- sampling ----------------------------------------------------------------------------
    def perturb(self, key, x0, t):
        """A sample of `x_t | x_0`: `s(t) (x_0 + sigma(t) eps)`.

        `key` is one PRNG key, `x0` a floating-point array (its dtype is the noise's and the
        result's), `t` a scalar or one time per sample (shape `(batch,)`, broadcast over the
        trailing axes of `x0`).
        """
        check_key(key)
        x0 = check_float_array("x0", x0)
        t = jnp.asarray(t, dtype=x0.dtype)
        if (
            not is_traced(t)
            and t.size
            and (float(jnp.min(t)) < 0 or float(jnp.max(t)) > float(self.t_max))
        ):
            raise ValueError(f"t must lie in [0, t_max={self.t_max}], got {t}")
        if t.ndim > 0:
            if t.shape != x0.shape[: t.ndim]:
                raise ValueError(
                    f"t must be a scalar or match the leading axes of x0: t has shape "
                    f"{t.shape}, x0 has shape {x0.shape}"
                )
            t = t.reshape(t.shape + (1,) * (x0.ndim - t.ndim))
        eps = jr.normal(key, x0.shape, x0.dtype)
        return self.scale(t) * (x0 + self.sigma(t) * eps)

    def prior_std(self):
        """The standard deviation `s(t_max) sigma(t_max)` of the prior at `t_max`."""
        return self.noise_std(jnp.asarray(self.t_max, dtype=jnp.result_type(float)))

    def prior_sample(self, key, shape, dtype=None):
        """Samples of the prior `N(0, (s sigma)^2 I)` at `t_max`."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        return self.prior_std().astype(dtype) * jr.normal(key, shape, dtype)

    def prior_log_prob(self, x):
        """Log density of the prior at `x`, summed over all but the leading (batch) axis."""
        x = jnp.asarray(x)
        std = self.prior_std().astype(x.dtype)
        axes = tuple(range(1, x.ndim))
        d = np.prod(x.shape[1:], dtype=int)
        return -0.5 * jnp.sum((x / std) ** 2, axis=axes) - d * (
            jnp.log(std) + 0.5 * jnp.log(2 * jnp.pi)
        )

    # -- conversions -------------------------------------------------------------------------
    def score_from_denoiser(self, denoiser: Callable) -> Callable:
        """The process-time score `score(x, t)` of a sigma-space denoiser `D(x, sigma)`."""
        return score_from_denoiser(denoiser, self)

    def denoiser_from_score(self, score: Callable) -> Callable:
        """The sigma-space denoiser `D(x, sigma)` of a process-time score `score(x, t)`."""
        return denoiser_from_score(score, self)


def process_input(process: AbstractProcess, y, sigma):
    """`(x_t, t)` for a sigma-space input `y` at `sigma`: `x_t = s(t) y`, or at `sigma = inf`
    (where `s = 0`) `x_t = noise_std(t) y` for the unit-variance noise `y`."""
    t = process.t_of_sigma(sigma)
    infinite = jnp.isinf(sigma)
    s = jnp.where(infinite, process.noise_std(t), process.scale(t))
    return s * y, t


class _ForwardDrift(eqx.Module):
    process: AbstractProcess

    def __call__(self, t, x, args):
        return jax.tree_util.tree_map(lambda v: self.process.drift_coef(t) * v, x)


class _Diffusion(eqx.Module):
    process: AbstractProcess

    def __call__(self, t, x, args):
        g = self.process.diffusion_coef(t)
        return jax.tree_util.tree_map(
            lambda v: jnp.broadcast_to(g, jnp.shape(v)).astype(v.dtype), x
        )


class _ReverseDrift(eqx.Module):
    process: AbstractProcess
    score: Any
    weight: float = eqx.field(static=True)  # 1 for the reverse SDE, 1/2 for the PF-ODE

    def __call__(self, t, x, args):
        f = self.process.drift_coef(t)
        g = self.process.diffusion_coef(t)
        score = self.score(x, t)
        if jnp.shape(score) != jnp.shape(x):  # checked while tracing
            raise ValueError(
                f"score(x, t) must return an array shaped like x {jnp.shape(x)}, got "
                f"{jnp.shape(score)} (is it score(x, t), with x first?)"
            )
        return f * x - (self.weight * g**2) * score


class ScoreFromDenoiser(eqx.Module):
    r"""`score(x, t) = (D(x/s, sigma) - x/s) / (s sigma^2)` with `s = s(t)`, `sigma = sigma(t)`."""

    denoiser: Any
    process: AbstractProcess

    def __call__(self, x, t):
        s, sigma = self.process.scale(t), self.process.sigma(t)
        y = x / s
        return (self.denoiser(y, sigma) - y) / (s * sigma**2)


class DenoiserFromScore(eqx.Module):
    r"""`D(y, sigma) = y + sigma^2 s score(s y, t)` with `t = t_of_sigma(sigma)`, `s = s(t)`."""

    score: Any
    process: AbstractProcess

    def __call__(self, y, sigma):
        t = self.process.t_of_sigma(sigma)
        s = self.process.scale(t)
        return y + sigma**2 * s * self.score(s * y, t)


def score_from_denoiser(denoiser: Callable, process: AbstractProcess) -> ScoreFromDenoiser:
    """The process-time score of a sigma-space denoiser `D(x, sigma) ~ E[x_0 | x]`
    (`x = x_0 + sigma eps`): `grad_x log p_t(x) = (D(x/s, sigma) - x/s) / (s sigma^2)`
    (Karras et al. 2022, eq. 3)."""
    check_callable("denoiser", denoiser, "denoiser(x, sigma)")
    check_instance("process", process, AbstractProcess, "a jaxdiff process")
    return ScoreFromDenoiser(denoiser, process)


def denoiser_from_score(score: Callable, process: AbstractProcess) -> DenoiserFromScore:
    """The sigma-space denoiser of a process-time score `score(x, t)`:
    `D(y, sigma) = y + sigma^2 s(t) score(s(t) y, t)` at `t = t_of_sigma(sigma)`."""
    check_callable("score", score, "score(x, t)")
    check_instance("process", process, AbstractProcess, "a jaxdiff process")
    return DenoiserFromScore(score, process)
