"""Overhead of fixed-step SDE solves on diffrax against a hand-written `lax.scan`.

Problem: the Ornstein–Uhlenbeck process `dx = -theta x dt + sigma dW` (theta = 1,
sigma = 0.5, diagonal noise), `x0 = ones((batch,))` in float32, `t` in `[0, 1]`, solved by
Euler–Maruyama with `steps` equal steps (`dt = 1 / steps`); every method returns the final
state only. Methods, all timed in one process on the same cases:

- `lax.scan`: the baseline, written by hand and jitted:
  `x + f(t, x) dt + g sqrt(dt) normal(fold_in(key, bits(t_i)))`.
- `jd.solve_sde key=` (direct call; it is compiled inside) and the same call wrapped in an
  outer `jax.jit`: the default path (since 0.4.0 a scan over chunks of steps, each drawing
  its steps' normals in one batched call; before, one draw per step inside diffrax's loop:
  see `noise_speed.py`).
- `jd.solve_sde brownian=tree`: the shared-path option, `jd.brownian_tree(key, 0, 1, (batch,),
  tol=dt / 2, levy_area=diffrax.BrownianIncrement)`, called directly. Euler–Maruyama needs no
  Lévy area, and `BrownianIncrement` is what the raw `VirtualBrownianTree` below uses by default;
  `--tree-levy spacetime` times `jd.brownian_tree`'s default `SpaceTimeLevyArea` instead.
- `diffrax VBT`: raw `diffrax.diffeqsolve` as a user would write it naively: `Euler()`,
  `ConstantStepSize()`, `dt0=dt`, `SaveAt(t1=True)`, default adjoint, a
  `VirtualBrownianTree(0, 1, tol=dt / 2, shape=(batch,), key=key)`; jitted.
- `diffrax Unsafe`: the same with `UnsafeBrownianPath(shape=(batch,), key=key)` and
  `adjoint=ForwardMode()` (the default adjoint refuses this path; its error suggests ForwardMode).

Columns: "compile s" is the time JAX spends tracing, lowering and compiling during a method's
first call (JAX's own compile events, after `jax.clear_caches()` so that no method reuses
another's compiled pieces); "first call s" is that whole first call; "run ms" is the median
of the timed calls after it (each with a fresh key, waited on with `jax.block_until_ready`,
Python overhead of the call included); "ratio" is run time over the `lax.scan` run time of the
same case; "repeats" is how many timed calls were taken: up to `--repeats` within `--budget`
seconds per method, at least 3 (the tree methods at large batch get 3). Fast methods are timed
round-robin so that changing load hits them alike. "check" compares the final states' sample
mean and variance with the exact mean/variance of the Euler–Maruyama chain (z-scores; "ok"
when both |z| < 5); batch 1 is not checked. The script also checks that every method takes
`steps` steps, and reports how far `jd.solve_sde key=` is from the scan on the same key (same
normal draws, so they agree to float32 rounding).

Run (from the repository root):

    python benchmarks/sde_overhead.py                  # default cases, 2-3 minutes on 2 cores
    python benchmarks/sde_overhead.py --quick          # smoke run, 1-2 minutes (mostly compiling)
    python benchmarks/sde_overhead.py --out table.md   # also write the table to a file
    python benchmarks/sde_overhead.py --cases 1024x1000 4096x500 --repeats 10
"""

from __future__ import annotations

import argparse
import datetime
import functools
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np

import jaxdiff as jd
from jaxdiff.sde._solve import step_grid  # private: the grid jd.solve_sde steps through

THETA = 1.0
SIGMA = 0.5
T1 = 1.0

DEFAULT_CASES = ((1, 1000), (1024, 1000), (65536, 200))
QUICK_CASES = ((1, 100), (1024, 100))


def drift(t, x, args):
    return -THETA * x


def diffusion(t, x, args):
    return SIGMA * jnp.ones_like(x)


SDE = jd.SDE(drift, diffusion)


# --- the methods: each maker returns `fn(key) -> final state` (shape (batch,)) ---------------


def make_scan(batch: int, steps: int):
    dt = T1 / steps
    sqrt_dt = math.sqrt(dt)
    x0 = jnp.ones((batch,), jnp.float32)

    # the step times as jd.solve_sde's grid has them (float32); each step's draw is keyed by
    # the bits of its start time, as jd.solve_sde's per-step Brownian path does
    ts = jnp.asarray(step_grid(np.array([0.0, T1]), dt), jnp.float32)

    @jax.jit
    def run(key, x0):
        def step(x, t):
            word = jax.lax.bitcast_convert_type(t, jnp.uint32)
            dw = jr.normal(jr.fold_in(key, word), x.shape, x.dtype)
            return x + drift(t, x, None) * dt + diffusion(t, x, None) * sqrt_dt * dw, None

        x, _ = jax.lax.scan(step, x0, ts[:-1])
        return x

    return lambda key: run(key, x0)


def make_jd_key(batch: int, steps: int):
    x0 = jnp.ones((batch,), jnp.float32)
    ts = np.array([0.0, T1])
    dt = T1 / steps
    return lambda key: jd.solve_sde(SDE, x0, ts, key=key, dt=dt)[-1]


def make_jd_key_jit(batch: int, steps: int):
    ts = np.array([0.0, T1])
    dt = T1 / steps
    x0 = jnp.ones((batch,), jnp.float32)
    run = jax.jit(lambda key, x0: jd.solve_sde(SDE, x0, ts, key=key, dt=dt)[-1])
    return lambda key: run(key, x0)


def make_jd_tree(batch: int, steps: int, levy_area: type = dfx.BrownianIncrement):
    x0 = jnp.ones((batch,), jnp.float32)
    ts = np.array([0.0, T1])
    dt = T1 / steps

    def run(key):
        bm = jd.brownian_tree(key, 0.0, T1, (batch,), tol=dt / 2, levy_area=levy_area)
        return jd.solve_sde(SDE, x0, ts, brownian=bm, dt=dt)[-1]

    return run


def _raw_diffrax(
    batch: int, steps: int, path_of: Callable, adjoint=None, *, with_stats: bool = False
):
    dt = T1 / steps
    x0 = jnp.ones((batch,), jnp.float32)

    @jax.jit
    def run(key, x0):
        bm = path_of(key)
        terms = dfx.MultiTerm(
            dfx.ODETerm(drift),
            dfx.ControlTerm(lambda t, y, a: lx.DiagonalLinearOperator(diffusion(t, y, a)), bm),
        )
        sol = dfx.diffeqsolve(
            terms,
            dfx.Euler(),
            0.0,
            T1,
            dt0=dt,
            y0=x0,
            saveat=dfx.SaveAt(t1=True),
            stepsize_controller=dfx.ConstantStepSize(),
            **({} if adjoint is None else {"adjoint": adjoint}),
        )
        if with_stats:
            return sol.ys[-1], sol.stats["num_steps"]
        return sol.ys[-1]

    return lambda key: run(key, x0)


def make_diffrax_vbt(batch: int, steps: int, *, with_stats: bool = False):
    dt = T1 / steps
    path_of = lambda key: dfx.VirtualBrownianTree(0.0, T1, tol=dt / 2, shape=(batch,), key=key)
    return _raw_diffrax(batch, steps, path_of, with_stats=with_stats)


def make_diffrax_unsafe(batch: int, steps: int, *, with_stats: bool = False):
    # The default adjoint (RecursiveCheckpointAdjoint) refuses UnsafeBrownianPath and its error
    # message suggests ForwardMode, so that is what a user ends up writing.
    path_of = lambda key: dfx.UnsafeBrownianPath(shape=(batch,), key=key)
    return _raw_diffrax(batch, steps, path_of, dfx.ForwardMode(), with_stats=with_stats)


METHODS = (
    ("lax.scan (baseline)", make_scan),
    ("jd.solve_sde key=", make_jd_key),
    ("jd.solve_sde key=, in jax.jit", make_jd_key_jit),
    ("jd.solve_sde brownian=tree", make_jd_tree),
    ("diffrax VBT", make_diffrax_vbt),
    ("diffrax Unsafe", make_diffrax_unsafe),
)


# --- timing and checks ------------------------------------------------------------------------


_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class CompileTimer:
    """Wall time JAX spends tracing, lowering and compiling inside a `with` block.

    Listens to JAX's own compile events (`jax.monitoring`) and takes the union of their time
    spans, so nested traces (an inner `jit` traced within an outer one) count once.
    """

    def __init__(self):
        self.spans: list[tuple[float, float]] | None = None
        jax.monitoring.register_event_time_span_listener(self._listen)

    def _listen(self, event, start, end, **kwargs):
        if self.spans is not None and event in _COMPILE_EVENTS:
            self.spans.append((start, end))

    def __enter__(self):
        self.spans = []
        return self

    def __exit__(self, *exc):
        spans, self.spans = sorted(self.spans), None
        total, reach = 0.0, -math.inf
        for start, end in spans:
            total += max(0.0, end - max(start, reach))
            reach = max(reach, end)
        self.seconds = total


def _call(fn, key) -> tuple[float, jax.Array]:
    t = time.perf_counter()
    out = jax.block_until_ready(fn(key))
    return time.perf_counter() - t, out


def time_case(fns: dict, keys, repeats: int, budget_s: float, timer: CompileTimer):
    """Time every method of one case.

    Per method, in order: `jax.clear_caches()` (so that no method reuses the traces and
    compiled pieces, e.g. jaxdiff's and diffrax's inner jits, of the methods before it), a
    first call (its compile time is measured), then one timed call that sets the number of
    repeats (`budget_s` worth, between 3 and `repeats`). Slow methods (3 repeats) take their
    other two repeats right away; the others are compiled again (later `clear_caches()` threw
    their programs away) and take their remaining repeats round-robin, so that changing load
    on a shared machine hits them alike. Every method gets the same keys, a new one per call.
    Returns {name: (compile_s, first_call_s, median_run_s, repeats, first call's output)}.
    """
    keys = list(keys)  # index outside the timed calls (indexing compiles on first use)
    compile_s, first, outs, times, wanted = {}, {}, {}, {}, {}
    for name, fn in fns.items():
        jax.clear_caches()
        with timer:
            first[name], outs[name] = _call(fn, keys[0])
        compile_s[name] = timer.seconds
        est, _ = _call(fn, keys[1])
        times[name] = [est]
        wanted[name] = max(3, min(repeats, int(budget_s / max(est, 1e-9))))
        if wanted[name] == 3:
            times[name] += [_call(fn, k)[0] for k in keys[2:4]]
    fast = {name: fn for name, fn in fns.items() if wanted[name] > 3}
    for fn in fast.values():
        _call(fn, keys[0])
    for r in range(1, max(wanted.values())):
        for name, fn in fast.items():
            if r < wanted[name]:
                times[name].append(_call(fn, keys[r + 1])[0])
    return {
        name: (
            compile_s[name],
            first[name],
            statistics.median(times[name]),
            len(times[name]),
            outs[name],
        )
        for name in fns
    }


def em_moments(steps: int):
    """Exact mean and variance at t = 1 of the Euler–Maruyama chain for OU from x0 = 1."""
    dt = T1 / steps
    a = 1.0 - THETA * dt
    mean = a**steps
    var = SIGMA**2 * dt * (1.0 - a ** (2 * steps)) / (1.0 - a**2)
    return mean, var


def check(x, steps: int) -> str:
    x = np.asarray(x, np.float64)
    n = x.size
    if n < 2 or not np.all(np.isfinite(x)):
        return "-" if np.all(np.isfinite(x)) else "NaN!"
    mean, var = em_moments(steps)
    z_mean = (x.mean() - mean) / math.sqrt(var / n)
    z_var = (x.var(ddof=1) - var) / (var * math.sqrt(2.0 / (n - 1)))
    tag = "ok" if abs(z_mean) < 5 and abs(z_var) < 5 else "FAIL"
    return f"{tag} (z {z_mean:+.1f}, {z_var:+.1f})"


def count_steps(batch: int, steps: int, key) -> dict[str, int]:
    """Steps actually taken by each diffrax solve (outside the timings)."""
    out = {}
    for name, make in (("diffrax VBT", make_diffrax_vbt), ("diffrax Unsafe", make_diffrax_unsafe)):
        _, n = make(min(batch, 4), steps, with_stats=True)(key)
        out[name] = int(n)
    out["jd.solve_sde"] = len(step_grid(np.array([0.0, T1]), T1 / steps)) - 1
    return out


def parse_case(s: str) -> tuple[int, int]:
    try:
        b, n = s.lower().split("x")
        return int(b), int(n)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"case must look like BATCHxSTEPS, got {s!r}") from e


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description="Time Euler–Maruyama OU solves: hand-written lax.scan vs jd.solve_sde "
        "vs raw diffrax (VirtualBrownianTree, UnsafeBrownianPath).",
    )
    p.add_argument(
        "--cases",
        nargs="+",
        type=parse_case,
        metavar="BATCHxSTEPS",
        help="cases to run (default: 1x1000 1024x1000 65536x200)",
    )
    p.add_argument("--repeats", type=int, default=20, help="timed calls per method (default 20)")
    p.add_argument(
        "--budget",
        type=float,
        default=3.0,
        help="seconds of timed calls per method and case before stopping early (at least 3 "
        "repeats are always taken; default 3)",
    )
    p.add_argument("--quick", action="store_true", help="small cases, few repeats (smoke run)")
    p.add_argument(
        "--tree-levy",
        choices=("increment", "spacetime"),
        default="increment",
        help="levy_area of the jd.brownian_tree row: diffrax.BrownianIncrement (default, like "
        "the raw VirtualBrownianTree row) or SpaceTimeLevyArea (jd.brownian_tree's default)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE.md", help="also write the table (Markdown) here")
    a = p.parse_args(argv)

    cases = a.cases or (QUICK_CASES if a.quick else DEFAULT_CASES)
    repeats = 5 if a.quick and a.repeats == 20 else a.repeats
    budget = 0.5 if a.quick else a.budget
    if repeats < 3:
        p.error("--repeats must be at least 3")

    methods = list(METHODS)
    if a.tree_levy == "spacetime":
        tree = functools.partial(make_jd_tree, levy_area=dfx.SpaceTimeLevyArea)
        methods = [
            (name + " (SpaceTimeLevyArea)", tree) if make is make_jd_tree else (name, make)
            for name, make in methods
        ]
    dev = jax.devices()[0]
    header = (
        f"device: {dev.platform} ({dev.device_kind}), {jax.device_count()} device(s), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, load "
        f"average {os.getloadavg()[0]:.1f} at start; jax {jax.__version__}, "
        f"diffrax {dfx.__version__}, jaxdiff {jd.__version__}, python "
        f"{platform.python_version()}; {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )
    command = "python benchmarks/sde_overhead.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(header)
    print(f"command: {command.strip()}", flush=True)

    rows = []
    notes = []
    timer = CompileTimer()
    key = jr.key(a.seed)
    for batch, steps in cases:
        case = f"{batch} x {steps}"
        key, k_case, k_steps = jr.split(key, 3)
        taken = count_steps(batch, steps, k_steps)
        tag = "as expected" if all(n == steps for n in taken.values()) else "MISMATCH"
        counts = ", ".join(f"{m} {n}" for m, n in taken.items())
        notes.append(f"{case}: steps taken ({tag}, lax.scan {steps}): {counts}")
        fns = {name: make(batch, steps) for name, make in methods}
        res = time_case(fns, jr.split(k_case, repeats + 1), repeats, budget, timer)
        outs = {name: r[4] for name, r in res.items()}
        scan_s = res[methods[0][0]][2]
        for name, (compile_s, first_s, run_s, n, out) in res.items():
            chk = check(out, steps) if batch > 1 else "-"
            ratio = f"{run_s / scan_s:.2f}"
            row = (
                case,
                name,
                f"{compile_s:.2f}",
                f"{first_s:.2f}",
                f"{run_s * 1e3:.3g}",
                ratio,
                n,
                chk,
            )
            rows.append(row)
            print(" | ".join(map(str, row)), flush=True)
        # jd.solve_sde key= draws the same normals as the scan (the key folded with the bits
        # of each step's start time): compare the warm-up outputs, made with the same key.
        diff = float(jnp.max(jnp.abs(outs["jd.solve_sde key="] - outs["lax.scan (baseline)"])))
        notes.append(f"{case}: max |jd.solve_sde key= - lax.scan| on the same key = {diff:.2e}")

    cols = (
        "case (batch x steps)",
        "method",
        "compile s",
        "first call s",
        "run ms",
        "ratio",
        "repeats",
        "check",
    )
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join(["---"] * 2 + ["--:"] * 5 + ["---"]) + "|",
    ]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    table = "\n".join(lines)
    print()
    print(table)
    print()
    for note in notes:
        print(note)
    if a.out:
        with open(a.out, "w") as f:
            f.write(f"{header}\n\ncommand: `{command.strip()}`\n\n{table}\n\n")
            f.writelines(f"- {note}\n" for note in notes)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
