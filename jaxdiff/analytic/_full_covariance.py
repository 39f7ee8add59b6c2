"""Gaussian mixtures with full covariance matrices: an exact oracle at every noise level."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._checks import is_traced
from ._mixture import (
    AbstractGaussianMixture,
    _as_real_array,
    _check_labels,
    _check_means_and_weights,
    _check_means_shape,
    _float_dtype,
    _weights_or_uniform,
)

__all__ = ["FullGaussianMixture"]

# A covariance matrix must be symmetric within this tolerance, relative to its largest entry.
_SYMMETRY_RTOL = 1e-5


class FullGaussianMixture(AbstractGaussianMixture):
    r"""A mixture of Gaussians with full covariance matrices, exact at every noise level.

    The data density is ``p(x) = sum_k w_k N(x; mu_k, C_k)`` with K components in dimension d;
    at noise level sigma (``x = x0 + sigma eps``) it is ``sum_k w_k N(x; mu_k, C_k + sigma^2
    I)``. Each covariance is factored once, at construction, into its principal axes,
    ``C_k = U_k diag(lambda_k) U_k^T`` (``eigenvalues``, ``eigenvectors``); adding sigma^2 I
    only shifts the eigenvalues, so the log-density, score, denoiser and samples at every noise
    level (a per-sample sigma included) cost two small matrix products per component and no
    new factorization:

        log N(x; mu_k, C_k + sigma^2 I) = -1/2 [|z_k|^2_{lambda_k + sigma^2}
                                                + sum log(lambda_k + sigma^2) + d log 2 pi],
        z_k = U_k^T (x - mu_k),
        D(x; sigma) = sum_k r_k(x) [mu_k + U_k diag(lambda_k / (lambda_k + sigma^2)) z_k].

    It has every method of `GaussianMixture` (the same code: `AbstractGaussianMixture`), with
    the same dtype rules, jit/vmap behaviour and checks; it is what ``posterior`` returns, and
    ``GaussianMixture.to_full()`` converts a diagonal mixture.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxdiff.analytic import FullGaussianMixture
        >>> cov = jnp.array([[1.0, 0.8], [0.8, 1.0]])
        >>> gm = FullGaussianMixture(jnp.array([[-2.0, 0.0], [2.0, 0.0]]), cov, labels=[0, 1])
        >>> gm.denoiser(jnp.zeros((3, 2)), 0.5).shape, gm.classes
        ((3, 2), (0, 1))

    Attributes:
        means: component means, shape (K, d).
        covariances: component covariance matrices, shape (K, d, d), symmetric positive
            definite (positive semi-definite for the posterior of an exact observation).
        weights: mixture weights, shape (K,), non-negative, summing to 1.
        eigenvalues: the variances of every component along its principal axes, shape (K, d).
        eigenvectors: the principal axes (columns), shape (K, d, d), orthogonal.
        labels: the class label of every component (a tuple of K ints, static), or None.
    """

    means: jax.Array
    covariances: jax.Array
    weights: jax.Array
    eigenvalues: jax.Array
    eigenvectors: jax.Array
    labels: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        means: ArrayLike,
        covariances: ArrayLike,
        weights: ArrayLike | None = None,
        *,
        labels: Any = None,
    ):
        """Builds the mixture, checking shapes always and values when they are concrete.

        Arguments:
            means: component means, shape (K, d).
            covariances: covariance matrices, shape (K, d, d), or (d, d) shared by all
                components; symmetric (within a relative 1e-5, then symmetrized) and positive
                definite.
            weights: mixture weights, shape (K,), non-negative and summing to 1 (within a
                relative 1e-5); renormalized to sum to 1 exactly. ``None``: uniform.
            labels: optional integer class labels, shape (K,), one per component (concrete).

        Raises:
            ValueError: on wrong shapes, a non-symmetric or non-positive-definite covariance,
                or invalid weights.
            TypeError: on complex or non-numeric input, or non-integer labels.
        """
        means = _as_real_array("means", means)
        covariances = _as_real_array("covariances", covariances)
        if weights is not None:
            weights = _as_real_array("weights", weights)
        parts = [means, covariances] if weights is None else [means, covariances, weights]
        concrete = not is_traced(parts)
        xp = np if concrete else jnp

        num_components, dim = _check_means_shape(means)
        dtype = _float_dtype(*parts)
        kdd = (num_components, dim, dim)
        if covariances.shape == (dim, dim):
            covariances = xp.broadcast_to(covariances, kdd)
        elif covariances.shape != kdd:
            raise ValueError(
                f"covariances must have shape (K, d, d) = {kdd}, or (d, d) = {(dim, dim)} for "
                f"one covariance shared by all components; got shape {covariances.shape}"
            )
        weights = _weights_or_uniform(weights, num_components, xp)
        labels = _check_labels(labels, num_components)

        if concrete:
            means, weights = np.asarray(means), np.asarray(weights)
            _check_means_and_weights(means, weights, jnp.finfo(dtype).eps)
            weights = weights / weights.sum(dtype=np.float64)
            # Factored in float64 with numpy, whatever the mixture's dtype: exact axes, and no
            # compilation.
            covariances = _check_covariances(np.asarray(covariances, np.float64))
            eigenvalues, eigenvectors = np.linalg.eigh(covariances)
            _check_positive_definite(eigenvalues)
        else:
            weights = weights / jnp.sum(weights)
            covariances = 0.5 * (covariances + jnp.swapaxes(covariances, -1, -2))
            eigenvalues, eigenvectors = jnp.linalg.eigh(covariances)

        self.means = jnp.asarray(means, dtype)
        self.covariances = jnp.asarray(covariances, dtype)
        self.weights = jnp.asarray(weights, dtype)
        self.eigenvalues = jnp.asarray(eigenvalues, dtype)
        self.eigenvectors = jnp.asarray(eigenvectors, dtype)
        self.labels = labels

    def _spectrum(self) -> jax.Array:
        return self.eigenvalues

    def _axes(self) -> jax.Array:
        return self.eigenvectors

    def component_covariances(self) -> jax.Array:
        """The covariance matrix of every component, shape (K, d, d)."""
        return self.covariances

    def to_full(self) -> FullGaussianMixture:
        """This mixture (already full)."""
        return self


def _check_covariances(covariances: np.ndarray) -> np.ndarray:
    """Checks concrete (K, d, d) covariances are finite and symmetric; symmetrizes them."""
    if not np.all(np.isfinite(covariances)):
        raise ValueError("covariances must be finite")
    transposed = np.swapaxes(covariances, -1, -2)
    asymmetry = np.max(np.abs(covariances - transposed), axis=(-2, -1))
    scale = np.max(np.abs(covariances), axis=(-2, -1))
    bad = np.flatnonzero(asymmetry > _SYMMETRY_RTOL * scale)
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"covariances must be symmetric; component {k} has max |C - C^T| = "
            f"{asymmetry[k]:.3g} (largest entry {scale[k]:.3g})"
        )
    return 0.5 * (covariances + transposed)


def _check_positive_definite(eigenvalues: np.ndarray) -> None:
    smallest = eigenvalues.min(axis=-1)
    bad = np.flatnonzero(~(smallest > 0))
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"covariances must be positive definite; component {k} has smallest eigenvalue "
            f"{smallest[k]:.3g}"
        )
