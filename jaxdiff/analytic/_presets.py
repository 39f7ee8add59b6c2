"""Ready-made Gaussian mixtures: 2-D toys and higher-dimensional test cases."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from .._checks import check_count, check_positive
from ._gaussian_mixture import GaussianMixture

__all__ = ["grid", "ill_conditioned", "random_mixture", "ring"]


def _positive(name: str, value: float) -> float:
    check_positive(name, value)
    return float(value)


def _dtype(dtype: Any) -> Any:
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype; got {dtype}")
    return dtype


def ring(
    num_modes: int = 8, radius: float = 2.0, std: float = 0.15, *, dtype: Any = None
) -> GaussianMixture:
    """Equal-weight isotropic modes evenly spaced on a circle in 2-D.

    Arguments:
        num_modes: number of components.
        radius: radius of the circle the means lie on.
        std: standard deviation of every component (per dimension).
        dtype: floating dtype of the arrays; defaults to jnp's default float.

    Returns:
        A `GaussianMixture` with ``num_modes`` components in dimension 2.
    """
    num_modes = check_count("num_modes", num_modes)
    std = _positive("std", std)
    dtype = _dtype(dtype)
    angles = 2.0 * np.pi * np.arange(num_modes) / num_modes
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    return GaussianMixture(jnp.asarray(means, dtype), jnp.asarray(std**2, dtype))


def grid(
    side: int = 5, spacing: float = 1.0, std: float = 0.1, *, dtype: Any = None
) -> GaussianMixture:
    """Equal-weight isotropic modes on a ``side x side`` square lattice centred at the origin.

    Arguments:
        side: number of modes along each axis (``side**2`` components in all).
        spacing: distance between neighbouring modes.
        std: standard deviation of every component (per dimension).
        dtype: floating dtype of the arrays; defaults to jnp's default float.

    Returns:
        A `GaussianMixture` with ``side**2`` components in dimension 2.
    """
    side = check_count("side", side)
    std = _positive("std", std)
    dtype = _dtype(dtype)
    coords = (np.arange(side) - (side - 1) / 2) * spacing
    gx, gy = np.meshgrid(coords, coords, indexing="ij")
    means = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    return GaussianMixture(jnp.asarray(means, dtype), jnp.asarray(std**2, dtype))


def random_mixture(
    dim: int = 16,
    num_components: int = 8,
    *,
    seed: int = 0,
    scale: float = 2.0,
    min_std: float = 0.1,
    max_std: float = 0.6,
    dtype: Any = None,
) -> GaussianMixture:
    """A random higher-dimensional mixture with diagonal components, deterministic in ``seed``.

    Means are drawn from N(0, scale^2 / dim I), so that ``|mu_k| ~ scale`` and two means are
    about ``sqrt(2) scale`` apart whatever the dimension: with the default per-dimension
    stds in [0.1, 0.6] the components are well separated at sigma = 0 and merge around
    sigma ~ scale. Per-dimension stds are uniform in [min_std, max_std]; weights are
    proportional to uniform draws in [1, 3] (max/min weight ratio at most 3).

    The random draws are made in float32 (with x64 off) and then cast, so a seed gives the same
    mixture, to float32 precision, in every dtype and whether or not x64 is enabled.

    Arguments:
        dim: dimension d.
        num_components: number of components K.
        seed: integer seed for `jax.random.key`.
        scale: typical norm of the means.
        min_std: smallest per-dimension component std.
        max_std: largest per-dimension component std.
        dtype: floating dtype of the arrays; defaults to jnp's default float.

    Returns:
        A `GaussianMixture` with ``num_components`` components in dimension ``dim``.
    """
    dim = check_count("dim", dim)
    num_components = check_count("num_components", num_components)
    min_std = _positive("min_std", min_std)
    max_std = _positive("max_std", max_std)
    if max_std < min_std:
        raise ValueError(f"max_std must be >= min_std; got {max_std} < {min_std}")
    dtype = _dtype(dtype)
    normal, uniform = _draws(seed, (num_components, 2 * dim + 1))
    means = normal[:, :dim] * (scale / math.sqrt(dim))
    stds = min_std + (max_std - min_std) * uniform[:, dim : 2 * dim]
    weights = 1.0 + 2.0 * uniform[:, -1]  # in [1, 3]
    weights = weights / weights.sum()
    return GaussianMixture(
        jnp.asarray(means, dtype), jnp.asarray(stds**2, dtype), jnp.asarray(weights, dtype)
    )


def ill_conditioned(
    dim: int = 16,
    *,
    condition: float = 1e3,
    seed: int = 0,
    num_components: int = 3,
    scale: float = 2.0,
    dtype: Any = None,
) -> GaussianMixture:
    """A few components whose per-dimension variances span a ratio of ``condition``.

    Every component has variances geometrically spaced from ``1 / condition`` to 1 (so
    ``max / min = condition`` exactly when ``dim >= 2``), assigned to the dimensions in a
    different random order per component, so each component is stiff in different
    directions: a hard case for samplers at small sigma. Means are drawn from
    N(0, scale^2 / dim I); weights are equal. Deterministic in ``seed``.

    Arguments:
        dim: dimension d.
        condition: ratio of the largest to the smallest variance within a component, >= 1.
        seed: integer seed for `jax.random.key`.
        num_components: number of components K.
        scale: typical norm of the means.
        dtype: floating dtype of the arrays; defaults to jnp's default float.

    Returns:
        A `GaussianMixture` with ``num_components`` components in dimension ``dim``.
    """
    dim = check_count("dim", dim)
    num_components = check_count("num_components", num_components)
    condition = float(condition)
    if not (condition >= 1 and math.isfinite(condition)):
        raise ValueError(f"condition must be a finite number >= 1; got {condition}")
    dtype = _dtype(dtype)
    normal, _ = _draws(seed, (num_components, 2 * dim))
    means = normal[:, :dim] * (scale / math.sqrt(dim))
    order = np.argsort(normal[:, dim:], axis=-1)  # a random permutation per component
    spectrum = np.geomspace(1.0 / condition, 1.0, dim) if dim > 1 else np.ones(1)
    variances = spectrum[order]  # each component: the spectrum in its own random order
    return GaussianMixture(jnp.asarray(means, dtype), jnp.asarray(variances, dtype))


def _draws(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal draws from ``jax.random.key(seed)`` and their normal CDFs (uniforms).

    Drawn in float32 with 64-bit mode off, so a seed gives the same numbers whatever the dtype
    asked for and whether or not x64 is enabled; returned as float64 numpy arrays.
    """
    with jax.enable_x64(False):
        normal, uniform = _normal_and_uniform(jax.random.key(seed), shape)
        return np.asarray(normal, np.float64), np.asarray(uniform, np.float64)


@functools.partial(jax.jit, static_argnums=1)
def _normal_and_uniform(key: jax.Array, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    normal = jax.random.normal(key, shape, jnp.float32)
    return normal, ndtr(normal)
