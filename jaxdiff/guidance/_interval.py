"""The noise interval of a guidance transform (Kynkäänniemi et al. 2024), and the check that a
guide's prediction is shaped like the denoiser's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import check_nonnegative, check_number, is_traced


def check_interval(interval: Any) -> tuple[jax.Array, jax.Array] | None:
    """`None`, or `(lo, hi)` with `0 <= lo <= hi` (`hi` may be `inf`): two scalars, checked
    when concrete; returned as a pair of arrays (pytree leaves: new values do not recompile)."""
    if interval is None:
        return None
    try:
        lo, hi = interval
    except (TypeError, ValueError):
        raise TypeError(
            f"interval must be None or a pair (lo, hi) of noise levels, got {interval!r}"
        ) from None
    for name, v in (("interval[0]", lo), ("interval[1]", hi)):
        if jnp.ndim(v) != 0:
            raise ValueError(f"{name} must be a scalar noise level, got shape {jnp.shape(v)}")
        check_nonnegative(name, v)
    if not is_traced(lo) and not is_traced(hi):
        lo_v, hi_v = float(np.asarray(lo)), float(np.asarray(hi))
        if lo_v > hi_v:
            raise ValueError(f"interval must have lo <= hi, got lo={lo_v} > hi={hi_v}")
    return jnp.asarray(lo), jnp.asarray(hi)


def check_scale(scale: Any) -> jax.Array:
    """A real scalar guidance weight, kept as an array (a pytree leaf: a new value does not
    recompile)."""
    if jnp.ndim(scale) != 0:
        raise ValueError(f"scale must be a scalar, got shape {jnp.shape(scale)}")
    check_number("scale", scale)
    return jnp.asarray(scale)


def within(
    interval: tuple[jax.Array, jax.Array] | None,
    sigma: jax.Array,
    guided: Callable[[], Any],
    unguided: Callable[[], Any],
) -> Any:
    """`guided()` where `lo <= sigma <= hi`, else `unguided()` (pytrees of arrays shaped like
    the sample, batch first). With a scalar `sigma` (as `jaxdiff.sample` calls a denoiser) this
    is a `lax.cond`: outside the interval only `unguided` runs, and its network calls are
    saved. A per-sample `sigma` of shape `(batch,)` selects row by row."""
    if interval is None:
        return guided()
    lo, hi = interval
    inside = (sigma >= lo.astype(sigma.dtype)) & (sigma <= hi.astype(sigma.dtype))
    if sigma.ndim == 0:
        return lax.cond(inside, guided, unguided)
    a, b = guided(), unguided()
    return jax.tree.map(
        lambda u, v: jnp.where(inside.reshape(inside.shape + (1,) * (u.ndim - 1)), u, v), a, b
    )


def check_like(name: str, value: jax.Array, like: jax.Array, like_name: str) -> None:
    """`value` (a guide's prediction) has the shape and dtype of `like` (the denoiser's);
    checked while tracing, so a mismatch fails at the call with the argument's name."""
    if value.shape != like.shape or value.dtype != like.dtype:
        raise ValueError(
            f"{name} must return an array shaped like {like_name}'s output "
            f"{like.shape} {like.dtype}, got {value.shape} {value.dtype}"
        )


def sigma_like(sigma: jax.Array, x: jax.Array) -> jax.Array:
    """`sigma` (a scalar or per-sample `(batch,)`) broadcastable against `x` (batch first)."""
    sigma = jnp.asarray(sigma, x.dtype)
    return sigma.reshape(sigma.shape + (1,) * (x.ndim - sigma.ndim)) if sigma.ndim else sigma
