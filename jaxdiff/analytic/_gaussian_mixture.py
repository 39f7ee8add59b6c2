"""Gaussian mixtures with diagonal components: an exact oracle at every noise level."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import is_traced
from ._full_covariance import FullGaussianMixture
from ._mixture import (
    AbstractGaussianMixture,
    ProcessScore,
    _as_real_array,
    _assemble,
    _check_labels,
    _check_means_and_weights,
    _check_means_shape,
    _float_dtype,
    _weights_or_uniform,
)

__all__ = ["GaussianMixture", "ProcessScore"]


class GaussianMixture(AbstractGaussianMixture):
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
    which stays stable for far-apart components and tiny variances. `FullGaussianMixture` is
    the same with full covariance matrices (``to_full()`` converts); both share every method
    (`AbstractGaussianMixture`), including class labels and exact posteriors under a
    linear-Gaussian observation (``posterior``).

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
        labels: the class label of every component (a tuple of K ints, static), or None.
    """

    means: jax.Array
    variances: jax.Array
    weights: jax.Array
    labels: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        means: ArrayLike,
        variances: ArrayLike,
        weights: ArrayLike | None = None,
        *,
        labels: Any = None,
    ):
        """Builds the mixture, checking shapes always and values when they are concrete.

        Arguments:
            means: component means, shape (K, d).
            variances: component variances: a scalar (shared by all components and
                dimensions), shape (K,) (isotropic components), or any shape broadcastable to
                (K, d) such as (1, d) or (K, d). Must be positive.
            weights: mixture weights, shape (K,), non-negative and summing to 1 (within a
                relative 1e-5); they are renormalized to sum to 1 exactly. ``None`` means
                uniform weights.
            labels: optional integer class labels, shape (K,), one per component (concrete:
                they fix the classes); they enable ``classes``, ``class_conditional``,
                ``class_log_prob`` and ``class_log_posterior``.

        Raises:
            ValueError: on wrong shapes, non-positive variances, or invalid weights.
            TypeError: on complex or non-numeric input, or non-integer labels.
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

        num_components, dim = _check_means_shape(means)
        dtype = _float_dtype(*parts)

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

        weights = _weights_or_uniform(weights, num_components, xp)
        labels = _check_labels(labels, num_components)

        if concrete:
            means, variances, weights = (np.asarray(a) for a in (means, variances, weights))
            _check_means_and_weights(means, weights, jnp.finfo(dtype).eps)
            _check_variances(variances)
            weights = weights / weights.sum(dtype=np.float64)
        else:
            weights = weights / jnp.sum(weights)

        self.means = jnp.asarray(means, dtype)
        self.variances = jnp.asarray(variances, dtype)
        self.weights = jnp.asarray(weights, dtype)
        self.labels = labels

    # ------------------------------------------------------------------ covariances

    def _spectrum(self) -> jax.Array:
        return self.variances

    def _axes(self) -> None:
        return None  # the coordinate axes: no rotation

    def component_covariances(self) -> jax.Array:
        """The covariance matrix of every component, ``diag(v_k)``, shape (K, d, d)."""
        return self.variances[:, :, None] * jnp.eye(self.dim, dtype=self.variances.dtype)

    def to_full(self) -> FullGaussianMixture:
        """The same mixture as a `FullGaussianMixture` (diagonal covariance matrices; the
        factorization is exact: the eigenvectors are the coordinate axes)."""
        eye = jnp.eye(self.dim, dtype=self.variances.dtype)
        return _assemble(
            FullGaussianMixture,
            means=self.means,
            covariances=self.component_covariances(),
            weights=self.weights,
            eigenvalues=self.variances,
            eigenvectors=jnp.broadcast_to(eye, (self.num_components, self.dim, self.dim)),
            labels=self.labels,
        )


def _check_variances(variances: np.ndarray) -> None:
    if not np.all(variances > 0):
        bad = variances[~(variances > 0)]
        raise ValueError(
            f"variances must be positive; got {bad.size} entries <= 0 or NaN (e.g. {bad.flat[0]})"
        )
    if not np.all(np.isfinite(variances)):
        raise ValueError("variances must be finite")
