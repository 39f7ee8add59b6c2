"""Gaussian mixtures with diagonal components: an exact oracle at every noise level."""

from __future__ import annotations

import functools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp, ndtr
from jax.typing import ArrayLike

from .._checks import check_count, check_nonnegative, is_traced
from ..processes import AbstractFlow

__all__ = ["GaussianMixture", "ProcessScore"]

_LOG_2PI = math.log(2.0 * math.pi)
# Weights must sum to 1 within this relative tolerance (plus rounding of K terms).
_WEIGHT_SUM_RTOL = 1e-5


def _cast(a: ArrayLike, dtype: Any) -> jax.Array:
    """``jnp.asarray(a, dtype)``, skipping the conversion when the dtype already matches."""
    a = jnp.asarray(a)
    return a if a.dtype == dtype and not a.weak_type else a.astype(dtype)


def _as_real_array(name: str, value: Any) -> jax.Array:
    """Converts `value` to an array (numpy unless it is a jax array), real and numeric."""
    if isinstance(value, jax.Array):  # concrete or traced
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a real array; got {type(value).__name__}") from err
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real; got dtype {arr.dtype}")
    if not (jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == jnp.bool_):
        raise TypeError(f"{name} must be a real array; got dtype {arr.dtype}")
    return arr


def _check_values(means: np.ndarray, variances: np.ndarray, weights: np.ndarray, eps) -> None:
    """Checks the values of concrete mixture parameters (shapes are already checked)."""
    if not np.all(np.isfinite(means)):
        raise ValueError("means must be finite")
    if not np.all(variances > 0):
        bad = variances[~(variances > 0)]
        raise ValueError(
            f"variances must be positive; got {bad.size} entries <= 0 or NaN (e.g. {bad.flat[0]})"
        )
    if not np.all(np.isfinite(variances)):
        raise ValueError("variances must be finite")
    w = weights.astype(np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    if np.any(w < 0):
        raise ValueError(f"weights must be non-negative; got minimum {w.min()}")
    total = float(w.sum())
    if abs(total - 1.0) > _WEIGHT_SUM_RTOL + w.size * float(eps):
        raise ValueError(f"weights must sum to 1; got sum {total!r}")


class GaussianMixture(eqx.Module):
    r"""A mixture of Gaussians with diagonal covariances, exact at every noise level.

    The data density is

        p(x) = sum_k w_k N(x; mu_k, diag(v_k)),

    with K components in dimension d. Convolving with the noise N(0, sigma^2 I) keeps it a
    mixture of the same form, with every variance widened by sigma^2:

        p(x; sigma) = sum_k w_k N(x; mu_k, diag(v_k + sigma^2)).

    So the noisy log-density, its score and the posterior mean (the ideal denoiser) are all in
    closed form. With the responsibilities at noise level sigma,

        r_k(x) = w_k N(x; mu_k, v_k + sigma^2) / p(x; sigma),

    the score is ``grad log p(x; sigma) = sum_k r_k(x) (mu_k - x) / (v_k + sigma^2)`` and the
    denoiser (Tweedie's formula, the posterior mean of x0 given x = x0 + sigma eps) is

        D(x; sigma) = E[x0 | x] = sum_k r_k(x) [mu_k + v_k / (v_k + sigma^2) (x - mu_k)],

    so that ``score = (D - x) / sigma^2``. All divisions are by ``v_k + sigma^2 > 0``, never by
    sigma, so sigma = 0 is exact. Responsibilities are computed with a softmax over components,
    which stays stable for far-apart components and tiny variances.

    The mixture is an `equinox.Module` whose arrays (``means``, ``variances``, ``weights``) are
    pytree leaves: pass it to a jitted function as an argument and another mixture of the same
    shape and dtype reuses the compiled program. Results come in the promoted dtype of the
    input and the mixture (float32 in, float32 out for a float32 mixture); sigma is cast to it.
    Every noise level ``sigma`` must be ``>= 0`` (``inf`` included: pure noise); a concrete
    negative or NaN sigma is a ``ValueError``, a traced one (inside ``jit``) is not checked.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxdiff.analytic import GaussianMixture
        >>> gm = GaussianMixture(jnp.array([[-1.0, 0.0], [1.0, 0.0]]), 0.1)
        >>> x = gm.sample(jax.random.key(0), 5)
        >>> x.shape
        (5, 2)
        >>> gm.denoiser(x, 0.5).shape, gm.score(x, 0.5).shape, gm.log_prob(x, 0.5).shape
        ((5, 2), (5, 2), (5,))
        >>> float(gm.log_prob(jnp.zeros(2), sigma=0.0)) < float(gm.log_prob(gm.means[0]))
        True

    Attributes:
        means: component means, shape (K, d).
        variances: per-dimension component variances, shape (K, d), all positive.
        weights: mixture weights, shape (K,), non-negative, summing to 1.
    """

    means: jax.Array
    variances: jax.Array
    weights: jax.Array

    def __init__(self, means: ArrayLike, variances: ArrayLike, weights: ArrayLike | None = None):
        """Builds the mixture, checking shapes always and values when they are concrete.

        Arguments:
            means: component means, shape (K, d).
            variances: component variances: a scalar (shared by all components and
                dimensions), shape (K,) (isotropic components), or any shape broadcastable to
                (K, d) such as (1, d) or (K, d). Must be positive.
            weights: mixture weights, shape (K,), non-negative and summing to 1 (within a
                relative 1e-5); they are renormalized to sum to 1 exactly. ``None`` means
                uniform weights.

        Raises:
            ValueError: on wrong shapes, non-positive variances, or invalid weights.
            TypeError: on complex or non-numeric input.
        """
        means = _as_real_array("means", means)
        variances = _as_real_array("variances", variances)
        if weights is not None:
            weights = _as_real_array("weights", weights)
        parts = [means, variances] if weights is None else [means, variances, weights]
        # Concrete input is checked and prepared with numpy (no compilation); traced input
        # (construction inside jit) takes the same steps with jnp, values unchecked.
        concrete = not is_traced(parts)
        xp = np if concrete else jnp

        if means.ndim != 2:
            raise ValueError(
                f"means must be a 2-D array of shape (K, d) (K components in dimension d); "
                f"got shape {means.shape}"
            )
        num_components, dim = means.shape
        if num_components < 1 or dim < 1:
            raise ValueError(f"means must have K >= 1 components and d >= 1; got {means.shape}")

        dtype = jnp.result_type(*parts)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)

        kd = (num_components, dim)
        expected = (
            f"a scalar, shape (K,) = ({num_components},) for isotropic components, "
            f"or a shape broadcastable to (K, d) = {kd}"
        )
        if variances.ndim == 1:
            if variances.shape != (num_components,):
                raise ValueError(
                    f"variances must be {expected}; got shape {variances.shape} "
                    f"(for per-dimension variances shared by all components use shape (1, d))"
                )
            variances = variances[:, None]
        if variances.ndim > 2:
            raise ValueError(f"variances must be {expected}; got shape {variances.shape}")
        try:
            variances = xp.broadcast_to(variances, kd)
        except ValueError as err:
            raise ValueError(f"variances must be {expected}; got shape {variances.shape}") from err

        if weights is None:
            weights = xp.full((num_components,), 1.0 / num_components)
        elif weights.shape != (num_components,):
            raise ValueError(
                f"weights must have shape (K,) = ({num_components},) to match means; "
                f"got shape {weights.shape}"
            )

        if concrete:
            means, variances, weights = (np.asarray(a) for a in (means, variances, weights))
            _check_values(means, variances, weights, jnp.finfo(dtype).eps)
            weights = weights / weights.sum(dtype=np.float64)
        else:
            weights = weights / jnp.sum(weights)

        means = jnp.asarray(means, dtype)
        variances = jnp.asarray(variances, dtype)
        weights = jnp.asarray(weights, dtype)

        self.means = means
        self.variances = variances
        self.weights = weights

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        """The dimension d of the data."""
        return self.means.shape[-1]

    @property
    def num_components(self) -> int:
        """The number of components K."""
        return self.means.shape[-2]

    @property
    def log_weights(self) -> jax.Array:
        """Log mixture weights, shape (K,) (``-inf`` for zero weights)."""
        return jnp.log(self.weights)

    # ------------------------------------------------------------------ internals

    def _check_x(self, x: ArrayLike) -> jax.Array:
        """Checks x's shape and casts it to the compute dtype (x's and the mixture's)."""
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (..., d) with d = {self.dim}; got {x.shape}")
        return _cast(x, jnp.result_type(x, self.means))

    def _prepare(self, x: ArrayLike, sigma: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """Checked x and sigma, both in the compute dtype.

        Casting here, before the jitted kernels, gives them the same argument types whether
        sigma comes as a Python float, a numpy scalar or an array: one compilation, not three.
        """
        x = self._check_x(x)
        check_nonnegative("sigma", sigma)
        return x, _cast(sigma, x.dtype)

    # ------------------------------------------------------------------ densities

    def log_prob(self, x: ArrayLike, sigma: ArrayLike = 0.0) -> jax.Array:
        """Log-density of the noisy distribution p(.; sigma) = p_data * N(0, sigma^2 I).

        Arguments:
            x: points, shape (..., d).
            sigma: noise level, a scalar or an array broadcastable to ``x.shape[:-1]``.
                ``sigma = 0`` gives the data density.

        Returns:
            log p(x; sigma), shape ``broadcast(x.shape[:-1], sigma.shape)``.
        """
        return _log_prob(self, *self._prepare(x, sigma))

    def responsibilities(self, x: ArrayLike, sigma: ArrayLike = 0.0) -> jax.Array:
        """Posterior component probabilities r_k(x) at noise level sigma.

        Arguments:
            x: points, shape (..., d).
            sigma: noise level, a scalar or an array broadcastable to ``x.shape[:-1]``.

        Returns:
            r, shape (..., K), non-negative and summing to 1 over the last axis.
        """
        return _responsibilities(self, *self._prepare(x, sigma))

    def score(self, x: ArrayLike, sigma: ArrayLike) -> jax.Array:
        """Score of the noisy distribution, in closed form.

        ``grad_x log p(x; sigma) = sum_k r_k(x) (mu_k - x) / (v_k + sigma^2)``.

        Arguments:
            x: points, shape (..., d).
            sigma: noise level, a scalar or an array broadcastable to ``x.shape[:-1]``;
                ``sigma = 0`` gives the data score.

        Returns:
            The score, shape (..., d) (batch dims broadcast with sigma's shape).
        """
        return _score(self, *self._prepare(x, sigma))

    def denoiser(self, x: ArrayLike, sigma: ArrayLike) -> jax.Array:
        """The ideal denoiser D(x; sigma) = E[x0 | x0 + sigma eps = x], in closed form.

        ``D = sum_k r_k(x) [mu_k + v_k / (v_k + sigma^2) (x - mu_k)]``; at ``sigma = 0`` it is
        the identity, at ``sigma = inf`` (pure noise, ``x`` the unit-variance noise) the
        mixture's mean, the exact limit.

        Arguments:
            x: noisy points, shape (..., d).
            sigma: noise level, a scalar or an array broadcastable to ``x.shape[:-1]``.

        Returns:
            The posterior mean of x0, shape (..., d) (batch dims broadcast with sigma's shape).
        """
        return _denoiser(self, *self._prepare(x, sigma))

    def cdf_projected(self, u: ArrayLike, z: ArrayLike, sigma: ArrayLike = 0.0) -> jax.Array:
        """Exact CDF of the projection ``u . x`` for x ~ p(.; sigma).

        The projection of the mixture is the 1-D mixture
        ``sum_k w_k N(u . mu_k, sum_j u_j^2 (v_kj + sigma^2))``. Useful for goodness-of-fit
        tests of samples (e.g. a Kolmogorov-Smirnov test on random projections).

        Arguments:
            u: a non-zero direction, shape (d,); it need not be normalized.
            z: points at which to evaluate the CDF, any shape.
            sigma: noise level, a scalar or an array broadcastable to z's shape.

        Returns:
            P(u . x <= z), shape ``broadcast(z.shape, sigma.shape)``.
        """
        u = jnp.asarray(u)
        if u.shape != (self.dim,):
            raise ValueError(f"u must have shape (d,) = ({self.dim},); got {u.shape}")
        check_nonnegative("sigma", sigma)
        dtype = jnp.result_type(u, z, self.means)
        return _cdf_projected(self, _cast(u, dtype), _cast(z, dtype), _cast(sigma, dtype))

    # ------------------------------------------------------------------ moments

    def mean(self) -> jax.Array:
        """The exact mean of the data distribution.

        Returns:
            ``sum_k w_k mu_k``, shape (d,). Noise does not change it.
        """
        return _mean(self)

    def covariance(self, sigma: ArrayLike = 0.0) -> jax.Array:
        """The exact covariance of p(.; sigma).

        ``sum_k w_k [diag(v_k) + (mu_k - m)(mu_k - m)^T] + sigma^2 I`` with m the mean.

        Arguments:
            sigma: noise level, a scalar (default 0: the data covariance).

        Returns:
            The covariance matrix, shape (d, d).
        """
        check_nonnegative("sigma", sigma)
        return _covariance(self, _cast(sigma, self.means.dtype))

    # ------------------------------------------------------------------ sampling

    def _sample(self, key: jax.Array, n: Any, sigma: ArrayLike) -> jax.Array:
        n = check_count("n", n, minimum=0)
        check_nonnegative("sigma", sigma)
        return _sample(self, key, _cast(sigma, self.means.dtype), n)

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """Draws exact samples of the data distribution (sigma = 0).

        Arguments:
            key: a `jax.random` key.
            n: the number of samples, a Python int (static under jit).

        Returns:
            Samples, shape (n, d), in the mixture's dtype.
        """
        return self._sample(key, n, 0.0)

    def sample_noisy(self, key: jax.Array, n: int, sigma: ArrayLike) -> jax.Array:
        """Draws exact samples of the noisy distribution p(.; sigma).

        Arguments:
            key: a `jax.random` key.
            n: the number of samples, a Python int (static under jit).
            sigma: noise level, a scalar or shape (n,) for one level per sample.

        Returns:
            Samples, shape (n, d), in the mixture's dtype.
        """
        return self._sample(key, n, sigma)

    # ------------------------------------------------------------------ processes

    def process_score(self, process: Any) -> ProcessScore:
        """The exact score of a forward process ``x_t = s(t) (x_0 + sigma(t) eps)``.

        The process-time density is ``p_t(x) = s^{-d} p(x / s; sigma(t))``, so
        ``grad_x log p_t(x) = score(x / s, sigma(t)) / s``.

        Arguments:
            process: any object with methods ``scale(t)`` and ``sigma(t)`` (a jaxdiff process).

        Returns:
            A `ProcessScore`, an equinox Module holding this mixture and the process, called as
            ``score_fn(x, t)`` with x of shape (..., d) and t a scalar or broadcastable to
            ``x.shape[:-1]``; returns shape (..., d). Being a pytree rather than a closure, it
            passes through `jax.jit` as an argument without recompiling for a new mixture.
        """
        _check_process(process)
        return ProcessScore(self, process)

    def process_velocity(self, process: Any):
        """The exact velocity field of a flow path (`jaxdiff.RectifiedFlow`, `TrigFlow`,
        `AffineFlow`): ``v(x, t) = E[alpha'(t) x_0 + beta'(t) eps | x_t = x]``, from the exact
        denoiser; finite on all of ``[0, 1]`` including ``t = 1`` (pure noise).

        Returns:
            A pytree called as ``velocity(x, t)`` with x of shape (..., d) and a scalar t.
        """
        if not isinstance(process, AbstractFlow):
            raise TypeError(
                f"process must be a flow (jaxdiff.RectifiedFlow, TrigFlow or AffineFlow), "
                f"got {type(process).__name__}"
            )
        return process.velocity_from_denoiser(self.denoiser)

    def process_log_prob(self, x: ArrayLike, t: ArrayLike, process: Any) -> jax.Array:
        """Log-density of the marginal of a forward process at time t.

        ``log p_t(x) = log p(x / s(t); sigma(t)) - d log s(t)``.

        Arguments:
            x: points, shape (..., d).
            t: time, a scalar or an array broadcastable to ``x.shape[:-1]``.
            process: any object with methods ``scale(t)`` and ``sigma(t)``.

        Returns:
            log p_t(x), shape (...,).
        """
        _check_process(process)
        x = self._check_x(x)
        s = jnp.asarray(process.scale(t)).astype(jnp.result_type(x, self.means))
        return self.log_prob(x / s[..., None], process.sigma(t)) - self.dim * jnp.log(s)


def _check_process(process: Any) -> None:
    for name in ("scale", "sigma"):
        if not callable(getattr(process, name, None)):
            raise TypeError(
                f"process must have methods scale(t) and sigma(t); "
                f"{type(process).__name__} has no {name}(t)"
            )


class ProcessScore(eqx.Module):
    """The exact process-time score of a `GaussianMixture` under a forward process.

    ``score_fn(x, t) = score(x / s(t), sigma(t)) / s(t)``. Built by
    `GaussianMixture.process_score`; a pytree holding the mixture and the process.

    Attributes:
        mixture: the data distribution.
        process: the forward process (anything with ``scale(t)`` and ``sigma(t)``).
    """

    mixture: GaussianMixture
    process: Any

    def __call__(self, x: ArrayLike, t: ArrayLike) -> jax.Array:
        """Evaluates the score of the process marginal p_t at x.

        Arguments:
            x: points, shape (..., d).
            t: time, a scalar or an array broadcastable to ``x.shape[:-1]``.

        Returns:
            grad_x log p_t(x), shape (..., d).
        """
        x = self.mixture._check_x(x)
        s = jnp.asarray(self.process.scale(t)).astype(jnp.result_type(x, self.mixture.means))
        s = s[..., None]
        return self.mixture.score(x / s, self.process.sigma(t)) / s


# ---------------------------------------------------------------------- compiled kernels
# Each public method checks its input in Python and casts it to the compute dtype, then runs
# one of these jitted functions: called eagerly that is one compiled program per shape instead
# of one per primitive; inside a user's jit they are inlined.


def _log_joint(gm: GaussianMixture, x: jax.Array, sigma: jax.Array):
    """Per-component log terms at noise level sigma (x and sigma already in one dtype).

    Returns (log_joint, diff, total_var): ``log_joint[..., k] = log w_k + log N(x; mu_k,
    v_k + sigma^2)`` with shape (..., K), ``diff = x - mu_k`` with shape (..., K, d) and
    ``total_var = v_k + sigma^2`` broadcastable to (..., K, d).
    """
    total_var = gm.variances + jnp.square(sigma)[..., None, None]
    diff = x[..., None, :] - gm.means
    log_norm = jnp.sum(jnp.log(total_var), axis=-1) + gm.dim * _LOG_2PI
    maha = jnp.sum(jnp.square(diff) / total_var, axis=-1)
    log_joint = gm.log_weights - 0.5 * (maha + log_norm)
    return log_joint, diff, total_var


@jax.jit
def _log_prob(gm: GaussianMixture, x: jax.Array, sigma: jax.Array) -> jax.Array:
    log_joint, _, _ = _log_joint(gm, x, sigma)
    return logsumexp(log_joint, axis=-1)


@jax.jit
def _responsibilities(gm: GaussianMixture, x: jax.Array, sigma: jax.Array) -> jax.Array:
    log_joint, _, _ = _log_joint(gm, x, sigma)
    return jax.nn.softmax(log_joint, axis=-1)


@jax.jit
def _score(gm: GaussianMixture, x: jax.Array, sigma: jax.Array) -> jax.Array:
    log_joint, diff, total_var = _log_joint(gm, x, sigma)
    resp = jax.nn.softmax(log_joint, axis=-1)
    return -jnp.sum(resp[..., None] * (diff / total_var), axis=-2)


@jax.jit
def _denoiser(gm: GaussianMixture, x: jax.Array, sigma: jax.Array) -> jax.Array:
    # sigma = inf (pure noise, x the unit-variance noise): the limit is the data mean
    infinite = jnp.isinf(sigma)
    log_joint, diff, total_var = _log_joint(gm, x, jnp.where(infinite, 1, sigma))
    resp = jax.nn.softmax(log_joint, axis=-1)
    # mu_k + v_k / (v_k + sigma^2) (x - mu_k): accurate for large sigma, exactly x at sigma = 0.
    posterior_means = gm.means + (gm.variances / total_var) * diff
    d = jnp.sum(resp[..., None] * posterior_means, axis=-2)
    return jnp.where(infinite[..., None], _mean(gm), d)


@jax.jit
def _cdf_projected(gm: GaussianMixture, u: jax.Array, z: jax.Array, sigma: jax.Array):
    u2 = jnp.square(u)
    proj_mean = gm.means @ u  # (K,)
    proj_var = gm.variances @ u2 + jnp.square(sigma)[..., None] * jnp.sum(u2)  # (..., K)
    standardized = (z[..., None] - proj_mean) / jnp.sqrt(proj_var)
    return jnp.sum(gm.weights * ndtr(standardized), axis=-1)


@jax.jit
def _mean(gm: GaussianMixture) -> jax.Array:
    return gm.weights @ gm.means


@jax.jit
def _covariance(gm: GaussianMixture, sigma: jax.Array) -> jax.Array:
    centred = gm.means - gm.weights @ gm.means
    between = (centred * gm.weights[:, None]).T @ centred
    within = gm.weights @ gm.variances
    return between + jnp.diag(within + jnp.square(sigma))


@functools.partial(jax.jit, static_argnames="n")
def _sample(gm: GaussianMixture, key: jax.Array, sigma: jax.Array, n: int) -> jax.Array:
    component_key, noise_key = jax.random.split(key)
    # Inverse-CDF draw (one uniform per sample; never picks a zero-weight component).
    components = jax.random.choice(component_key, gm.num_components, (n,), p=gm.weights)
    eps = jax.random.normal(noise_key, (n, gm.dim), gm.means.dtype)
    std = jnp.sqrt(gm.variances[components] + jnp.square(sigma)[..., None])
    return gm.means[components] + std * eps
