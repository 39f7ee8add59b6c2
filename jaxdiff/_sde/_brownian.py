"""Brownian paths for fixed-grid solves."""

from __future__ import annotations

import math
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu


class GridBrownianPath(dfx.AbstractBrownianPath):
    """Brownian motion sampled on a fixed step grid, increment by increment.

    The increment over the grid interval `[grid[k], grid[k+1]]` is drawn from
    `fold_in(key, k)`, so a step costs one normal draw of the state's size and nothing is
    stored: this is what a hand-written `lax.scan` does, as a diffrax path. It may only be
    evaluated on its own grid intervals (as `diffrax.StepTo(ts=grid)` does); use
    `diffrax.VirtualBrownianTree` (see `jaxdiff.brownian_tree`) for a path that is
    consistent across step sizes.

    Private: `jaxdiff.solve_sde` makes one when given a `key` and no `brownian`.
    """

    grid: jax.Array  # ascending
    key: jax.Array
    shape: Any = eqx.field(static=True)
    levy_area: type[dfx.BrownianIncrement | dfx.SpaceTimeLevyArea] = eqx.field(
        static=True, default=dfx.BrownianIncrement
    )

    @property
    def t0(self):
        return self.grid[0]

    @property
    def t1(self):
        return self.grid[-1]

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        del left
        if t1 is None:
            raise ValueError("GridBrownianPath only provides increments over grid intervals")
        # diffrax hands increasing times (reverse-time solves are negated before they get here),
        # each exactly a grid point under StepTo.
        index = jnp.searchsorted(self.grid, t0)
        dt = t1 - t0
        leaves, treedef = jtu.tree_flatten(self.shape)
        key = jr.fold_in(self.key, index)
        keys = [key] if len(leaves) == 1 else list(jr.split(key, len(leaves)))
        with_levy = use_levy and self.levy_area is dfx.SpaceTimeLevyArea
        ws, hs = [], []
        for k, leaf in zip(keys, leaves, strict=True):
            std = jnp.sqrt(dt).astype(leaf.dtype)
            if with_levy:
                kw, kh = jr.split(k)
                ws.append(jr.normal(kw, leaf.shape, leaf.dtype) * std)
                hs.append(jr.normal(kh, leaf.shape, leaf.dtype) * (std / math.sqrt(12.0)))
            else:
                ws.append(jr.normal(k, leaf.shape, leaf.dtype) * std)
        w = jtu.tree_unflatten(treedef, ws)
        if not use_levy:
            return w
        if with_levy:
            return dfx.SpaceTimeLevyArea(dt=dt, W=w, H=jtu.tree_unflatten(treedef, hs))
        return dfx.BrownianIncrement(dt=dt, W=w)


def brownian_tree(
    key: jax.Array,
    t0: float,
    t1: float,
    shape: Any,
    *,
    tol: float = 1e-3,
    levy_area: type = dfx.SpaceTimeLevyArea,
) -> dfx.VirtualBrownianTree:
    """A `diffrax.VirtualBrownianTree` on `[min(t0, t1), max(t0, t1)]`: one Brownian path that
    several solves can share (e.g. different step sizes in a convergence study), evaluated to
    accuracy `tol` in time.

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `t0`, `t1`: the time interval (either order; reverse-time solves are fine).
    - `shape`: the Brownian shape, e.g. `sde.noise_shape(x0)`; a tuple of ints or a pytree
      of `jax.ShapeDtypeStruct`.
    - `tol`: time resolution of the tree; take it well below the smallest step.
    - `levy_area`: `diffrax.SpaceTimeLevyArea` (default, usable by every solver) or
      `diffrax.BrownianIncrement`.
    """
    if not (isinstance(tol, int | float) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    lo, hi = (t0, t1) if t0 <= t1 else (t1, t0)
    if not hi > lo:
        raise ValueError(f"t0 and t1 must differ, got t0={t0!r}, t1={t1!r}")
    return dfx.VirtualBrownianTree(lo, hi, tol=tol, shape=shape, key=key, levy_area=levy_area)
