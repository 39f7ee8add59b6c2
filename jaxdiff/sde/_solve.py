"""`solve_sde`: fixed-step solves of Itô SDEs on diffrax."""

from __future__ import annotations

import itertools
import math
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np

from .._checks import check_key, check_positive, is_traced
from ._brownian import GridBrownianPath, StepIncrement
from ._milstein import DiagonalMilstein
from ._sde import SDE
from ._solvers import is_stratonovich, needs_levy_area, resolve_solver


class DiagonalDiffusion(eqx.Module):
    """Diagonal noise as diffrax 0.7 wants it: a `lineax.DiagonalLinearOperator`."""

    diffusion: Any

    def __call__(self, t, x, args):
        return lx.DiagonalLinearOperator(self.diffusion(t, x, args))


class _StratonovichDrift(eqx.Module):
    """The drift `f - c/2` of the Stratonovich SDE equal to an Itô SDE."""

    sde: SDE

    def __call__(self, t, x, args):
        f = self.sde.drift(t, x, args)
        c = self.sde.stratonovich_correction(t, x, args)
        return jtu.tree_map(lambda fi, ci: fi - 0.5 * ci, f, c)


class _NegatedTime(eqx.Module):
    """`fn(-tau, x, args)`, times `sign`: drift (`sign=-1`) and diffusion (`+1`) in `tau = -t`."""

    fn: Any
    sign: float = eqx.field(static=True)

    def __call__(self, tau, x, args):
        out = self.fn(-tau, x, args)
        return out if self.sign == 1 else jtu.tree_map(lambda v: -v, out)


def time_reversed(sde: SDE) -> SDE:
    """The SDE in `tau = -t`, a forward Itô SDE: `dx = -f(-tau, x) dtau + g(-tau, x) dW`.

    A reverse-time solve is this forward solve, so every diffrax solver (and the
    Itô/Stratonovich correction) sees increasing time.
    """
    diffusion = None if sde.diffusion is None else _NegatedTime(sde.diffusion, 1.0)
    return SDE(
        _NegatedTime(sde.drift, -1.0),
        diffusion,
        noise=sde.noise,
        noise_dim=sde.noise_dim,
        additive=sde.additive,
    )


class _ReversedBrownianPath(dfx.AbstractBrownianPath):
    """`W~(tau) = W(-tau)`: a Brownian path in `tau = -t` made from one in `t`.

    Its increment over `[a, b]` is minus that of `W` over `[-b, -a]`; the space-time Lévy area
    of a time-reversed path equals the original's.
    """

    path: dfx.AbstractBrownianPath

    @property
    def t0(self):
        return -self.path.t1

    @property
    def t1(self):
        return -self.path.t0

    @property
    def levy_area(self):
        return self.path.levy_area

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        if t1 is None:
            return jtu.tree_map(lambda v: v, self.path.evaluate(-t0, left=left))
        out = self.path.evaluate(-t1, -t0, left=left, use_levy=use_levy)
        neg = lambda tree: jtu.tree_map(lambda v: -v, tree)
        if not use_levy:
            return neg(out)
        if isinstance(out, dfx.SpaceTimeLevyArea):
            return dfx.SpaceTimeLevyArea(dt=out.dt, W=neg(out.W), H=out.H)
        return dfx.BrownianIncrement(dt=out.dt, W=neg(out.W))


# solve_sde's key= path draws the noise of this many bytes of steps at once (one batched draw per
# chunk of steps, then a lax.scan over the chunk): large enough that the per-draw overhead
# vanishes, small enough to stay bounded whatever the number of steps. The chunking changes
# no result (a step's draw depends on its key and start time only), only speed and memory.
CHUNK_BYTES = 4 * 2**20

# solvers whose step evaluates the Brownian path once, over the whole step, and that
# solve_sde's scan runs (anything else goes through diffrax's loop, with the same noise)
_SCANNED_SOLVERS = (
    dfx.Euler,
    DiagonalMilstein,
    dfx.ItoMilstein,
    dfx.StratonovichMilstein,
    dfx.EulerHeun,
    dfx.Heun,
)


def _scannable(solver, adjoint) -> bool:
    """Whether solve_sde's own scan runs this solve (same result as diffrax's loop, faster)."""
    if type(adjoint) not in (dfx.ForwardMode, dfx.RecursiveCheckpointAdjoint):
        return False
    if type(solver) in _SCANNED_SOLVERS:
        return True
    return isinstance(solver, dfx.AbstractSRK) and solver.minimal_levy_area in (
        dfx.AbstractBrownianIncrement,
        dfx.BrownianIncrement,
        dfx.AbstractSpaceTimeLevyArea,
        dfx.SpaceTimeLevyArea,
    )


def chunking(num_steps: int, step_bytes: int, budget: int) -> tuple[int, int]:
    """`(chunks, steps per chunk)` for `num_steps` steps of `step_bytes` of noise each: chunks
    of at most `budget` bytes (at least one step), as even as possible (`chunks * size -
    num_steps < chunks` padded steps)."""
    most = max(1, min(num_steps, budget // max(step_bytes, 1)))
    chunks = -(-num_steps // most)
    return chunks, -(-num_steps // chunks)


def _scan_solve(make_terms, solver, y0, grid, ts, path: GridBrownianPath, args, checkpoint):
    """The fixed-step solve as nested `lax.scan`s: over chunks of steps, each drawing its
    steps' Brownian increments in one batched call (`path.increments`), then over the steps of
    the chunk, each one `solver.step` on its increment. Returns the states at `ts` (stacked).

    Same steps, same increments, same solver steps as `diffrax.diffeqsolve` with
    `StepTo(ts=grid)` and `SaveAt(ts=ts)`, without the per-step cost of diffrax's loop and of
    a per-step draw. `checkpoint`: rematerialize each chunk in reverse-mode autodiff (memory
    of one chunk plus one state per chunk, as diffrax's `RecursiveCheckpointAdjoint` bounds it).
    """
    n = grid.shape[0] - 1
    chunks, size = chunking(n, path.noise_bytes(), path.chunk_bytes)
    pad = chunks * size - n
    t0s, t1s = grid[:-1], grid[1:]
    if pad:  # padded steps of zero length at the end; their results are discarded
        t0s = jnp.concatenate([t0s, jnp.full((pad,), grid[-1], grid.dtype)])
        t1s = jnp.concatenate([t1s, jnp.full((pad,), grid[-1], grid.dtype)])
    num = ts.shape[0]
    # slot of the output that step k writes (its end time is ts[slot]); `num` is a dummy slot.
    # Two times (the common case) need no buffer: the final state is the last step's.
    save = num > 2
    if save:
        hit = jnp.searchsorted(grid, ts)  # grid[hit[i]] == ts[i]: ts are grid points
        slots = jnp.full((chunks * size,), num, jnp.int32)
        slots = slots.at[hit[1:] - 1].set(jnp.arange(1, num, dtype=jnp.int32))
        ys0 = jtu.tree_map(lambda y: jnp.zeros((num + 1, *y.shape), y.dtype).at[0].set(y), y0)
    else:
        slots, ys0 = jnp.zeros((chunks * size,), jnp.int32), None
    index = jnp.arange(chunks * size, dtype=jnp.int32)
    xs = jtu.tree_map(lambda a: a.reshape(chunks, size), (t0s, t1s, slots, index))

    zero_w = jtu.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), path.shape)
    zero_h = zero_w if path.with_levy else None
    zero = StepIncrement(grid[0], grid[1], zero_w, zero_h, path.levy_area)
    state0 = solver.init(make_terms(zero), grid[0], grid[1], y0, args)

    def one(carry, step_xs):
        y, state, ys = carry
        t0, t1, slot, k, w, h = step_xs
        terms = make_terms(StepIncrement(t0, t1, w, h, path.levy_area))
        y1, _, _, state1, _ = solver.step(terms, t0, t1, y, args, state, False)
        if pad:
            keep = k < n
            y1, state1 = jtu.tree_map(lambda a, b: jnp.where(keep, a, b), (y1, state1), (y, state))
        if save:
            ys = jtu.tree_map(lambda buf, v: buf.at[slot].set(v), ys, y1)
        return (y1, state1, ys), None

    def chunk(carry, chunk_xs):
        t0c, t1c, slotc, kc = chunk_xs
        w, h = path.increments(t0c, t1c)
        return jax.lax.scan(one, carry, (t0c, t1c, slotc, kc, w, h))[0], None

    if checkpoint:
        chunk = jax.checkpoint(chunk)
    y, _, ys = jax.lax.scan(chunk, (y0, state0, ys0), xs)[0]
    if save:
        return jtu.tree_map(lambda buf: buf[:num], ys)
    return jtu.tree_map(lambda a, b: jnp.stack([a, b]), y0, y)


def _check_ts(ts) -> np.ndarray:
    if is_traced(ts):
        raise ValueError(
            "ts must be concrete (not traced): the step grid is fixed when the solve is "
            "compiled. Inside jit, build ts with numpy (np.array) or close over an array made "
            "outside, instead of passing it as a jit/vmap argument."
        )
    try:
        ts_np = np.asarray(ts, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"ts must be a 1-D array of times, got {type(ts).__name__}") from e
    if ts_np.ndim != 1 or ts_np.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array with at least 2 times, got shape {ts_np.shape}")
    if not np.all(np.isfinite(ts_np)):
        raise ValueError("ts must be finite")
    diffs = np.diff(ts_np)
    if not (np.all(diffs > 0) or np.all(diffs < 0)):
        raise ValueError(
            "ts must be strictly monotone (increasing for forward solves, decreasing for "
            f"reverse-time solves), got {ts_np}"
        )
    return ts_np


def _check_dt(dt) -> float:
    if is_traced(dt):
        raise ValueError("dt must be a concrete number (it fixes the number of steps)")
    check_positive("dt", dt)
    return float(dt)


def step_grid(ts: np.ndarray, dt: float) -> np.ndarray:
    """The step grid: each interval of `ts` cut into `ceil(|interval| / dt)` equal steps, so
    every time in `ts` is a grid point and no step is longer than `dt`."""
    pieces = [ts[:1]]
    for a, b in itertools.pairwise(ts):
        n = max(1, math.ceil(round(abs(b - a) / dt, 9)))
        piece = a + (b - a) * np.arange(1, n + 1) / n
        piece[-1] = b
        pieces.append(piece)
    return np.concatenate(pieces)


def _shape_of(tree):
    return jtu.tree_map(lambda s: tuple(jnp.shape(s)), tree)


def _abstract_outputs(sde: SDE, t0, x0, args):
    return sde.drift(t0, x0, args), (None if sde.is_ode else sde.diffusion(t0, x0, args))


def _strong(x):
    """`x` as a strongly typed array: a weakly typed x0 (e.g. `jnp.full(n, 2.0)`) would compile
    a second program."""
    if isinstance(x, jax.Array) and not x.weak_type:
        return x
    return jnp.asarray(x, dtype=jnp.result_type(x))


# the state dtypes solve_sde takes (real floating point)
_STATE_DTYPES = ("bfloat16", "float16", "float32", "float64")


def _check_leaves(sde: SDE, x0):
    """x0 holds at least one array, all real floating point of an accepted dtype; returns the
    dtype of time: the leaves' common dtype, at least float32 (a float16 or bfloat16 state must
    not get a float16 step grid)."""
    leaves = jtu.tree_leaves(x0)
    if not leaves:
        raise ValueError(
            f"x0 must be an array or a pytree with at least one array, got an empty "
            f"{type(x0).__name__}"
        )
    accepted = ", ".join(_STATE_DTYPES[:-1]) + " or " + _STATE_DTYPES[-1]
    for leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating) or dtype.name not in _STATE_DTYPES:
            raise TypeError(
                f"x0 must hold real floating-point arrays ({accepted}), got dtype {dtype}"
            )
    if sde.noise != "diagonal" and not sde.is_ode and len(leaves) != 1:
        raise TypeError(
            f"noise={sde.noise!r} takes a single-array state x0; use noise='diagonal' for pytrees"
        )
    return jnp.promote_types(jnp.result_type(*leaves), jnp.float32)


def _check_state(sde: SDE, x0, t0, args):
    """Shapes of drift and diffusion against x0; run while `_solve` is traced (once per
    compilation), so the error still comes from the call but cached calls pay nothing."""
    x_shapes = jtu.tree_map(jnp.shape, x0)
    # one abstract trace of drift and diffusion together (no compilation, no FLOPs)
    f_out, g_out = eqx.filter_eval_shape(_abstract_outputs, sde, t0, x0, args)
    f_shape = _shape_of(f_out)
    if jtu.tree_structure(f_shape) != jtu.tree_structure(x_shapes) or f_shape != x_shapes:
        raise ValueError(
            f"drift(t, x0, args) must return the shape of x0: x0 has shape {x_shapes}, "
            f"drift returned {f_shape}"
        )
    if sde.is_ode:
        return
    g_shape = _shape_of(g_out)
    if sde.noise == "general":
        want = jtu.tree_map(lambda s: (*s, sde.noise_dim), x_shapes, is_leaf=_is_shape)
        what = f"x0.shape + (noise_dim,) = {want}"
    else:
        want, what = x_shapes, f"the shape of x0, {x_shapes}"
    if jtu.tree_structure(g_shape) != jtu.tree_structure(want) or g_shape != want:
        raise ValueError(
            f"diffusion(t, x0, args) must return {what} for noise={sde.noise!r}, got {g_shape}"
        )


def _is_shape(x) -> bool:
    return isinstance(x, tuple) and all(isinstance(i, int) for i in x)


def _check_brownian(brownian, sde: SDE, x0, ts: np.ndarray, solver):
    if not isinstance(brownian, dfx.AbstractBrownianPath):
        raise TypeError(
            "brownian must be a diffrax Brownian path (e.g. diffrax.VirtualBrownianTree or "
            f"jaxdiff.brownian_tree(...)), got {type(brownian).__name__}"
        )
    shape = getattr(brownian, "shape", None)
    if shape is not None:
        want = _shape_of(sde.noise_shape(x0))
        got = jtu.tree_map(
            lambda s: tuple(s.shape) if hasattr(s, "shape") else s, shape, is_leaf=_is_shape
        )
        if isinstance(shape, tuple) and _is_shape(shape):
            got = tuple(shape)
        if got != want:
            raise ValueError(
                f"brownian has shape {got} but this SDE needs Brownian shape {want} "
                "(see SDE.noise_shape(x0))"
            )
    lo, hi = float(ts.min()), float(ts.max())
    b0, b1 = brownian.t0, brownian.t1
    if not is_traced((b0, b1)):
        # diffrax paths store their interval in the time dtype; allow float32 rounding.
        slack = 1e-6 * max(1.0, abs(lo), abs(hi))
        if float(b0) > lo + slack or float(b1) < hi - slack:
            raise ValueError(
                f"brownian covers [{float(b0)}, {float(b1)}] but ts spans [{lo}, {hi}]"
            )
    if needs_levy_area(solver) and not issubclass(
        brownian.levy_area, dfx.AbstractSpaceTimeLevyArea
    ):
        raise ValueError(
            f"solver {type(solver).__name__} needs space-time Levy area: build brownian with "
            "levy_area=diffrax.SpaceTimeLevyArea"
        )


def solve_sde(
    sde: SDE,
    x0,
    ts,
    *,
    key: jax.Array | None = None,
    brownian: dfx.AbstractBrownianPath | None = None,
    dt: float,
    solver: str | dfx.AbstractSolver = "euler_maruyama",
    args: Any = None,
    adjoint: dfx.AbstractAdjoint | None = None,
):
    r"""Solve an Itô SDE with a fixed step and return the solution at every time in `ts`.

    The steps are those of a `diffrax.StepTo` grid that hits every time in `ts` with steps no
    longer than `dt`, taken by the diffrax solver on `MultiTerm(ODETerm(drift),
    ControlTerm(diffusion, brownian))`, saving only at `ts`. With `key=`, the solve is one
    `lax.scan` over chunks of steps, each drawing its Brownian increments in one batched call
    (chunks of at most a few MiB of noise), then scanning the solver's `step` over them; with
    `brownian=`, an ODE, an implicit or unusual solver, or an adjoint other than
    `ForwardMode`/`RecursiveCheckpointAdjoint`, it is `diffrax.diffeqsolve`. Compiled inside
    (one program per SDE/shape/grid); also usable under `jax.jit` and `jax.vmap` (with `ts` and
    `dt` concrete).

    **Arguments:**

    - `sde`: a `jaxdiff.SDE` (zero diffusion: an ODE, solved without noise).
    - `x0`: the state at `ts[0]`, an array or a pytree of arrays (diagonal noise), of dtype
      bfloat16, float16, float32 or float64. The solution has the dtype of `x0` (leaf by
      leaf); a half-precision state is solved with float32 time and arithmetic (diffrax
      computes in the dtype of time, and a float16 step grid cannot resolve fine steps) and
      returned in its own dtype.
    - `ts`: 1-D, strictly increasing, or strictly decreasing for reverse-time solves.
    - `key`: one PRNG key (`jax.random.key(seed)`, or a raw `uint32[2]`; for a batch of
      solves, `jax.vmap` over keys); without `brownian`, each grid step's increment (and
      space-time Lévy area, for the solvers that need it) is drawn from the key folded with
      the bits of the step's start time: a pure function of the key, the grid and the shapes,
      the same under `jit` and `vmap` and however the steps are chunked (fast, storage of one
      chunk; different `dt` give unrelated paths).
    - `brownian`: any diffrax Brownian path (`jaxdiff.brownian_tree(...)`,
      `diffrax.VirtualBrownianTree`), so that several solves share one path.
    - `dt`: the largest step size, `> 0` whatever the direction of `ts`.
    - `solver`: a name — `"euler_maruyama"`, `"milstein"`, `"heun"`, `"euler_heun"`, `"srk"`,
      `"shark"`, `"sra1"`, `"spark"` (ODEs: `"euler"`, `"heun"`, `"midpoint"`, `"tsit5"`, ...)
      — or any diffrax solver instance. Stratonovich solvers are given the
      Itô-to-Stratonovich corrected drift, so every solver converges to the Itô solution.
    - `args`: passed to drift and diffusion.
    - `adjoint`: how to differentiate the solve. Default `diffrax.ForwardMode()`: a plain
      loop, fastest to compile and run, supporting forward-mode autodiff; pass
      `diffrax.RecursiveCheckpointAdjoint()` for reverse-mode gradients (`jax.grad`).

    **Returns:** the solution at `ts`, a pytree like `x0` with a leading axis of `len(ts)`.
    """
    if adjoint is None:
        adjoint = dfx.ForwardMode()
    elif not isinstance(adjoint, dfx.AbstractAdjoint):
        raise TypeError(f"adjoint must be a diffrax.AbstractAdjoint, got {type(adjoint).__name__}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a jaxdiff.SDE, got {type(sde).__name__}")
    ts_np = _check_ts(ts)
    dt = _check_dt(dt)
    # strong dtypes: a weakly typed x0 (e.g. jnp.full(n, 2.0)) would compile a second program
    x0 = jtu.tree_map(_strong, x0)
    solver = resolve_solver(solver, sde)
    # time in at least float32; the solution is cast back to x0's dtypes in _solve
    time_dtype = _check_leaves(sde, x0)

    reverse = ts_np[-1] < ts_np[0]
    grid_np = step_grid(ts_np, dt)
    grid_cast = np.asarray(grid_np, time_dtype)
    if not np.all(np.isfinite(grid_cast)):
        raise ValueError(
            f"ts spans [{ts_np.min()}, {ts_np.max()}], beyond the range of "
            f"{jnp.dtype(time_dtype).name}, the dtype of time; use a float64 state"
        )
    if np.any(np.diff(grid_cast) == 0):
        raise ValueError(
            f"dt={dt} is too small for ts in {jnp.dtype(time_dtype).name}: steps collapse to "
            "equal times; use a larger dt or a float64 state"
        )
    if reverse:
        # Solve forward in tau = -t (see time_reversed).
        sde, grid_np, ts_np = time_reversed(sde), -grid_np, -ts_np
    # numpy arrays: the compiled call takes them directly (cheaper than device arrays made here)
    grid_t = np.asarray(grid_np, time_dtype)
    if key is not None:
        check_key(key)  # one key: vmap over keys for a batch of solves
    path = None
    if not sde.is_ode:
        if brownian is None and key is None:
            raise ValueError(
                "a stochastic solve needs key= (a PRNG key) or brownian= (a Brownian path)"
            )
        if brownian is not None and key is not None:
            raise ValueError("pass key= or brownian=, not both")
        if brownian is not None:
            _check_brownian(brownian, sde, x0, -ts_np if reverse else ts_np, solver)
            path = _ReversedBrownianPath(brownian) if reverse else brownian
        else:
            levy = dfx.SpaceTimeLevyArea if needs_levy_area(solver) else dfx.BrownianIncrement
            path = GridBrownianPath(grid_t, key, sde.noise_shape(x0), levy, CHUNK_BYTES)
    correct = (not sde.is_ode) and is_stratonovich(solver) and not sde.additive
    return _solve(
        sde,
        x0,
        grid_t,
        np.asarray(ts_np, time_dtype),
        path,
        solver,
        args,
        correct,
        adjoint,
    )


@eqx.filter_jit
def _solve(sde, x0, grid, ts, path, solver, args, stratonovich, adjoint):
    _check_state(sde, x0, grid[0], args)
    drift = _StratonovichDrift(sde) if stratonovich else sde.drift
    if sde.is_ode:
        terms = dfx.ODETerm(drift)
    else:
        vf = DiagonalDiffusion(sde.diffusion) if sde.noise == "diagonal" else sde.diffusion
        terms = dfx.MultiTerm(dfx.ODETerm(drift), dfx.ControlTerm(vf, path))
    if isinstance(path, GridBrownianPath) and _scannable(solver, adjoint):
        # the key= path: our own scan, with the noise drawn in bulk (same result as below)
        y0 = jtu.tree_map(lambda x: x.astype(jnp.promote_types(x.dtype, grid.dtype)), x0)
        make_terms = lambda p: dfx.MultiTerm(dfx.ODETerm(drift), dfx.ControlTerm(vf, p))
        checkpoint = isinstance(adjoint, dfx.RecursiveCheckpointAdjoint)
        ys = _scan_solve(make_terms, solver, y0, grid, ts, path, args, checkpoint)
        return jtu.tree_map(lambda y, x: y.astype(x.dtype), ys, x0)
    if ts.shape[0] == 2:
        saveat = dfx.SaveAt(t0=True, t1=True)
    else:
        saveat = dfx.SaveAt(ts=ts)
    sol = dfx.diffeqsolve(
        terms,
        solver,
        grid[0],
        grid[-1],
        dt0=None,
        y0=x0,
        args=args,
        stepsize_controller=dfx.StepTo(ts=grid),
        saveat=saveat,
        max_steps=grid.shape[0] - 1,
        adjoint=adjoint,
        throw=False,
    )
    # back to x0's dtypes (a half-precision state was promoted to the float32 time)
    return jtu.tree_map(lambda y, x: y.astype(x.dtype), sol.ys, x0)
