"""The exact posterior of a Gaussian mixture under a linear-Gaussian observation.

A Gaussian prior N(mu, C) and an observation y = A x + s n, n ~ N(0, I), give the Gaussian
posterior of the Kalman update (e.g. Bishop, *Pattern Recognition and Machine Learning*, 2006,
eqs. 2.113-2.117; Särkkä, *Bayesian Filtering and Smoothing*, 2013, Theorem 4.2):

    S = A C A^T + s^2 I,   mu' = mu + C A^T S^{-1} (y - A mu),   C' = C - C A^T S^{-1} A C,

and the evidence p(y) = N(y; A mu, S). A mixture prior conditions component by component, each
weight multiplied by its evidence: the posterior is again a mixture, exact, and its noisy
versions p(x_sigma | y) are too (the noise on x0 is independent of y), so its denoiser is the
exact posterior denoiser E[x0 | x_sigma, y] that posterior samplers approximate.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.typing import ArrayLike

from .._checks import check_positive, is_traced
from ._full_covariance import FullGaussianMixture
from ._mixture import AbstractGaussianMixture, _as_real_array, _assemble, _cast

__all__ = ["posterior"]

_LOG_2PI = math.log(2.0 * math.pi)


def posterior(
    gm: AbstractGaussianMixture, A: ArrayLike, y: ArrayLike, noise_std: ArrayLike
) -> FullGaussianMixture:
    """The exact posterior mixture of x0 given ``y = A x0 + noise_std * n``; see
    `AbstractGaussianMixture.posterior`."""
    A = _as_real_array("A", A)
    y = _as_real_array("y", y)
    if A.ndim != 2 or A.shape[1] != gm.dim or A.shape[0] < 1:
        raise ValueError(
            f"A must be a matrix of shape (m, d) with d = {gm.dim} columns (the sample's "
            f"dimension) and m >= 1 rows; got shape {A.shape}"
        )
    m = A.shape[0]
    if y.shape != (m,):
        raise ValueError(f"y must have shape (m,) = ({m},) to match A's {m} rows; got {y.shape}")
    check_positive("noise_std", noise_std, allow_zero=True)
    concrete = not is_traced((gm, A, y, noise_std))
    if not is_traced(A) and not np.all(np.isfinite(np.asarray(A))):
        raise ValueError("A must be finite")
    if not is_traced(y) and not np.all(np.isfinite(np.asarray(y))):
        raise ValueError("y must be finite")

    dtype = jnp.result_type(gm.means, A, y)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    means, covariances, weights, eigenvalues, eigenvectors = _condition(
        _cast(gm.means, dtype),
        _cast(gm.component_covariances(), dtype),
        _cast(gm.log_weights, dtype),
        _cast(A, dtype),
        _cast(y, dtype),
        _cast(noise_std, dtype),
    )
    if concrete and not (
        np.all(np.isfinite(np.asarray(means))) and np.all(np.isfinite(np.asarray(weights)))
    ):
        raise ValueError(
            "the posterior is singular: with noise_std = 0, A C_k A^T must be invertible for "
            "every component (A of full row rank); use a small noise_std > 0 otherwise"
        )
    return _assemble(
        FullGaussianMixture,
        means=means,
        covariances=covariances,
        weights=weights,
        eigenvalues=eigenvalues,
        eigenvectors=eigenvectors,
        labels=gm.labels,
    )


@jax.jit
def _condition(
    means: jax.Array,
    covariances: jax.Array,
    log_weights: jax.Array,
    A: jax.Array,
    y: jax.Array,
    noise_std: jax.Array,
) -> tuple[Any, ...]:
    """The Kalman update of every component, with a Cholesky factor of S_k = L_k L_k^T.

    With W_k = L_k^{-1} A C_k and r_k = L_k^{-1} (y - A mu_k): C_k A^T S_k^{-1} (y - A mu_k) =
    W_k^T r_k and C_k A^T S_k^{-1} A C_k = W_k^T W_k, and log N(y; A mu_k, S_k) =
    -(|r_k|^2 + 2 log det L_k + m log 2 pi) / 2.
    """
    m = A.shape[0]
    AC = jnp.einsum("ij,kjl->kil", A, covariances)  # (K, m, d)
    S = jnp.einsum("kil,jl->kij", AC, A)
    S = 0.5 * (S + jnp.swapaxes(S, -1, -2)) + jnp.square(noise_std) * jnp.eye(m, dtype=A.dtype)
    L = jnp.linalg.cholesky(S)  # (K, m, m), NaN when S is singular
    W = solve_triangular(L, AC, lower=True)  # (K, m, d)
    residual = y - means @ A.T  # (K, m)
    r = solve_triangular(L, residual[..., None], lower=True)[..., 0]  # (K, m)

    post_means = means + jnp.einsum("kmd,km->kd", W, r)
    post_cov = covariances - jnp.einsum("kmd,kme->kde", W, W)
    post_cov = 0.5 * (post_cov + jnp.swapaxes(post_cov, -1, -2))
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    log_evidence = -0.5 * (jnp.sum(jnp.square(r), axis=-1) + log_det + m * _LOG_2PI)
    weights = jax.nn.softmax(log_weights + log_evidence)

    eigenvalues, eigenvectors = jnp.linalg.eigh(post_cov)
    # Rounding can leave the (near-)zero variances of an exact observation slightly negative.
    eigenvalues = jnp.maximum(eigenvalues, 0)
    return post_means, post_cov, weights, eigenvalues, eigenvectors
