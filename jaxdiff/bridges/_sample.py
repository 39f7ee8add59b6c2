"""`jaxdiff.bridges.sample`: a bridge solver over a time grid as one compiled program."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _fixed_grid as fixed_grid
from .._checks import (
    check_count,
    check_grid,
    check_instance,
    check_model,
    check_model_output,
    lookup,
)
from .._fixed_grid import check_run_options
from .._results import SampleResult
from ._dbim import DBIM
from ._ddbm import DDBM
from ._process import AbstractBridge, check_x_T
from ._solver import AbstractBridgeSolver

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
    steps = check_count("steps", steps)
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
    steps = check_count("steps", steps)
    t_min, t_max = _grid_ends(bridge, t_min, t_max)
    ts = np.linspace(t_max, t_min, steps) if steps > 1 else np.array([t_max])
    return jnp.asarray(np.append(ts, 0.0), dtype=dtype)


def sample(
    denoiser: Callable,
    x_T,
    bridge: AbstractBridge,
    *,
    steps: int | None = None,
    solver: AbstractBridgeSolver | str | None = None,
    key: jax.Array | None = None,
    grid=None,
    return_trajectory: bool = False,
    callback: Callable[[dict], Any] | None = None,
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
    - `solver`: `DBIM(...)` (default `DBIM()`, eta = 0, order 1) or `DDBM(...)`, or a name
      (`"dbim"`, `"ddbm"`: the default options).
    - `key`: PRNG key, required by stochastic solvers (`solver.stochastic`; DBIM always, for
      its booting noise; DDBM when `churn > 0`); or one key per sample (shape `(batch,)`,
      `jaxdiff.per_sample_keys`): each sample's noise then depends only on its own key, as in
      `jaxdiff.sample`.
    - `grid`: decreasing times from below `T` to 0 (default `karras_grid(bridge, steps)`).
    - `return_trajectory`: also return `x` at every grid time, shape `(steps + 1, *x_T.shape)`.
    - `callback`: called on the host after every step with a dict (`i`, `t`, `t_next`, `x`,
      `denoised`); a host sync per step, for inspection only (not with per-sample keys).

    **Returns:** the samples at t = 0 (shaped like `x_T`), or with `return_trajectory` a
    `jaxdiff.SampleResult(x, trajectory)`.
    """
    check_instance("bridge", bridge, AbstractBridge, "a jaxdiff.bridges bridge (VE or VP)")
    solver = _resolve(solver)
    denoiser = check_model("denoiser", denoiser, "denoiser(x_t, t, x_T)")
    x_T = check_x_T(x_T)
    if grid is None:
        if steps is None:
            raise ValueError("pass steps= (the number of grid intervals) or grid=")
        grid = karras_grid(bridge, steps, dtype=x_T.dtype)
    else:
        grid = check_grid(grid, name="grid", unit="t", below=float(bridge.T), below_name="T")
        grid = grid.astype(x_T.dtype)
        if steps is not None and check_count("steps", steps) != grid.shape[0] - 1:
            raise ValueError(
                f"steps={steps} does not match the grid's {grid.shape[0] - 1} intervals"
            )
    who = f"{type(solver).__name__}({_options(solver)})"
    key = check_run_options(key, x_T, stochastic=solver.stochastic, who=who, callback=callback)
    x0, trajectory = _sample(
        denoiser, x_T, grid, bridge, solver, key, bool(return_trajectory), callback
    )
    return SampleResult(x0, trajectory) if return_trajectory else x0


#: bridge solvers by name, for `sample(..., solver="dbim")` and the command line
SOLVERS: dict[str, type[AbstractBridgeSolver]] = {"dbim": DBIM, "ddbm": DDBM}


def _resolve(solver) -> AbstractBridgeSolver:
    if solver is None:
        return SOLVERS["dbim"]()
    return lookup("solver", solver, SOLVERS, AbstractBridgeSolver, "bridge solver")


def _options(solver) -> str:
    return ", ".join(f"{k}={getattr(solver, k)}" for k in solver.__dataclass_fields__)


@eqx.filter_jit
def _sample(denoiser, x_T, ts, bridge, solver, key, return_trajectory, callback):
    check_model_output(  # while tracing: once per compilation
        lambda d, x, t: d(x, t, x), (denoiser, x_T, ts[0]), x_T, "denoiser(x_t, t, x_T)", "x_T"
    )

    def bind(x_T_):
        return lambda x, t: denoiser(x, jnp.asarray(t, x.dtype), x_T_)

    def init(x_T_, key_):
        return solver.init(bind(x_T_), x_T_, ts, bridge, key_)

    def step(x_T_, x, carry, i, key_, final):
        return solver.step(bind(x_T_), x, carry, i, ts, x_T_, bridge, key_, final=final)

    return fixed_grid.run(
        init,
        step,
        x_T,
        ts,
        key=key,
        return_trajectory=return_trajectory,
        callback=callback,
        names=("t", "t_next"),
    )
