"""What every schedule shares: the boundary checks of `f(n, sigma_min, sigma_max, dtype=...)`,
the final 0, and the jitted cores with `n` static."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_count, check_float_dtype, check_range


def prepare(n, sigma_min, sigma_max, dtype):
    """The checked arguments of a schedule: `n` a Python int >= 1 (it fixes the shape),
    `0 < sigma_min < sigma_max` finite scalars (checked when concrete), `dtype` a floating
    dtype (default: the default float dtype); the levels as arrays of that dtype."""
    n = check_count("n", n)
    check_range("sigma_min", sigma_min, "sigma_max", sigma_max)
    dtype = check_float_dtype("dtype", dtype)
    return n, jnp.asarray(sigma_min, dtype), jnp.asarray(sigma_max, dtype), dtype


def append_zero(sigmas):
    return jnp.concatenate([sigmas, jnp.zeros((1,), sigmas.dtype)])


# The grids are computed by small jitted cores with `n` static: one compiled program per
# (n, dtype) instead of a dozen eagerly compiled operations; inlined under an outer `jit`.
core = functools.partial(jax.jit, static_argnums=0)


@core
def log_relative(n, sigma_min, sigma_max, rel):
    """The levels at relative log-sigma positions `rel` (1 -> 0) between `sigma_max` and
    `sigma_min`, the two ends exact, then 0 (the grids of `ays` and `tuned`)."""
    log_min = jnp.log(sigma_min)
    sigmas = jnp.exp(log_min + rel * (jnp.log(sigma_max) - log_min))
    if n > 1:
        sigmas = sigmas.at[-1].set(sigma_min)
    return append_zero(sigmas.at[0].set(sigma_max))


@core
def carry_levels(n, sigma_min, sigma_max, levels):
    """The `n` levels between `sigma_max` and `sigma_min` (ends exact), then 0, at equal
    spacings of the mass of the level density of `levels` (`m >= 2` decreasing log sigmas, one
    level per step, the density piecewise constant between them and continued at its end
    values): see `carry`. Differentiable in `levels` (`jaxdiff.schedules.optimize` tunes
    through it)."""
    m = levels.shape[0]
    # the mass counted down from the top level: 0, 1, ..., m - 1 at the levels, linear between,
    # continued linearly far beyond both ends (at the end steps' densities)
    far = 1e4
    top, bottom = levels[0] - levels[1], levels[-2] - levels[-1]
    u = jnp.concatenate([levels[:1] + far * top, levels, levels[-1:] - far * bottom])
    mass = jnp.concatenate(
        [jnp.full((1,), -far), jnp.arange(m, dtype=levels.dtype), jnp.full((1,), m - 1 + far)]
    ).astype(levels.dtype)
    # u decreases along the arrays: interpolate on the reversed (increasing) ones
    m_hi = jnp.interp(jnp.log(sigma_max), u[::-1], mass[::-1])
    m_lo = jnp.interp(jnp.log(sigma_min), u[::-1], mass[::-1])
    targets = m_hi + (m_lo - m_hi) * jnp.linspace(0.0, 1.0, n, dtype=levels.dtype)
    sigmas = jnp.exp(jnp.interp(targets, mass, u))
    if n > 1:
        sigmas = sigmas.at[-1].set(sigma_min)
    return append_zero(sigmas.at[0].set(sigma_max))


def carry(sigmas, n, sigma_min, sigma_max, *, dtype=None):
    r"""Carry a grid to `n` steps on another range `[sigma_min, sigma_max]`, keeping where its
    levels are in absolute sigma (how `tuned` is carried off its tuning range).

    The grid's positive levels (`m >= 2` of them, strictly decreasing; a final 0 is ignored)
    are read as a density of levels in $\log\sigma$: one level per step, piecewise constant
    ($1/(\log\sigma_k - \log\sigma_{k+1})$ between levels $k$ and $k + 1$), continued at its end
    values above the first level and below the last. The `n` levels are its quantiles at equal
    spacings of the mass between `sigma_max` and `sigma_min`, both ends exact, then 0. On the
    grid's own range and step count this is the grid itself; a wider range adds steps as
    long as the end steps, a narrower one drops the levels outside and spreads their steps
    over the rest; a denser region stays at the same sigmas, wherever the range ends. (An
    affine stretch in $\log\sigma$, as `ays` does, moves it instead.) E.g. a grid from
    `jaxdiff.schedules.optimize` on one range, used on another.

    **Arguments:** `sigmas`: a concrete grid (`jaxdiff` convention: decreasing, positive, may
    end with 0); `n` steps (a Python int); `sigma_min < sigma_max` (may be traced); `dtype`
    (default: the default float dtype).

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    levels = np.asarray(sigmas, np.float64)
    if levels.ndim != 1:
        raise ValueError(f"sigmas must be 1-D, got shape {levels.shape}")
    if levels.size and levels[-1] == 0:
        levels = levels[:-1]
    if levels.size < 2 or not (np.all(np.isfinite(levels)) and np.all(levels > 0)):
        raise ValueError("sigmas must hold at least 2 finite positive levels (then 0 or not)")
    if not np.all(np.diff(levels) < 0):
        raise ValueError("sigmas must be strictly decreasing")
    if n == 1:
        return append_zero(sigma_max[None])
    return carry_levels(n, sigma_min, sigma_max, jnp.asarray(np.log(levels), dtype))
