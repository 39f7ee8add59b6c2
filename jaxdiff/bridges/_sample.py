"""`jaxdiff.bridges.sample`: a bridge solver over a time grid as one compiled program."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..samplers._core import check_key
from ._process import AbstractBridge, check_x_T
from ._solver import AbstractBridgeSolver, check_steps

__all__ = ["karras_grid", "sample", "uniform_grid"]

RHO = 7.0
T_GAP = 1e-4


def _grid_ends(bridge, t_min, t_max):
    t_min = float(bridge.t_min if t_min is None else t_min)
    t_max = float(bridge.T) - T_GAP if t_max is None else float(t_max)
    if not 0 < t_min < t_max < float(bridge.T):
        raise ValueError(
            f"the grid needs 0 < t_min < t_max < T = {bridge.T}, got t_min={t_min}, t_max={t_max}"
        )
    return t_min, t_max


def karras_grid(
    bridge: AbstractBridge, steps: int, *, rho: float = RHO, t_min=None, t_max=None, dtype=None
) -> jax.Array:
    r"""The default bridge grid: Karras et al.'s (2022) grid in time, as DDBM samples,

    $$t_i = \big(t_{max}^{1/\rho} + \tfrac{i}{n-1}(t_{min}^{1/\rho} - t_{max}^{1/\rho})\big)^\rho,
    \quad i = 0..n-1, \text{ then } 0,$$

    with `rho = 7`, `t_max = T - 1e-4` (DDBM's `sigma_max - 1e-4`; the solvers start just below
    the pinned end) and `t_min = bridge.t_min` (VE: 0.002, EDM's `sigma_min`; VP: 1e-4, DDBM's).
    Its steps crowd near `t_min`, where the VE bridge's variance $t^2(1 - t^2/T^2)$ is small;
    a grid uniform in `t` (DBIM's own, `uniform_grid`) wastes them at large `t` and fails for the
    VE bridge with `T = 80`.

    **Returns:** `steps + 1` decreasing times, the last 0.
    """
    steps = check_steps(steps)
    t_min, t_max = _grid_ends(bridge, t_min, t_max)
    if not float(rho) > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    ramp = np.linspace(0.0, 1.0, steps)
    inv = t_max ** (1 / rho) + ramp * (t_min ** (1 / rho) - t_max ** (1 / rho))
    ts = np.append(inv**rho, 0.0) if steps > 1 else np.array([t_max, 0.0])
    return jnp.asarray(ts, dtype=dtype)


def uniform_grid(bridge: AbstractBridge, steps: int, *, t_min=None, t_max=None, dtype=None):
    """A grid uniform in `t` from `t_max` (default `T - 1e-4`) to `t_min` (default
    `bridge.t_min`), then 0: DBIM's own choice for the VP bridge. `steps + 1` times."""
    steps = check_steps(steps)
    t_min, t_max = _grid_ends(bridge, t_min, t_max)
    ts = np.linspace(t_max, t_min, steps) if steps > 1 else np.array([t_max])
    return jnp.asarray(np.append(ts, 0.0), dtype=dtype)


def _check_grid(grid, bridge) -> None:
    if isinstance(grid, jax.core.Tracer):
        if grid.ndim != 1 or grid.shape[0] < 2:
            raise ValueError(f"grid must be 1-D with at least 2 entries, got shape {grid.shape}")
        return
    try:
        arr = np.asarray(grid, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"grid must be a 1-D array of times, got {type(grid).__name__}") from e
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"grid must be 1-D with at least 2 entries, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("grid must be finite")
    if arr[-1] != 0:
        raise ValueError(f"grid must end at t = 0, got {arr[-1]}")
    if not np.all(np.diff(arr) < 0):
        raise ValueError(f"grid must be strictly decreasing, got {arr}")
    if not arr[0] < float(bridge.T):
        raise ValueError(
            f"grid must start below T = {bridge.T} (the solvers start from x_T at T), got {arr[0]}"
        )


def sample(
    denoiser: Callable,
    x_T,
    bridge: AbstractBridge,
    *,
    steps: int | None = None,
    solver: AbstractBridgeSolver | None = None,
    key: jax.Array | None = None,
    grid=None,
    return_trajectory: bool = False,
):
    r"""Sample $x_0 \sim p(x_0 \mid x_T)$ through a diffusion bridge pinned at `x_T`.

    One call is one compiled program: the solver's steps are a `lax.scan` over the time grid
    (the last step, to t = 0, follows it). A new key, new `x_T` or new weights (a denoiser that
    is a pytree, e.g. an equinox or flax NNX module) do not recompile; a new shape, dtype, step
    count, grid length, bridge or solver does.

    **Arguments:**

    - `denoiser`: the bridge denoiser `denoiser(x_t, t, x_T) -> E[x_0 | x_t, x_T]`, `x_t` and
      `x_T` batch-first, `t` a scalar array (it is called at `t = T` by DBIM's booting step,
      where `b_t = c_t = 0`), e.g. a `BridgePrecond` network or `GaussianPair.denoiser`.
    - `x_T`: the endpoints, shape `(batch, ...)`; required.
    - `bridge`: `VE(...)` or `VP(...)`.
    - `steps`: number of grid intervals (with `grid`: optional, must match `len(grid) - 1`).
    - `solver`: `DBIM(...)` (default `DBIM()`, eta = 0, order 1) or `DDBM(...)`.
    - `key`: PRNG key, required by stochastic solvers (`solver.stochastic`; DBIM always, for
      its booting noise; DDBM when `churn > 0`).
    - `grid`: decreasing times from below `T` to 0 (default `karras_grid(bridge, steps)`).
    - `return_trajectory`: also return `x` at every grid time, shape `(steps + 1, *x_T.shape)`.

    **Returns:** the samples at t = 0 (shaped like `x_T`), or `(samples, trajectory)`.
    """
    from .dbim import DBIM

    if not isinstance(bridge, AbstractBridge):
        raise TypeError(
            f"bridge must be a jaxdiff.bridges bridge (VE or VP), got {type(bridge).__name__}"
        )
    solver = DBIM() if solver is None else solver
    if not isinstance(solver, AbstractBridgeSolver):
        raise TypeError(
            f"solver must be a jaxdiff.bridges solver (DBIM or DDBM), got {type(solver).__name__}"
        )
    if not callable(denoiser):
        raise TypeError(
            f"denoiser must be callable as denoiser(x_t, t, x_T), got {type(denoiser).__name__}"
        )
    x_T = check_x_T(x_T)
    x_T = x_T.astype(x_T.dtype)  # strong dtype: a weakly typed x_T would compile a second program
    if grid is None:
        if steps is None:
            raise ValueError("pass steps= (the number of grid intervals) or grid=")
        grid = karras_grid(bridge, steps, dtype=x_T.dtype)
    else:
        _check_grid(grid, bridge)
        grid = jnp.asarray(grid, dtype=x_T.dtype)
        if steps is not None and check_steps(steps) != grid.shape[0] - 1:
            raise ValueError(
                f"steps={steps} does not match the grid's {grid.shape[0] - 1} intervals"
            )
    if solver.stochastic:
        if key is None:
            raise ValueError(f"{type(solver).__name__}({_options(solver)}) draws noise: pass key=")
        check_key(key)
    else:
        if key is not None:
            check_key(key)
        key = None  # deterministic: the key is unused and must not cause a recompile
    x0, trajectory = _sample(denoiser, x_T, grid, bridge, solver, key, bool(return_trajectory))
    return (x0, trajectory) if return_trajectory else x0


def _options(solver) -> str:
    return ", ".join(f"{k}={getattr(solver, k)}" for k in solver.__dataclass_fields__)


def _check_denoiser(denoiser, x_T, t):
    out = eqx.filter_eval_shape(lambda d, x, tt: d(x, tt, x), denoiser, x_T, t)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != x_T.shape:
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"denoiser(x_t, t, x_T) must return an array shaped like x_T {x_T.shape}, got {got}"
        )
    if out.dtype != x_T.dtype:
        raise ValueError(
            f"denoiser(x_t, t, x_T) must keep the dtype of x_T ({x_T.dtype}), got {out.dtype}"
        )


@eqx.filter_jit
def _sample(denoiser, x_T, ts, bridge, solver, key, return_trajectory):
    _check_denoiser(denoiser, x_T, ts[0])  # while tracing: once per compilation

    def denoise(x, t):
        return denoiser(x, jnp.asarray(t, x.dtype), x_T)

    n = ts.shape[0] - 1
    if key is None:
        k_init = k_steps = None
    else:
        k_init, k_steps = jr.split(key)

    def one(x, carry, i, final):
        k = None if k_steps is None else jr.fold_in(k_steps, i)
        x_next, carry, _ = solver.step(denoise, x, carry, i, ts, x_T, bridge, k, final=final)
        return x_next, carry

    def body(state, i):
        x, carry = one(*state, i, False)
        return (x, carry), (x if return_trajectory else None)

    x, carry = solver.init(denoise, x_T, ts, bridge, k_init)
    if n > 1:
        (x_last, carry), xs = jax.lax.scan(body, (x, carry), jnp.arange(n - 1))
    else:  # one step: no scan (a zero-length scan also fails under jax.disable_jit)
        x_last, xs = x, x[:0]
    x_final, _ = one(x_last, carry, n - 1, True)
    if not return_trajectory:
        return x_final, None
    return x_final, jnp.concatenate([x[None], xs, x_final[None]])
