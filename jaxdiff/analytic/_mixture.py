"""The math shared by the Gaussian-mixture oracles (diagonal and full covariances).

Every component k of a mixture is written in its principal axes: an orthogonal matrix U_k whose
columns are the eigenvectors of its covariance C_k and the variances lambda_k along them,
``C_k = U_k diag(lambda_k) U_k^T``. Adding the noise sigma^2 I keeps the axes and widens every
variance, ``C_k + sigma^2 I = U_k diag(lambda_k + sigma^2) U_k^T``, so one factorization,
computed when the mixture is built, serves every noise level (a per-sample sigma included)
without factoring again: in each component's axes the math is that of a diagonal Gaussian. A
diagonal mixture is the case U_k = I (no rotation at all), a full-covariance one stores U_k.
"""

from __future__ import annotations

import abc
import dataclasses
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

__all__ = ["AbstractGaussianMixture", "ProcessScore"]

_LOG_2PI = math.log(2.0 * math.pi)
# Weights must sum to 1 within this relative tolerance (plus rounding of K terms).
_WEIGHT_SUM_RTOL = 1e-5


# ---------------------------------------------------------------------- construction helpers


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


def _float_dtype(*parts: Any) -> Any:
    """The promoted dtype of the parts, the default float when they are all integers."""
    dtype = jnp.result_type(*parts)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def _check_means_shape(means: Any) -> tuple[int, int]:
    """(K, d) of a means array, which must be 2-D with K, d >= 1."""
    if means.ndim != 2:
        raise ValueError(
            f"means must be a 2-D array of shape (K, d) (K components in dimension d); "
            f"got shape {means.shape}"
        )
    num_components, dim = means.shape
    if num_components < 1 or dim < 1:
        raise ValueError(f"means must have K >= 1 components and d >= 1; got {means.shape}")
    return num_components, dim


def _weights_or_uniform(weights: Any, num_components: int, xp: Any) -> Any:
    """The weights (shape-checked against K), or uniform ones when `weights` is None."""
    if weights is None:
        return xp.full((num_components,), 1.0 / num_components)
    if weights.shape != (num_components,):
        raise ValueError(
            f"weights must have shape (K,) = ({num_components},) to match means; "
            f"got shape {weights.shape}"
        )
    return weights


def _check_means_and_weights(means: np.ndarray, weights: np.ndarray, eps: float) -> None:
    """Checks the values of concrete means and weights (shapes are already checked)."""
    if not np.all(np.isfinite(means)):
        raise ValueError("means must be finite")
    w = weights.astype(np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    if np.any(w < 0):
        raise ValueError(f"weights must be non-negative; got minimum {w.min()}")
    total = float(w.sum())
    if abs(total - 1.0) > _WEIGHT_SUM_RTOL + w.size * float(eps):
        raise ValueError(f"weights must sum to 1; got sum {total!r}")


def _check_labels(labels: Any, num_components: int) -> tuple[int, ...] | None:
    """Labels as a tuple of Python ints, one per component (or None).

    Labels fix the classes, hence the shapes of `class_log_posterior`: they are static, so they
    must be concrete integers (not traced)."""
    if labels is None:
        return None
    if is_traced(labels):
        raise TypeError("labels must be concrete integers (they fix the classes), not traced")
    try:
        arr = np.asarray(labels)
    except (TypeError, ValueError) as err:
        raise TypeError(f"labels must be an integer array; got {type(labels).__name__}") from err
    if arr.dtype == np.bool_ or not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"labels must be integers; got dtype {arr.dtype}")
    if arr.shape != (num_components,):
        raise ValueError(
            f"labels must have shape (K,) = ({num_components},), one class per component; "
            f"got shape {arr.shape}"
        )
    return tuple(int(v) for v in arr)


def _assemble(cls: type, **fields: Any) -> Any:
    """An instance of the equinox Module `cls` from the values of all its fields, without
    running its constructor (for results that are correct by construction, e.g. a posterior)."""
    obj = object.__new__(cls)
    for field in dataclasses.fields(cls):
        object.__setattr__(obj, field.name, fields.pop(field.name))
    if fields:
        raise TypeError(f"unknown fields for {cls.__name__}: {sorted(fields)}")
    return obj


# ---------------------------------------------------------------------- the base class


class AbstractGaussianMixture(eqx.Module):
    r"""A Gaussian mixture, exact at every noise level: the methods shared by
    `GaussianMixture` (diagonal covariances) and `FullGaussianMixture` (full covariances).

    The data density is ``p(x) = sum_k w_k N(x; mu_k, C_k)``; the noisy density at noise level
    sigma (``x = x0 + sigma eps``) is ``p(x; sigma) = sum_k w_k N(x; mu_k, C_k + sigma^2 I)``.
    With the responsibilities ``r_k(x) = w_k N(x; mu_k, C_k + sigma^2 I) / p(x; sigma)``, the
    score is ``sum_k r_k (C_k + sigma^2 I)^{-1} (mu_k - x)`` and the ideal denoiser (Tweedie's
    formula) ``D(x; sigma) = E[x0 | x] = sum_k r_k [mu_k + C_k (C_k + sigma^2 I)^{-1} (x - mu_k)]``,
    so that ``score = (D - x) / sigma^2``. Each is computed in the components' principal axes
    (eigenvectors of C_k, found once at construction), where ``(C_k + sigma^2 I)^{-1}`` is a
    division by ``lambda_k + sigma^2 > 0``: never by sigma, so sigma = 0 is exact.

    Components may carry integer class labels (``labels=``): then ``classes``,
    ``class_conditional``, ``class_log_prob`` and ``class_log_posterior`` give the exact
    class-conditional mixtures and class posteriors p(class | x_sigma) at every noise level.
    ``posterior(A, y, noise_std)`` conditions the mixture on a linear-Gaussian observation.

    Subclasses define the fields ``means`` (K, d), ``weights`` (K,) and the static ``labels``
    (a tuple of K ints, or None), and the three methods below that describe their covariances.
    """

    # ------------------------------------------------------------------ what subclasses define

    @abc.abstractmethod
    def _spectrum(self) -> jax.Array:
        """The component variances along their principal axes, shape (K, d), all >= 0."""

    @abc.abstractmethod
    def _axes(self) -> jax.Array | None:
        """The principal axes U_k (columns), shape (K, d, d); None for the identity."""

    @abc.abstractmethod
    def component_covariances(self) -> jax.Array:
        """The covariance matrix of every component, shape (K, d, d)."""

    @abc.abstractmethod
    def to_full(self):
        """The same mixture as a `FullGaussianMixture`."""

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

    @property
    def classes(self) -> tuple[int, ...]:
        """The distinct class labels of the components, sorted (needs ``labels=``)."""
        return tuple(sorted(set(self._require_labels())))

    @property
    def num_classes(self) -> int:
        """The number of distinct class labels (needs ``labels=``)."""
        return len(self.classes)

    # ------------------------------------------------------------------ internals

    def _require_labels(self) -> tuple[int, ...]:
        if self.labels is None:
            raise ValueError(
                f"this {type(self).__name__} has no class labels; build it with "
                f"labels=... (one integer class per component)"
            )
        return self.labels

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

    def _check_label(self, label: Any) -> jax.Array:
        """A class label (or an integer array of them); concrete ones must be classes."""
        classes = self.classes
        if is_traced(label):
            arr = label
        else:
            arr = np.asarray(label)
            if arr.dtype == np.bool_ or not jnp.issubdtype(arr.dtype, jnp.integer):
                raise TypeError(f"label must be an integer class label; got {label!r}")
            unknown = sorted(set(arr.ravel().tolist()) - set(classes))
            if unknown:
                raise ValueError(f"label must be one of the classes {classes}; got {unknown[0]}")
        if not jnp.issubdtype(jnp.result_type(arr), jnp.integer):
            raise TypeError(f"label must be an integer class label; got dtype {arr.dtype}")
        return jnp.asarray(arr)

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

        ``grad_x log p(x; sigma) = sum_k r_k(x) (C_k + sigma^2 I)^{-1} (mu_k - x)``.

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

        ``D = sum_k r_k(x) [mu_k + C_k (C_k + sigma^2 I)^{-1} (x - mu_k)]``; at ``sigma = 0`` it
        is the identity, at ``sigma = inf`` (pure noise, ``x`` the unit-variance noise) the
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
        ``sum_k w_k N(u . mu_k, u^T C_k u + sigma^2 |u|^2)``. Useful for goodness-of-fit tests
        of samples (e.g. a Kolmogorov-Smirnov test on random projections).

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

        ``sum_k w_k [C_k + (mu_k - m)(mu_k - m)^T] + sigma^2 I`` with m the mean.

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

    # ------------------------------------------------------------------ classes

    def class_conditional(self, label: int):
        """The mixture of one class: only the components labelled `label`, their weights
        renormalized to sum to 1. Its denoiser is the exact class-conditional denoiser
        ``E[x0 | x_sigma, class = label]`` at every noise level.

        Arguments:
            label: one of ``classes`` (a concrete int).

        Returns:
            A mixture of the same type, with the class's components (and labels).
        """
        if is_traced(label) or np.ndim(label) != 0:
            raise TypeError(f"label must be a concrete int class label; got {label!r}")
        self._check_label(label)
        label = int(label)
        index = np.array([k for k, c in enumerate(self.labels) if c == label])
        if is_traced(self):
            sub = jax.tree.map(lambda a: a[index], self)
            weights = sub.weights / jnp.sum(sub.weights)
        else:  # numpy, no compilation
            sub = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)[index]), self)
            weights = np.asarray(sub.weights)
            total = weights.sum(dtype=np.float64)
            if not total > 0:
                raise ValueError(f"label {label}: the class's components all have weight 0")
            weights = jnp.asarray(weights / total, sub.weights.dtype)
        fields = {f.name: getattr(sub, f.name) for f in dataclasses.fields(sub)}
        fields.update(weights=weights, labels=(label,) * index.size)
        return _assemble(type(self), **fields)

    def class_log_prob(self, x: ArrayLike, sigma: ArrayLike, label: Any) -> jax.Array:
        """The exact class posterior log p(label | x_sigma) at noise level sigma.

        ``log sum_{k in label} r_k(x)``, computed from the per-component log-densities (a
        difference of two log-sum-exps), so that its gradient, ``grad_x log p(label | x)``, is
        exact too: ``denoiser + sigma^2 grad class_log_prob`` is the class-conditional denoiser.

        Arguments:
            x: noisy points, shape (..., d).
            sigma: noise level, a scalar or an array broadcastable to ``x.shape[:-1]``.
            label: a class label, or an integer array of them broadcastable to
                ``x.shape[:-1]``; concrete labels must be in ``classes`` (a traced label that is
                not a class gives ``-inf``).

        Returns:
            log p(label | x_sigma), shape (...,).
        """
        x, sigma = self._prepare(x, sigma)
        return _class_log_prob(self, x, sigma, self._check_label(label))

    def class_log_posterior(self, x: ArrayLike, sigma: ArrayLike) -> jax.Array:
        """The exact class posteriors log p(c | x_sigma) of every class c in ``classes``.

        Arguments:
            x: noisy points, shape (..., d).
            sigma: noise level, a scalar or an array broadcastable to ``x.shape[:-1]``.

        Returns:
            Shape (..., num_classes), columns in the order of ``classes``; ``exp`` of each row
            sums to 1.
        """
        self._require_labels()
        return _class_log_posterior(self, *self._prepare(x, sigma))

    # ------------------------------------------------------------------ inverse problems

    def posterior(self, A: ArrayLike, y: ArrayLike, noise_std: ArrayLike):
        r"""The exact posterior of x0 given one linear-Gaussian observation.

        For ``y = A x0 + noise_std * n`` with ``n ~ N(0, I)``, every component conditions in
        closed form (the Kalman update) and the component weights are reweighted by how well
        each explains y:

            S_k = A C_k A^T + noise_std^2 I,   K_k = C_k A^T S_k^{-1},
            mu_k' = mu_k + K_k (y - A mu_k),   C_k' = C_k - K_k A C_k,
            w_k' \propto w_k N(y; A mu_k, S_k),

        all with a Cholesky factorization of S_k (no inverse). The result is a
        `FullGaussianMixture`, so its ``denoiser(x, sigma)`` is the exact posterior denoiser
        ``E[x0 | x_sigma, y]`` at every noise level, ``sample`` draws exact posterior samples
        and ``score``/``log_prob`` are those of p(x_sigma | y). Labels are kept, so
        ``class_conditional`` and ``class_log_prob`` of the posterior work too. Jit- and
        vmap-able (e.g. over y).

        ``noise_std = 0`` (an exact observation) is allowed when every ``A C_k A^T`` is
        invertible (A of full row rank): the posterior then lives on the affine subspace
        ``A x = y``, its covariances are singular, and its ``denoiser``/``score``/``log_prob``
        are exact for sigma > 0 (at sigma = 0 the denoiser is the identity and ``log_prob``
        is not a density).

        Arguments:
            A: the observation matrix, shape (m, d) (m measurements of the d-dim sample; for a
                mask, the rows of the identity that are observed).
            y: the observation, shape (m,).
            noise_std: the observation noise's standard deviation, a scalar >= 0.

        Returns:
            The posterior, a `FullGaussianMixture` with K components.

        Raises:
            ValueError: when A is not (m, d), y not (m,), noise_std < 0, or (concretely) the
                conditioning is singular (noise_std = 0 and A C_k A^T not invertible).
        """
        from ._posterior import posterior

        return posterior(self, A, y, noise_std)

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
    """The exact process-time score of a Gaussian mixture under a forward process.

    ``score_fn(x, t) = score(x / s(t), sigma(t)) / s(t)``. Built by ``process_score`` of a
    `GaussianMixture` or `FullGaussianMixture`; a pytree holding the mixture and the process.

    Attributes:
        mixture: the data distribution.
        process: the forward process (anything with ``scale(t)`` and ``sigma(t)``).
    """

    mixture: AbstractGaussianMixture
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
# of one per primitive; inside a user's jit they are inlined. The mixture's type is part of its
# pytree structure, so one kernel serves both classes (one compilation each).


def _to_axes(axes: jax.Array | None, v: jax.Array) -> jax.Array:
    """``U_k^T v_k`` for v of shape (..., K, d): coordinates in each component's axes."""
    return v if axes is None else jnp.einsum("kji,...kj->...ki", axes, v)


def _from_axes(axes: jax.Array | None, c: jax.Array) -> jax.Array:
    """``U_k c_k`` for c of shape (..., K, d): back from each component's axes."""
    return c if axes is None else jnp.einsum("kij,...kj->...ki", axes, c)


def _log_joint(gm: AbstractGaussianMixture, x: jax.Array, sigma: jax.Array):
    """Per-component log terms at noise level sigma (x and sigma already in one dtype).

    Returns (log_joint, z, total_var): ``log_joint[..., k] = log w_k + log N(x; mu_k,
    C_k + sigma^2 I)`` with shape (..., K); ``z = U_k^T (x - mu_k)``, shape (..., K, d), and
    ``total_var = lambda_k + sigma^2``, broadcastable to (..., K, d).
    """
    total_var = gm._spectrum() + jnp.square(sigma)[..., None, None]
    z = _to_axes(gm._axes(), x[..., None, :] - gm.means)
    log_norm = jnp.sum(jnp.log(total_var), axis=-1) + gm.dim * _LOG_2PI
    maha = jnp.sum(jnp.square(z) / total_var, axis=-1)
    log_joint = gm.log_weights - 0.5 * (maha + log_norm)
    return log_joint, z, total_var


@jax.jit
def _log_prob(gm, x: jax.Array, sigma: jax.Array) -> jax.Array:
    log_joint, _, _ = _log_joint(gm, x, sigma)
    return logsumexp(log_joint, axis=-1)


@jax.jit
def _responsibilities(gm, x: jax.Array, sigma: jax.Array) -> jax.Array:
    log_joint, _, _ = _log_joint(gm, x, sigma)
    return jax.nn.softmax(log_joint, axis=-1)


@jax.jit
def _score(gm, x: jax.Array, sigma: jax.Array) -> jax.Array:
    log_joint, z, total_var = _log_joint(gm, x, sigma)
    resp = jax.nn.softmax(log_joint, axis=-1)
    return -jnp.sum(resp[..., None] * _from_axes(gm._axes(), z / total_var), axis=-2)


@jax.jit
def _denoiser(gm, x: jax.Array, sigma: jax.Array) -> jax.Array:
    # sigma = inf (pure noise, x the unit-variance noise): the limit is the data mean
    infinite = jnp.isinf(sigma)
    log_joint, z, total_var = _log_joint(gm, x, jnp.where(infinite, 1, sigma))
    resp = jax.nn.softmax(log_joint, axis=-1)
    # mu_k + U_k diag(lambda / (lambda + sigma^2)) U_k^T (x - mu_k): accurate for large sigma,
    # exactly x at sigma = 0 (also along a zero variance of a degenerate posterior: ratio 1).
    spectrum = gm._spectrum()
    ratio = jnp.where(total_var > 0, spectrum / jnp.where(total_var > 0, total_var, 1), 1)
    posterior_means = gm.means + _from_axes(gm._axes(), ratio * z)
    d = jnp.sum(resp[..., None] * posterior_means, axis=-2)
    # sigma = 0: x itself, exactly (a degenerate posterior's responsibilities are 0/0 there)
    d = jnp.where((sigma == 0)[..., None], x, d)
    return jnp.where(infinite[..., None], _mean(gm), d)


@jax.jit
def _cdf_projected(gm, u: jax.Array, z: jax.Array, sigma: jax.Array):
    u_axes = _to_axes(gm._axes(), jnp.broadcast_to(u, gm.means.shape))  # (K, d)
    proj_mean = gm.means @ u  # (K,)
    proj_var = jnp.sum(gm._spectrum() * jnp.square(u_axes), axis=-1)
    proj_var = proj_var + jnp.square(sigma)[..., None] * jnp.sum(jnp.square(u))  # (..., K)
    standardized = (z[..., None] - proj_mean) / jnp.sqrt(proj_var)
    return jnp.sum(gm.weights * ndtr(standardized), axis=-1)


@jax.jit
def _mean(gm) -> jax.Array:
    return gm.weights @ gm.means


@jax.jit
def _covariance(gm, sigma: jax.Array) -> jax.Array:
    centred = gm.means - gm.weights @ gm.means
    between = (centred * gm.weights[:, None]).T @ centred
    within = jnp.einsum("k,kij->ij", gm.weights, gm.component_covariances())
    return between + within + jnp.square(sigma) * jnp.eye(gm.dim, dtype=between.dtype)


@functools.partial(jax.jit, static_argnames="n")
def _sample(gm, key: jax.Array, sigma: jax.Array, n: int) -> jax.Array:
    component_key, noise_key = jax.random.split(key)
    # Inverse-CDF draw (one uniform per sample; never picks a zero-weight component).
    components = jax.random.choice(component_key, gm.num_components, (n,), p=gm.weights)
    eps = jax.random.normal(noise_key, (n, gm.dim), gm.means.dtype)
    std = jnp.sqrt(gm._spectrum()[components] + jnp.square(sigma)[..., None])
    axes = gm._axes()
    step = std * eps
    if axes is not None:
        step = jnp.einsum("nij,nj->ni", axes[components], step)
    return gm.means[components] + step


def _class_masks(gm) -> np.ndarray:
    """Boolean (K, C): whether component k is in class c (classes sorted). Static."""
    return np.asarray(gm.labels)[:, None] == np.asarray(gm.classes)[None, :]


@jax.jit
def _class_log_prob(gm, x: jax.Array, sigma: jax.Array, label: jax.Array) -> jax.Array:
    log_joint, _, _ = _log_joint(gm, x, sigma)
    in_class = jnp.asarray(gm.labels) == label[..., None]  # (..., K)
    log_class = logsumexp(jnp.where(in_class, log_joint, -jnp.inf), axis=-1)
    return log_class - logsumexp(log_joint, axis=-1)


@jax.jit
def _class_log_posterior(gm, x: jax.Array, sigma: jax.Array) -> jax.Array:
    log_joint, _, _ = _log_joint(gm, x, sigma)
    masked = jnp.where(_class_masks(gm), log_joint[..., :, None], -jnp.inf)  # (..., K, C)
    return logsumexp(masked, axis=-2) - logsumexp(log_joint, axis=-1)[..., None]
