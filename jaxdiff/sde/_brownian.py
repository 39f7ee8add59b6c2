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

from .._checks import check_count


class GridBrownianPath(dfx.AbstractBrownianPath):
    """Brownian motion sampled on a fixed step grid, one independent increment per grid step.

    The increment over the grid interval `[grid[k], grid[k+1]]` (and its space-time Lévy area,
    for the solvers that need it) is drawn from `key` folded with the bits of `grid[k]`: the
    path is a pure function of the key, the grid and the shape, and nothing is stored.
    `jaxdiff.solve_sde` draws these increments in bulk (`increments`: a whole chunk of steps
    in one batched draw, then a `lax.scan` over the chunk); diffrax's own loop (`evaluate`)
    draws them step by step. Both give the same draws (to the last bit or two: XLA may fuse the
    arithmetic of a batched draw differently): the draw of a step does not depend on how the
    steps are chunked.

    It may only be evaluated on its own grid intervals (as `diffrax.StepTo(ts=grid)` does).
    Two grids that share a step start time share that step's draw, so solves with different
    `dt` are not independent, nor are they one path; use `diffrax.VirtualBrownianTree` (see
    `jaxdiff.brownian_tree`) for a path that is consistent across step sizes.

    Private: `jaxdiff.solve_sde` makes one when given a `key` and no `brownian`.
    """

    grid: jax.Array  # ascending
    key: jax.Array
    shape: Any = eqx.field(static=True)
    levy_area: type[dfx.BrownianIncrement | dfx.SpaceTimeLevyArea] = eqx.field(
        static=True, default=dfx.BrownianIncrement
    )
    # bytes of noise `jaxdiff.solve_sde` draws at once (a chunk of steps); speed only
    chunk_bytes: int = eqx.field(static=True, default=4 * 2**20)

    @property
    def t0(self):
        return self.grid[0]

    @property
    def t1(self):
        return self.grid[-1]

    @property
    def with_levy(self) -> bool:
        """Whether the path draws the space-time Lévy area `H` as well as the increment."""
        return self.levy_area is dfx.SpaceTimeLevyArea

    def increment(self, t0, t1):
        """`(W, H)` over the grid step `[t0, t1]`: pytrees shaped like `shape`, `W ~ N(0, dt)`
        and, when `with_levy`, `H ~ N(0, dt / 12)` independent of it (else `H` is `None`)."""
        # Under StepTo every t0 is exactly a grid point: its bits identify the step, so no
        # search is needed (a searchsorted costs microseconds per step on CPU).
        key = self.key
        for word in _time_bits(t0):
            key = jr.fold_in(key, word)
        dt = t1 - t0
        leaves, treedef = jtu.tree_flatten(self.shape)
        keys = [key] if len(leaves) == 1 else list(jr.split(key, len(leaves)))
        ws, hs = [], []
        for k, leaf in zip(keys, leaves, strict=True):
            std = jnp.sqrt(dt).astype(leaf.dtype)
            if self.with_levy:
                kw, kh = jr.split(k)
                ws.append(jr.normal(kw, leaf.shape, leaf.dtype) * std)
                hs.append(jr.normal(kh, leaf.shape, leaf.dtype) * (std / math.sqrt(12.0)))
            else:
                ws.append(jr.normal(k, leaf.shape, leaf.dtype) * std)
        w = jtu.tree_unflatten(treedef, ws)
        return w, (jtu.tree_unflatten(treedef, hs) if self.with_levy else None)

    def increments(self, t0s, t1s):
        """`increment` over many grid steps at once (`t0s`, `t1s` 1-D, one entry per step):
        `(W, H)` with a leading axis of steps, drawn in one batched call. Row `j` is
        `increment(t0s[j], t1s[j])` (to float rounding)."""
        return jax.vmap(self.increment)(t0s, t1s)

    def noise_bytes(self) -> int:
        """Bytes of one step's draw (`W`, and `H` when `with_levy`)."""
        size = sum(
            math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize
            for leaf in jtu.tree_leaves(self.shape)
        )
        return size * (2 if self.with_levy else 1)

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        del left
        if t1 is None:
            raise ValueError("GridBrownianPath only provides increments over grid intervals")
        w, h = self.increment(t0, t1)
        if not use_levy:
            return w
        if h is not None:
            return dfx.SpaceTimeLevyArea(dt=t1 - t0, W=w, H=h)
        return dfx.BrownianIncrement(dt=t1 - t0, W=w)


class StepIncrement(dfx.AbstractBrownianPath):
    """One step's increment, already drawn: what a solver's `step` sees of the Brownian path
    inside `jaxdiff.solve_sde`'s scan. `evaluate(t0, t1)` returns `W` (and `H`) whatever the
    times, so it serves only solvers that evaluate the path once per step, over the step.

    Private to `jaxdiff.solve_sde`.
    """

    step_t0: jax.Array
    step_t1: jax.Array
    w: Any
    h: Any = None
    levy_area: type[dfx.BrownianIncrement | dfx.SpaceTimeLevyArea] = eqx.field(
        static=True, default=dfx.BrownianIncrement
    )

    @property
    def t0(self):
        return self.step_t0

    @property
    def t1(self):
        return self.step_t1

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        del left
        if t1 is None:
            raise ValueError("StepIncrement only provides the increment over its step")
        if not use_levy:
            return self.w
        if self.h is not None:
            return dfx.SpaceTimeLevyArea(dt=t1 - t0, W=self.w, H=self.h)
        return dfx.BrownianIncrement(dt=t1 - t0, W=self.w)


class DiffraxLoopPath(dfx.AbstractBrownianPath):
    """A `GridBrownianPath` seen as any other path: `jaxdiff.solve_sde(..., brownian=...)` then
    runs diffrax's own loop on it, drawing step by step, as `solve_sde(key=)` did before it
    drew its increments a chunk of steps at a time (the same numbers, to float rounding). For
    comparisons: `benchmarks/noise_speed.py` and the tests."""

    path: GridBrownianPath

    @property
    def t0(self):
        return self.path.t0

    @property
    def t1(self):
        return self.path.t1

    @property
    def levy_area(self):
        return self.path.levy_area

    @property
    def shape(self):
        return self.path.shape

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        return self.path.evaluate(t0, t1, left, use_levy)


def _time_bits(t):
    """The bits of a float time as one or two uint32 words."""
    t = jnp.asarray(t)
    if t.dtype.itemsize == 8:
        return list(jax.lax.bitcast_convert_type(t, jnp.uint32))
    return [jax.lax.bitcast_convert_type(t.astype(jnp.float32), jnp.uint32)]


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


class DiscreteBrownianPath(dfx.AbstractBrownianPath):
    r"""Brownian motion sampled on a uniform grid of `num_steps` steps over `[t0, t1]`, stored.

    Stores $W$ and its running time integral $\int_{t_0}^{t} W\,dr$ at the grid points, so
    the increment *and* the space-time Lévy area over any union of grid intervals are exact:
    solves with steps that are multiples of `(t1 - t0) / num_steps` all see one Brownian path
    (a convergence study without a Brownian tree; evaluation is a gather, cheap to compile
    and run). Between grid points `W` is interpolated linearly (an approximation).

    Memory: `2 (num_steps + 1)` times the state. Use `jaxdiff.brownian_tree` when that is
    too much or steps are not grid-aligned.

    **Arguments:**

    - `key`, `t0`, `t1`, `num_steps`: the path's randomness and its grid.
    - `shape`: the Brownian shape, e.g. `sde.noise_shape(x0)` (pytree of
      `jax.ShapeDtypeStruct`) or a tuple of ints.
    - `levy_area`: `diffrax.SpaceTimeLevyArea` (default) or `diffrax.BrownianIncrement`.
    """

    t0: jax.Array
    t1: jax.Array
    w: Any  # pytree of (num_steps + 1, *shape): W(t_k) - W(t0)
    iw: Any  # pytree of (num_steps + 1, *shape): int_{t0}^{t_k} (W(r) - W(t0)) dr
    shape: Any = eqx.field(static=True)
    levy_area: type[dfx.BrownianIncrement | dfx.SpaceTimeLevyArea] = eqx.field(static=True)

    def __init__(
        self,
        key: jax.Array,
        t0: float,
        t1: float,
        num_steps: int,
        shape: Any,
        *,
        levy_area: type = dfx.SpaceTimeLevyArea,
    ):
        num_steps = check_count("num_steps", num_steps)
        if not float(t1) > float(t0):
            raise ValueError(f"t1 must be > t0, got t0={t0!r}, t1={t1!r}")
        if levy_area not in (dfx.BrownianIncrement, dfx.SpaceTimeLevyArea):
            raise ValueError(
                "levy_area must be diffrax.BrownianIncrement or diffrax.SpaceTimeLevyArea"
            )
        if isinstance(shape, tuple) and all(isinstance(i, int) for i in shape):
            shape = jax.ShapeDtypeStruct(shape, jnp.result_type(float))
        self.shape = shape
        self.levy_area = levy_area
        leaves, treedef = jtu.tree_flatten(shape)
        self.t0 = jnp.asarray(t0, leaves[0].dtype)
        self.t1 = jnp.asarray(t1, leaves[0].dtype)
        h = (float(t1) - float(t0)) / num_steps
        ws, iws = [], []
        for k, leaf in zip(jr.split(key, len(leaves)), leaves, strict=True):
            kw, kh = jr.split(k)
            full = (num_steps, *leaf.shape)
            dw = jr.normal(kw, full, leaf.dtype) * math.sqrt(h)
            hh = jr.normal(kh, full, leaf.dtype) * math.sqrt(h / 12.0)
            zero = jnp.zeros((1, *leaf.shape), leaf.dtype)
            w = jnp.concatenate([zero, jnp.cumsum(dw, axis=0)])
            # int over step j of (W - W(t0)) = h (W_j + dW_j / 2 + H_j)
            iw = jnp.concatenate([zero, jnp.cumsum(h * (w[:-1] + 0.5 * dw + hh), axis=0)])
            ws.append(w)
            iws.append(iw)
        self.w = jtu.tree_unflatten(treedef, ws)
        self.iw = jtu.tree_unflatten(treedef, iws)

    def _at(self, t):
        n = jtu.tree_leaves(self.w)[0].shape[0] - 1
        pos = (t - self.t0) / (self.t1 - self.t0) * n
        k = jnp.clip(jnp.floor(pos), 0, n - 1).astype(jnp.int32)
        frac = jnp.clip(pos - k, 0.0, 1.0)

        def interp(a):
            frac_ = frac.astype(a.dtype)
            return a[k] * (1 - frac_) + a[k + 1] * frac_

        return jtu.tree_map(interp, self.w), jtu.tree_map(interp, self.iw)

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        del left
        if t1 is None:
            return self._at(t0)[0]
        w0, i0 = self._at(t0)
        w1, i1 = self._at(t1)
        dw = jtu.tree_map(lambda a, b: b - a, w0, w1)
        if not use_levy:
            return dw
        dt = t1 - t0
        if self.levy_area is dfx.BrownianIncrement:
            return dfx.BrownianIncrement(dt=dt, W=dw)
        # H = (1/dt) int_{t0}^{t1} (W_r - W_{t0}) dr - dW / 2
        hh = jtu.tree_map(lambda a0, a1, b0, d: (a1 - a0 - dt * b0) / dt - 0.5 * d, i0, i1, w0, dw)
        return dfx.SpaceTimeLevyArea(dt=dt, W=dw, H=hh)
