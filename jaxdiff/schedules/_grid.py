"""What every schedule shares: the boundary checks of `f(n, sigma_min, sigma_max, dtype=...)`,
the final 0, and the jitted cores with `n` static."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

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
