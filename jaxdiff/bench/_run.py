"""`run_bench`: samplers x schedules x NFE budgets on a suite of problems, with peers."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .. import schedules as _schedules
from ..metrics._sliced_wasserstein import sliced_wasserstein
from ..samplers import SAMPLERS, by_name
from ..samplers._core import sample
from ._peers import (
    DIFFRAX_SOLVERS,
    KDIFFUSION_SAMPLERS,
    diffrax_nfe,
    kdiffusion_nfe,
    load_kdiffusion,
    run_diffrax,
    run_kdiffusion,
)
from ._problems import Problem

__all__ = ["BenchResult", "fit_order", "max_steps", "rms_error", "run_bench"]

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
PEERS = ("k-diffusion", "diffrax")


@dataclasses.dataclass
class BenchResult:
    """What `run_bench` measured.

    - `rows`: one dict per solve: `problem`, `dim`, `samples`, `nfe_budget`, `library`
      (`jaxdiff`, `k-diffusion`, `diffrax`), `sampler`, `schedule`, `steps`, `nfe`,
      `sigma_first`, `stochastic`, `metric` (`trajectory_rms` for deterministic samplers: RMS
      over samples of the distance to the reference solve from the same noise; `sliced_w2` for
      stochastic ones: sliced 2-Wasserstein distance to reference samples), `error` (that
      metric), `sliced_w2`, `loglik` (mean log-density of the samples under an exact
      mixture, else NaN), `wall_s` (one solve, compiled) and `compile_s`.
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

    For each problem, `x = 80 N(0, I)` is drawn once; the reference is `jaxdiff.sample` with
    Heun on a Karras grid of `ref_steps` steps (its distance to a `2 * ref_steps` solve is
    reported in `notes`), and the distribution reference is `num_samples` exact samples of a
    mixture (or, for a trained model, a reference solve from independent noise). A sampler
    runs with the largest step count whose NFE fits the budget. Stochastic samplers use the
    key `seed`.

    **Arguments:**

    - `problems`: `Problem`s (`jaxdiff.bench.problem(name)`, `checkpoint_problem(dir)`).
    - `samplers`: names of `jaxdiff.samplers.SAMPLERS` (k-diffusion's spelling).
    - `schedules`: names of `jaxdiff.schedules` functions (`jaxdiff.schedules.SCHEDULES`), called
      as `f(n, 0.002, 80.0)`.
    - `nfes`: NFE budgets (denoiser calls per sample).
    - `peers`: `True` for all of `("k-diffusion", "diffrax")`, `False` for none, or a list.
      k-diffusion runs its namesakes of `samplers` on the same grids (skipped, with a note,
      when it is not installed); diffrax runs `diffrax_solvers` (names of
      `jaxdiff.bench.DIFFRAX_SOLVERS`) with fixed steps on the PF-ODE.
    - `ref_steps`: steps of the reference solve.
    - `progress`: called as `progress(done, total, label)` after every solve.

    **Returns:** a `BenchResult`.
    """
    problems = list(problems)
    if not problems:
        raise ValueError("problems must not be empty")
    samplers = _check_names("samplers", samplers, list(SAMPLERS))
    schedules = _check_names("schedules", schedules, list(_schedules.SCHEDULES))
    nfes = [int(b) for b in nfes]
    if not nfes or any(b < 1 for b in nfes):
        raise ValueError(f"nfes must be a non-empty list of integers >= 1, got {nfes}")
    nfes = sorted(set(nfes))
    if peers is True:
        peers = PEERS
    elif peers is False or peers is None:
        peers = ()
    peers = _check_names("peers", peers, list(PEERS)) if peers else []
    diffrax_solvers = (
        _check_names("diffrax solvers", diffrax_solvers, list(DIFFRAX_SOLVERS))
        if "diffrax" in peers
        else []
    )
    if int(ref_steps) < 2:
        raise ValueError(f"ref_steps must be >= 2, got {ref_steps}")
    notes: list[str] = []
    kd_names = []
    if "k-diffusion" in peers:
        try:
            load_kdiffusion()
            kd_names = [s for s in samplers if s in KDIFFUSION_SAMPLERS]
        except ImportError as e:
            notes.append(f"k-diffusion rows skipped: {e}")
    per = len(schedules) * (len(samplers) + len(kd_names) + len(diffrax_solvers))
    total = len(problems) * len(nfes) * per
    done = 0
    rows: list[dict[str, Any]] = []
    for prob in problems:
        with jax.enable_x64(prob.dtype == jnp.float64):
            rows_p, notes_p, done = _run_problem(
                prob,
                samplers,
                kd_names,
                diffrax_solvers,
                schedules,
                nfes,
                int(ref_steps),
                seed,
                progress,
                done,
                total,
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
    if prob.mixture is not None:
        ref_dist = np.asarray(prob.mixture.sample(k_ref, prob.num_samples))
    else:  # a tight solve from independent noise
        x_ind = SIGMA_MAX * jr.normal(k_ref, x.shape, dtype)
        ref_dist = np.asarray(sample(prob.denoiser, x_ind, _schedule("karras", ref_steps, dtype)))
    floor = float(sliced_wasserstein(ref, ref_dist, key=k_sw))
    notes.append(
        f"{prob.name}: {prob.label}, {prob.num_samples} samples, {np.dtype(dtype).name}; "
        f"reference Heun/karras {ref_steps} steps vs {2 * ref_steps}: RMS difference "
        f"{rms_error(ref, ref2):.2e}; sliced W2 of the reference to the distribution "
        f"reference (the floor of stochastic rows) {floor:.3g} "
        f"({time.perf_counter() - t0:.1f} s)"
    )

    def measure(out):
        out = np.asarray(out)
        if not np.all(np.isfinite(out)):
            return float("inf"), float("nan")
        sw = float(sliced_wasserstein(out, ref_dist, key=k_sw))
        ll = float("nan")
        if prob.mixture is not None:
            ll = float(jnp.mean(prob.mixture.log_prob(jnp.asarray(out))))
        return sw, ll

    rows = []

    def add(budget, library, sampler, sched, n, nfe, sigmas, stochastic, out, wall, comp):
        sw, ll = measure(out)
        rows.append(
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
                error=sw if stochastic else rms_error(out, ref),
                sliced_w2=sw,
                loglik=ll,
                wall_s=wall,
                compile_s=comp,
            )
        )

    def tick(label):
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, label)

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
                    add(budget, "jaxdiff", sname, sched, n, solver.nfe(n), sigmas,
                        solver.stochastic, out, wall, comp)  # fmt: skip
                tick(label)
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
                        add(budget, "k-diffusion", sname, sched, n, kdiffusion_nfe(sname, n),
                            sigmas, stochastic, out, wall, 0.0)  # fmt: skip
                tick(f"{prob.name} NFE {budget} k-diffusion {sname} {sched}")
        for dname in dx_names:
            n = max_steps(lambda m, s=dname: diffrax_nfe(s, m) if m >= 2 else 0, budget)
            for sched in schedules:
                if n >= 2:
                    sigmas = _schedule(sched, n, dtype)
                    out, wall, comp = _timed(
                        lambda s=sigmas, d=dname: run_diffrax(d, prob.denoiser, x, s)
                    )
                    add(budget, "diffrax", dname, sched, n, diffrax_nfe(dname, n), sigmas,
                        False, out, wall, comp)  # fmt: skip
                tick(f"{prob.name} NFE {budget} diffrax {dname} {sched}")
    return rows, notes, done
