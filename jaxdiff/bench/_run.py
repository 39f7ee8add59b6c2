"""`run_bench`: samplers x schedules x NFE budgets on a suite of problems, with peers; on
EDM's sigma-space problems and on flow problems (grids from `sigma = inf`)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .. import schedules as _schedules
from ..metrics._sliced_wasserstein import sliced_wasserstein
from ..processes import RectifiedFlow
from ..samplers import SAMPLERS, by_name
from ..samplers._core import num_evaluations, sample
from ..schedules import tuned_flow
from ._peers import (
    DIFFRAX_SOLVERS,
    KDIFFUSION_SAMPLERS,
    diffrax_nfe,
    diffusers_times,
    flow_reference,
    kdiffusion_nfe,
    load_kdiffusion,
    run_diffrax,
    run_diffusers,
    run_flow_euler,
    run_kdiffusion,
)
from ._problems import Problem

__all__ = [
    "DIFFUSERS_SHIFTS",
    "FLOW_GRIDS",
    "FLOW_SIGMA_FIRST",
    "BenchResult",
    "fit_order",
    "flow_grid",
    "max_steps",
    "rms_error",
    "run_bench",
]

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
#: the peers: k-diffusion and diffrax on EDM's problems, diffusers on flow problems
PEERS = ("k-diffusion", "diffrax", "diffusers")
#: the shifts of the diffusers peer's grids (`FlowMatchEulerDiscreteScheduler(shift=...)`)
DIFFUSERS_SHIFTS = (1.0, 3.0)
#: on a flow problem, a sigma-space schedule runs after the step from inf, from this level
FLOW_SIGMA_FIRST = 20.0


def _shifted(fn, shift):
    return lambda n, dtype: fn(n, shift=shift, dtype=dtype)


#: the flow grids by name (`f(n, dtype)`, `n + 1` levels from `inf` to 0): rectified-flow time
#: grids from t = 1 (as `jaxdiff.schedules` builds them; on a flow problem their times are the
#: flow's own times) and `tuned_flow` (a sigma grid, the same on every flow)
FLOW_GRIDS: dict[str, Callable[[int, Any], jax.Array]] = {
    "flow": _shifted(_schedules.flow, 1.0),
    "flow_shift3": _shifted(_schedules.flow, 3.0),
    "diffusers_flow_match": _shifted(_schedules.diffusers_flow_match, 1.0),
    "diffusers_flow_match_shift3": _shifted(_schedules.diffusers_flow_match, 3.0),
    "tuned_flow": lambda n, dtype: tuned_flow(n, sigma_min=SIGMA_MIN, dtype=dtype),
}
_TIME_GRIDS = ("flow", "flow_shift3", "diffusers_flow_match", "diffusers_flow_match_shift3")


@dataclasses.dataclass
class BenchResult:
    """What `run_bench` measured.

    - `rows`: one dict per solve: `problem`, `dim`, `samples`, `nfe_budget`, `library`
      (`jaxdiff`, `k-diffusion`, `diffrax`, `diffusers`), `sampler`, `schedule`, `steps`,
      `nfe`, `sigma_first` (`inf` on flow problems), `stochastic`, `metric`
      (`trajectory_rms` for deterministic samplers: RMS over samples of the distance to the
      reference solve from the same noise; `sliced_w2` for stochastic ones: sliced
      2-Wasserstein distance to reference samples), `error` (that metric), `sliced_w2`,
      `loglik` (mean log-density of the samples under an exact mixture, else NaN), `wall_s`
      (one solve, compiled) and `compile_s`.
    - `orders`: one dict per (problem, library, sampler, schedule) of a deterministic sampler:
      `order`, the empirical order (minus the slope of log error against log NFE), and
      `points`, the number of NFE budgets fitted.
    - `notes`: reference checks and skipped peers, as sentences.
    """

    rows: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    notes: list[str]


def max_steps(nfe: Callable[[int], int], budget: int) -> int:
    """The largest `n` with `nfe(n) <= budget` (0 if none)."""
    n = 0
    while nfe(n + 1) <= budget:
        n += 1
    return n


def rms_error(out, ref) -> float:
    """RMS over samples of the Euclidean distance between `out` and `ref` (inf if not
    finite)."""
    out = np.asarray(out, np.float64)
    if not np.all(np.isfinite(out)):
        return float("inf")
    diff = (out - np.asarray(ref, np.float64)).reshape(out.shape[0], -1)
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=-1))))


def fit_order(nfes: Sequence[float], errors: Sequence[float]) -> float:
    """Empirical order: minus the least-squares slope of `log(error)` against `log(nfe)` over
    the finite positive errors (NaN with fewer than two distinct NFEs)."""
    pts = [(n, e) for n, e in zip(nfes, errors, strict=True) if np.isfinite(e) and e > 0]
    if len({n for n, _ in pts}) < 2:
        return float("nan")
    n, e = np.log(np.asarray(pts, np.float64)).T
    return float(-np.polyfit(n, e, 1)[0])


def _check_names(kind, names, valid):
    names = list(names)
    if not names:
        raise ValueError(f"{kind} must not be empty")
    bad = [n for n in names if n not in valid]
    if bad:
        raise ValueError(
            f"unknown {kind} {', '.join(map(repr, bad))}; expected: {', '.join(valid)}"
        )
    return list(dict.fromkeys(names))


def _schedule(name, n, dtype):
    return getattr(_schedules, name)(n, SIGMA_MIN, SIGMA_MAX, dtype=dtype)


def flow_grid(name: str, n: int, flow, dtype=jnp.float64) -> jax.Array:
    """The `n`-step grid called `name` on a flow problem (`n + 1` levels from `inf` to 0).

    - a `FLOW_GRIDS` name: that grid; a time grid (`flow`, `diffusers_flow_match`, ...) is
      built for the rectified flow, and on another flow (`TrigFlow`) the same times are the
      flow's own times, `sigma = flow.sigma(t)`; `tuned_flow` is the same sigma grid on
      every flow (they share the sigma-space ODE);
    - any `jaxdiff.schedules.SCHEDULES` name: the step from `inf` to `FLOW_SIGMA_FIRST`, then
      that schedule, `f(n - 1, 0.002, FLOW_SIGMA_FIRST)` (`n = 1`: `[inf, 0]`).
    """
    if name in FLOW_GRIDS:
        grid = FLOW_GRIDS[name](n, dtype)
        if name not in _TIME_GRIDS or isinstance(flow, RectifiedFlow) or n == 1:
            return grid
        ts = _schedules.flow_times(grid[1:-1])
        inner = flow.sigma(ts).astype(dtype)
        return jnp.concatenate([jnp.full((1,), jnp.inf, dtype), inner, jnp.zeros(1, dtype)])
    if n == 1:
        return jnp.array([jnp.inf, 0.0], dtype)
    finite = getattr(_schedules, name)(n - 1, SIGMA_MIN, FLOW_SIGMA_FIRST, dtype=dtype)
    return jnp.concatenate([jnp.full((1,), jnp.inf, dtype), finite])


def _flow_times(sigmas, flow) -> np.ndarray:
    """The flow's times of a grid's levels (`inf` -> 1, `0` -> 0)."""
    s = np.asarray(sigmas, np.float64)
    ts = np.asarray(flow.t_of_sigma(jnp.asarray(s)), np.float64)
    ts[np.isinf(s)], ts[s == 0] = 1.0, 0.0
    return ts


def _timed(fn):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    wall = time.perf_counter() - t0
    return out, wall, max(first - wall, 0.0)


def run_bench(
    problems: Sequence[Problem],
    samplers: Sequence[str],
    schedules: Sequence[str],
    nfes: Sequence[int],
    *,
    peers: bool | Sequence[str] = True,
    diffrax_solvers: Sequence[str] = ("heun", "tsit5"),
    ref_steps: int = 500,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> BenchResult:
    """Measures error and wall time of `samplers` x `schedules` x NFE budgets `nfes` on
    `problems`, against a tight reference.

    For each EDM problem (`problem.flow is None`), `x = 80 N(0, I)` is drawn once; the
    reference is `jaxdiff.sample` with Heun on a Karras grid of `ref_steps` steps (its
    distance to a `2 * ref_steps` solve is reported in `notes`). For each flow problem
    (`jaxdiff.bench.problem(name, process="rectified_flow")`), `x = N(0, I)` is the noise at
    t = 1 (`sigma = inf`), every grid starts at `inf` (`flow_grid`), and the reference is the
    exact flow ODE's endpoint at t = 0 from the same noise: an adaptive Dopri8 solve of
    `dx/dt = v(x, t)` with the exact velocity, tolerance 1e-11 (its distance to an adaptive
    Tsit5 solve at 1e-9 is reported in `notes`). The distribution reference is
    `num_samples` exact samples of a mixture (or, for a trained model, a reference solve from
    independent noise). A sampler runs with the largest step count whose NFE
    (`jaxdiff.samplers.num_evaluations`: `1 + nfe(n - 1)` on a grid from `inf`) fits the
    budget. Stochastic samplers use the key `seed`.

    **Arguments:**

    - `problems`: `Problem`s (`jaxdiff.bench.problem(name, process=...)`,
      `checkpoint_problem(dir)`).
    - `samplers`: names of `jaxdiff.samplers.SAMPLERS` (k-diffusion's spelling).
    - `schedules`: names of `jaxdiff.schedules` functions (`jaxdiff.schedules.SCHEDULES`), called
      as `f(n, 0.002, 80.0)` on EDM problems (`flow_grid` says what they are on a flow), and
      names of `FLOW_GRIDS` (`flow`, `flow_shift3`, `diffusers_flow_match`,
      `diffusers_flow_match_shift3`), which run on flow problems only.
    - `nfes`: NFE budgets (denoiser calls per sample).
    - `peers`: `True` for all of `PEERS` (`"k-diffusion"`, `"diffrax"`, `"diffusers"`),
      `False` for none, or a list. On EDM problems, k-diffusion runs its namesakes of
      `samplers` on the same grids (skipped, with a note, when it is not installed) and
      diffrax runs `diffrax_solvers` (names of `jaxdiff.bench.DIFFRAX_SOLVERS`) with fixed
      steps on the PF-ODE. On flow problems, `"diffusers"` runs the update of diffusers'
      `FlowMatchEulerDiscreteScheduler` (`run_flow_euler`: Euler in flow time on the
      velocity) on its own grid, `diffusers_flow_match(n, shift=s)` for every shift `s` in
      `DIFFUSERS_SHIFTS` (schedule `diffusers_flow_match` and `..._shift3`), computed in JAX
      (on a rectified flow it is `jaxdiff.samplers.Euler` on that grid); when diffusers is
      installed its real scheduler runs once per flow problem (rectified flow) to confirm
      (a note gives the difference).
    - `ref_steps`: steps of the reference solve of EDM problems.
    - `progress`: called as `progress(done, total, label)` after every solve.

    **Returns:** a `BenchResult`.
    """
    problems = list(problems)
    if not problems:
        raise ValueError("problems must not be empty")
    samplers = _check_names("samplers", samplers, list(SAMPLERS))
    schedules = _check_names("schedules", schedules, [*_schedules.SCHEDULES, *FLOW_GRIDS])
    nfes = [int(b) for b in nfes]
    if not nfes or any(b < 1 for b in nfes):
        raise ValueError(f"nfes must be a non-empty list of integers >= 1, got {nfes}")
    nfes = sorted(set(nfes))
    if peers is True:
        peers = PEERS
    elif peers is False or peers is None:
        peers = ()
    peers = _check_names("peers", peers, list(PEERS)) if peers else []
    has_edm = any(p.flow is None for p in problems)
    has_flow = any(p.flow is not None for p in problems)
    diffrax_solvers = (
        _check_names("diffrax solvers", diffrax_solvers, list(DIFFRAX_SOLVERS))
        if "diffrax" in peers and has_edm
        else []
    )
    if int(ref_steps) < 2:
        raise ValueError(f"ref_steps must be >= 2, got {ref_steps}")
    notes: list[str] = []
    kd_names = []
    if "k-diffusion" in peers and has_edm:
        try:
            load_kdiffusion()
            kd_names = [s for s in samplers if s in KDIFFUSION_SAMPLERS]
        except ImportError as e:
            notes.append(f"k-diffusion rows skipped: {e}")
    if has_flow and set(peers) & {"k-diffusion", "diffrax"}:
        notes.append(
            "flow problems: k-diffusion and diffrax peers skipped (their samplers cannot start "
            "from sigma = inf); the flow peer is diffusers' FlowMatchEulerDiscreteScheduler"
        )
    edm_scheds = [s for s in schedules if s not in FLOW_GRIDS]
    if has_edm and not edm_scheds:
        raise ValueError("schedules has no schedule for the EDM problems (only flow grids)")
    diffusers_peer = "diffusers" in peers
    total = 0
    for prob in problems:
        if prob.flow is None:
            n_sched = len(edm_scheds)
            total += len(nfes) * n_sched * (len(samplers) + len(kd_names) + len(diffrax_solvers))
        else:
            n_peer = len(DIFFUSERS_SHIFTS) if diffusers_peer else 0
            total += len(nfes) * (len(schedules) * len(samplers) + n_peer)
    done = 0
    rows: list[dict[str, Any]] = []
    for prob in problems:
        with jax.enable_x64(prob.dtype == jnp.float64):
            if prob.flow is None:
                rows_p, notes_p, done = _run_problem(
                    prob,
                    samplers,
                    kd_names,
                    diffrax_solvers,
                    edm_scheds,
                    nfes,
                    int(ref_steps),
                    seed,
                    progress,
                    done,
                    total,
                )
            else:
                rows_p, notes_p, done = _run_flow_problem(
                    prob, samplers, schedules, nfes, diffusers_peer, seed, progress, done, total
                )
        rows += rows_p
        notes += notes_p
    return BenchResult(rows=rows, orders=orders(rows), notes=notes)


def orders(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Empirical orders (`fit_order`) of every deterministic line of `rows`."""
    lines: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("metric", "trajectory_rms") == "trajectory_rms":
            key = (r["problem"], r["library"], r["sampler"], r["schedule"])
            lines.setdefault(key, []).append(r)
    out = []
    for (pname, lib, sampler, sched), part in lines.items():
        pts = sorted({(int(r["nfe"]), float(r["error"])) for r in part})
        out.append(
            dict(
                problem=pname,
                library=lib,
                sampler=sampler,
                schedule=sched,
                order=fit_order([p[0] for p in pts], [p[1] for p in pts]),
                points=len(pts),
            )
        )
    return out


class _Recorder:
    """Measures solves of one problem against its references and collects their rows."""

    def __init__(self, prob, ref, ref_dist, k_sw, progress, done, total):
        self.prob, self.ref, self.ref_dist, self.k_sw = prob, ref, ref_dist, k_sw
        self.progress, self.done, self.total = progress, done, total
        self.rows: list[dict[str, Any]] = []

    def measure(self, out):
        out = np.asarray(out)
        if not np.all(np.isfinite(out)):
            return float("inf"), float("nan")
        sw = float(sliced_wasserstein(out, self.ref_dist, key=self.k_sw))
        ll = float("nan")
        if self.prob.mixture is not None:
            ll = float(jnp.mean(self.prob.mixture.log_prob(jnp.asarray(out))))
        return sw, ll

    def add(self, budget, library, sampler, sched, n, nfe, sigmas, stochastic, out, wall, comp):
        sw, ll = self.measure(out)
        prob = self.prob
        self.rows.append(
            dict(
                problem=prob.name,
                dim=prob.dim,
                samples=prob.num_samples,
                nfe_budget=budget,
                library=library,
                sampler=sampler,
                schedule=sched,
                steps=n,
                nfe=nfe,
                sigma_first=float(sigmas[0]),
                stochastic=bool(stochastic),
                metric="sliced_w2" if stochastic else "trajectory_rms",
                error=sw if stochastic else rms_error(out, self.ref),
                sliced_w2=sw,
                loglik=ll,
                wall_s=wall,
                compile_s=comp,
            )
        )

    def tick(self, label):
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, label)


def _distribution_reference(prob, k_ref, ref_solve):
    """Exact samples of a mixture, or (a trained model) a reference solve from independent
    noise."""
    if prob.mixture is not None:
        return np.asarray(prob.mixture.sample(k_ref, prob.num_samples))
    return np.asarray(ref_solve(k_ref))


def _run_problem(
    prob, samplers, kd_names, dx_names, schedules, nfes, ref_steps, seed, progress, done, total
):
    dtype = prob.dtype
    notes = []
    rng = np.random.default_rng(seed)
    x_np = (SIGMA_MAX * rng.standard_normal((prob.num_samples, *prob.shape))).astype(dtype)
    x = jnp.asarray(x_np)
    t0 = time.perf_counter()
    ref = np.asarray(sample(prob.denoiser, x, _schedule("karras", ref_steps, dtype)))
    ref2 = np.asarray(sample(prob.denoiser, x, _schedule("karras", 2 * ref_steps, dtype)))
    key = jr.key(seed)
    k_ref, k_sw, k_solve = jr.split(key, 3)
    ref_dist = _distribution_reference(
        prob,
        k_ref,
        lambda k: sample(
            prob.denoiser,
            SIGMA_MAX * jr.normal(k, x.shape, dtype),
            _schedule("karras", ref_steps, dtype),
        ),
    )
    floor = float(sliced_wasserstein(ref, ref_dist, key=k_sw))
    notes.append(
        f"{prob.name}: {prob.label}, {prob.num_samples} samples, {np.dtype(dtype).name}; "
        f"reference Heun/karras {ref_steps} steps vs {2 * ref_steps}: RMS difference "
        f"{rms_error(ref, ref2):.2e}; sliced W2 of the reference to the distribution "
        f"reference (the floor of stochastic rows) {floor:.3g} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    rec = _Recorder(prob, ref, ref_dist, k_sw, progress, done, total)
    kd_failed = set()
    for budget in nfes:
        for sname in samplers:
            solver = by_name(sname)
            n = max_steps(solver.nfe, budget)
            for sched in schedules:
                label = f"{prob.name} NFE {budget} {sname} {sched}"
                if n >= 1:
                    sigmas = _schedule(sched, n, dtype)
                    k = k_solve if solver.stochastic else None
                    out, wall, comp = _timed(
                        lambda s=sigmas, sv=solver, k=k: sample(
                            prob.denoiser, x, s, solver=sv, key=k
                        )
                    )
                    rec.add(budget, "jaxdiff", sname, sched, n, solver.nfe(n), sigmas,
                            solver.stochastic, out, wall, comp)  # fmt: skip
                rec.tick(label)
        for sname in kd_names:
            n = max_steps(lambda m, s=sname: kdiffusion_nfe(s, m), budget)
            stochastic = SAMPLERS[sname].stochastic
            for sched in schedules:
                if n >= 1 and sname not in kd_failed:
                    sigmas = np.asarray(_schedule(sched, n, dtype))
                    t0 = time.perf_counter()
                    try:
                        out = run_kdiffusion(sname, prob.denoiser, x_np, sigmas, seed=seed)
                    except Exception as e:  # a peer's missing optional dependency
                        kd_failed.add(sname)
                        notes.append(f"k-diffusion {sname} skipped: {type(e).__name__}: {e}")
                    else:
                        wall = time.perf_counter() - t0
                        rec.add(budget, "k-diffusion", sname, sched, n, kdiffusion_nfe(sname, n),
                                sigmas, stochastic, out, wall, 0.0)  # fmt: skip
                rec.tick(f"{prob.name} NFE {budget} k-diffusion {sname} {sched}")
        for dname in dx_names:
            n = max_steps(lambda m, s=dname: diffrax_nfe(s, m) if m >= 2 else 0, budget)
            for sched in schedules:
                if n >= 2:
                    sigmas = _schedule(sched, n, dtype)
                    out, wall, comp = _timed(
                        lambda s=sigmas, d=dname: run_diffrax(d, prob.denoiser, x, s)
                    )
                    rec.add(budget, "diffrax", dname, sched, n, diffrax_nfe(dname, n), sigmas,
                            False, out, wall, comp)  # fmt: skip
                rec.tick(f"{prob.name} NFE {budget} diffrax {dname} {sched}")
    return rec.rows, notes, rec.done


def _flow_nfe(solver, n: int) -> int:
    """Denoiser calls of `solver` on an `n`-step grid from `inf` (`num_evaluations`)."""
    return 1 + (solver.nfe(n - 1) if n > 1 else 0)


def _run_flow_problem(prob, samplers, schedules, nfes, diffusers_peer, seed, progress, done, total):
    dtype = prob.dtype
    flow = prob.flow
    notes = []
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal((prob.num_samples, *prob.shape)).astype(dtype)
    x = jnp.asarray(x_np)
    t0 = time.perf_counter()
    tight = 1e-11 if dtype == jnp.float64 else 1e-6
    ref, ref_steps = flow_reference(prob.velocity, x, tol=tight)
    ref = np.asarray(ref)
    ref2, _ = flow_reference(prob.velocity, x, tol=100 * tight)
    key = jr.key(seed)
    k_ref, k_sw, k_solve = jr.split(key, 3)
    ref_dist = _distribution_reference(
        prob, k_ref, lambda k: flow_reference(prob.velocity, jr.normal(k, x.shape, dtype))[0]
    )
    floor = float(sliced_wasserstein(ref, ref_dist, key=k_sw))
    notes.append(
        f"{prob.name}: {prob.label}, {prob.num_samples} samples, {np.dtype(dtype).name}; noise "
        f"N(0, I) at t = 1 (sigma = inf); reference: the flow ODE dx/dt = v(x, t) from t = 1 "
        f"to 0, adaptive Dopri8 at tolerance {tight:.0e} ({ref_steps} steps); RMS difference "
        f"to the same at {100 * tight:.0e}: {rms_error(ref, ref2):.2e}; sliced W2 of the "
        f"reference to the distribution reference (the floor of stochastic rows) {floor:.3g} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    rec = _Recorder(prob, ref, ref_dist, k_sw, progress, done, total)
    for budget in nfes:
        for sname in samplers:
            solver = by_name(sname)
            n = max_steps(lambda m, sv=solver: _flow_nfe(sv, m), budget)
            for sched in schedules:
                label = f"{prob.name} NFE {budget} {sname} {sched}"
                if n >= 1:
                    sigmas = flow_grid(sched, n, flow, dtype)
                    k = k_solve if solver.stochastic else None
                    out, wall, comp = _timed(
                        lambda s=sigmas, sv=solver, k=k: sample(
                            prob.denoiser, x, s, solver=sv, key=k
                        )
                    )
                    rec.add(budget, "jaxdiff", sname, sched, n, num_evaluations(solver, sigmas),
                            sigmas, solver.stochastic, out, wall, comp)  # fmt: skip
                rec.tick(label)
        if diffusers_peer:
            for shift in DIFFUSERS_SHIFTS:
                sched = _peer_schedule(shift)
                ts = diffusers_times(budget, shift)  # on a TrigFlow: the same times, its own
                out, wall, comp = _timed(lambda ts=ts: run_flow_euler(prob.velocity, x, ts))
                rec.add(budget, "diffusers", "flow_match_euler", sched, budget, budget,
                        [math.inf], False, out, wall, comp)  # fmt: skip
                rec.tick(f"{prob.name} NFE {budget} diffusers {sched}")
    if diffusers_peer and isinstance(flow, RectifiedFlow):
        notes.append(_confirm_diffusers(prob, x_np, nfes[0]))
    return rec.rows, notes, rec.done


def _peer_schedule(shift: float) -> str:
    return "diffusers_flow_match" + ("" if shift == 1 else f"_shift{shift:g}")


def _confirm_diffusers(prob, x_np, n) -> str:
    """Runs diffusers' real scheduler once (`n` steps, the last of `DIFFUSERS_SHIFTS`) and
    compares it with the peer computed in JAX and with jaxdiff's Euler on its grid."""
    shift = DIFFUSERS_SHIFTS[-1]
    try:
        theirs = run_diffusers(prob.velocity, x_np, n, shift)
    except ImportError as e:
        return f"{prob.name}: diffusers not installed ({e}); its peer rows are computed in JAX"
    x = jnp.asarray(x_np)
    ours = np.asarray(run_flow_euler(prob.velocity, x, diffusers_times(n, shift)))
    grid = FLOW_GRIDS[_peer_schedule(shift)](n, x_np.dtype)
    euler = np.asarray(sample(prob.denoiser, x, grid, solver="euler"))
    return (
        f"{prob.name}: diffusers' FlowMatchEulerDiscreteScheduler(shift={shift:g}), {n} steps, "
        f"run once to confirm: max |difference| to the peer computed in JAX "
        f"{float(np.max(np.abs(ours - theirs))):.1e}, to jaxdiff's Euler on its grid "
        f"{float(np.max(np.abs(euler - theirs))):.1e} (max |x| "
        f"{float(np.max(np.abs(ours))):.2g}; the scheduler steps in float32)"
    )
