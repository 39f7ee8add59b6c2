"""Speed of `jd.solve_sde(..., key=)`'s noise against hand-written `lax.scan`s (issue 13, item 5).

Problem: the Ornstein–Uhlenbeck process `dx = -x dt + dW`, `x0 = ones((batch,))` in float32, `t`
in `[0, 1]`, Euler–Maruyama with `steps` equal steps; every method returns the final state.
Methods, timed round-robin in one process (each call with a fresh key, waited on):

- `bulk scan` (the baseline, ratio 1): all increments drawn in one
  `jr.normal(key, (steps, batch))` call, then a jitted `lax.scan` over them;
- `per-step scan`: a jitted `lax.scan` drawing `normal(fold_in(key, bits(t_k)))` every step
  (the noise stream of `jd.solve_sde`);
- `solve_sde after`: `jd.solve_sde(sde, x0, [0, 1], key=key, dt=1 / steps)`, today's path:
  chunks of steps, each drawing its increments in one batched call, and a scan of diffrax's
  `Euler.step` over them;
- `after, in jit`: the same call inside an outer `jax.jit` (without the per-call Python work of
  `jd.solve_sde`: argument checks and equinox's dispatch, about 1-3 ms here);
- `solve_sde before`: the path before bulk draws: `diffrax.diffeqsolve` with `StepTo`, drawing
  every step inside diffrax's loop (reproduced by handing `jd.solve_sde` the same per-step
  path as `brownian=`, which runs diffrax's loop).

A second table times the samplers' driver (`jaxdiff._fixed_grid.run`, as `jd.sample` runs a
sampler) on `EulerAncestral` with the exact denoiser of a 2-D two-component Gaussian mixture
(batch 4096 x 200 steps, Karras grid): each step drawing from its key (`per-step`) against
the opt-in bulk noise (`noise=sampler.step_noise`: a chunk of steps' draws in one batched
call).

"ms" is the median over the timed calls; "ratio" is over the bulk scan of the same case. The
"same noise" column checks that after, before and the per-step scan agree on one key (max
absolute difference of the final states: they draw the same numbers, to float rounding).

Run (from the repository root):

    python benchmarks/noise_speed.py            # batch 1024 and 4096 x 1000 steps, ~1 minute
    python benchmarks/noise_speed.py --quick    # a test-sized smoke run, under a minute
    python benchmarks/noise_speed.py --cases 1024x1000 --repeats 30 --clock cpu
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import jaxdiff as jd
from jaxdiff import _fixed_grid as fixed_grid  # private: the samplers' driver
from jaxdiff.sde._brownian import (  # private: the per-step path of key=
    DiffraxLoopPath,
    GridBrownianPath,
)
from jaxdiff.sde._solve import step_grid  # private: the grid jd.solve_sde steps through

DEFAULT_CASES = ((1024, 1000), (4096, 1000))
QUICK_CASES = ((1024, 50),)
SAMPLER_CASE, QUICK_SAMPLER_CASE = (4096, 200), (256, 20)
SDE = jd.SDE(lambda t, x, a: -x, lambda t, x, a: jnp.ones_like(x))


def _bits(t):
    return jax.lax.bitcast_convert_type(t, jnp.uint32)


def _em(x, dt, dw):
    return x - x * dt + math.sqrt(dt) * dw


def methods(batch: int, steps: int):
    dt = 1.0 / steps
    grid = jnp.asarray(step_grid(np.array([0.0, 1.0]), dt), jnp.float32)
    x0 = jnp.ones((batch,), jnp.float32)
    ts = np.array([0.0, 1.0])

    @jax.jit
    def bulk(key, x):
        dws = jr.normal(key, (steps, *x.shape), x.dtype)
        return jax.lax.scan(lambda x, dw: (_em(x, dt, dw), None), x, dws)[0]

    @jax.jit
    def per_step(key, x):
        def body(x, t):
            return _em(x, dt, jr.normal(jr.fold_in(key, _bits(t)), x.shape, x.dtype)), None

        return jax.lax.scan(body, x, grid[:-1])[0]

    def after(key, x):
        return jd.solve_sde(SDE, x, ts, key=key, dt=dt)[-1]

    after_jit = jax.jit(after)

    shape = jax.ShapeDtypeStruct((batch,), jnp.float32)

    def before(key, x):
        path = DiffraxLoopPath(GridBrownianPath(grid, key, shape))
        return jd.solve_sde(SDE, x, ts, brownian=path, dt=dt)[-1]

    return x0, {
        "bulk scan": bulk,
        "per-step scan": per_step,
        "solve_sde after": after,
        "after, in jit": after_jit,
        "solve_sde before": before,
    }


def time_case(batch: int, steps: int, repeats: int, clock=time.perf_counter):
    x0, fns = methods(batch, steps)
    key = jr.key(0)
    outs = {name: jax.block_until_ready(fn(key, x0)) for name, fn in fns.items()}  # compile
    times = {name: [] for name in fns}
    for r in range(repeats):
        k = jr.key(r + 1)
        for name, fn in fns.items():
            start = clock()
            jax.block_until_ready(fn(k, x0))
            times[name].append(clock() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    ref = outs["per-step scan"]
    same = {
        name: float(jnp.max(jnp.abs(out - ref)))
        for name, out in outs.items()
        if name != "bulk scan"
    }
    return med, same


def sampler_case(batch: int, steps: int, repeats: int, clock=time.perf_counter):
    """`EulerAncestral` through the fixed-grid driver, per-step draws vs bulk noise."""
    gm = jd.analytic.GaussianMixture(jnp.array([[-1.0, 0.0], [1.0, 0.5]]), jnp.full((2, 2), 0.09))
    sampler = jd.samplers.EulerAncestral()
    sigmas = jnp.asarray(jd.schedules.karras(steps, 0.002, 80.0), jnp.float32)
    x = 80.0 * jr.normal(jr.key(0), (batch, 2), jnp.float32)

    def make(noise):
        def init(x_, key):
            return x_, sampler.init_with_key(x_, sigmas, key)

        def step(batch_, x_, carry, i, key, final):
            return sampler.step(gm.denoiser, x_, carry, i, sigmas, key, final=final)

        run = lambda x_, key: fixed_grid.run(
            init, step, x_, sigmas, key=key, return_trajectory=False, noise=noise
        )[0]
        return jax.jit(run)

    fns = {"per-step": make(None), "bulk": make(sampler.step_noise)}
    outs = {name: jax.block_until_ready(fn(x, jr.key(0))) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            start = clock()
            jax.block_until_ready(fn(x, jr.key(r + 1)))
            times[name].append(clock() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    return med, float(jnp.max(jnp.abs(outs["per-step"] - outs["bulk"])))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a test-sized smoke run")
    parser.add_argument("--cases", nargs="*", help="cases as BATCHxSTEPS, e.g. 1024x1000")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per method")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time, all threads (steadier "
        "on a machine shared with other work)",
    )
    args = parser.parse_args(argv)
    if args.cases:
        cases = [tuple(int(v) for v in c.lower().split("x")) for c in args.cases]
    else:
        cases = QUICK_CASES if args.quick else DEFAULT_CASES
    repeats = args.repeats or (3 if args.quick else 15)

    device = jax.devices()[0]
    print(
        f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}, diffrax "
        f"{dfx.__version__}, python {platform.python_version()}; OU dx = -x dt + dW, float32, "
        f"Euler-Maruyama; median {args.clock} time of {repeats} calls, ratio over the bulk scan"
    )
    order = ("solve_sde before", "solve_sde after", "after, in jit", "per-step scan", "bulk scan")
    lines = [
        "| batch x steps | "
        + " | ".join(f"{m} ms" for m in order)
        + " | "
        + " | ".join(f"{m.removeprefix('solve_sde ')} / bulk" for m in order[:-1])
        + " | same noise (max abs diff) |",
        "|---|" + "--:|" * (2 * len(order) - 1) + "---|",
    ]
    for batch, steps in cases:
        clock = time.perf_counter if args.clock == "wall" else time.process_time
        med, same = time_case(batch, steps, repeats, clock)
        base = med["bulk scan"]
        cells = [f"{med[m] * 1e3:.2f}" for m in order]
        ratios = [f"{med[m] / base:.2f}x" for m in order[:-1]]
        diff = max(same.values())
        lines.append(f"| {batch} x {steps} | " + " | ".join(cells + ratios) + f" | {diff:.1e} |")
        print(lines[-1], flush=True)
    batch, steps = QUICK_SAMPLER_CASE if args.quick else SAMPLER_CASE
    med, diff = sampler_case(batch, steps, repeats, clock)
    sampler_lines = [
        "| sampler (driver) | batch x steps | per-step draws ms | bulk noise ms | per-step / bulk "
        "| same noise (max abs diff) |",
        "|---|---|--:|--:|--:|---|",
        f"| EulerAncestral, 2-D mixture | {batch} x {steps} | {med['per-step'] * 1e3:.1f} | "
        f"{med['bulk'] * 1e3:.1f} | {med['per-step'] / med['bulk']:.2f}x | {diff:.1e} |",
    ]
    print()
    print("\n".join(lines))
    print()
    print("\n".join(sampler_lines))


if __name__ == "__main__":
    main()
