"""Tune the grids shipped as `jaxdiff.schedules.tuned` (and, with `--from-noise`, the grids
from pure noise of `tuned_flow`) and check that they transfer.

For each step count `n` in `--steps`, `jd.schedules.optimize` (Adam through the compiled
sampler, `objective="log_rms"`: the geometric mean over mixtures of the RMS trajectory error
against a 512-step Heun reference from the same noise) tunes an `n`-step grid for the sampler
`--sampler` (default options) on a training set of random Gaussian mixtures in 2-D and 16-D
(`TRAIN`: different seeds, component counts, scales and component widths; none of them is a
benchmark or test problem). The tuned grid is then compared with `karras` and `kl_optimal` on
held-out mixtures (`HELD_OUT`: the `ring` and `grid` presets, other random seeds, 8-D and 32-D,
an ill-conditioned mixture) and held-out noise.

The script prints each grid's relative log-sigma positions
`(log sigma_i - log sigma_min) / (log sigma_max - log sigma_min)` (from 1 down to 0) in the
form pasted into `jaxdiff/schedules/_tables.py` (`_TUNED_KNOTS`), and a transfer table.

    python benchmarks/tune_schedule.py                    # the shipped grids (steps 5 10 15 20 30)
    python benchmarks/tune_schedule.py --steps 10 --iterations 50   # a quick look
    python benchmarks/tune_schedule.py --sampler UniPC --steps 10 20   # another sampler

With `--from-noise` the grids start at `sigma = inf` (pure noise: flow models, t = 1):
`optimize(..., sigma_max=inf)` keeps `jaxdiff.sample`'s first step from `inf` and tunes the
rest, the first finite level included, starting from `[inf] + karras(n - 1, 0.002, 20)`,
against the exact endpoint of the ODE from the same noise (300 Adam steps at learning rate
0.02: at 0.05 the longer grids' first level ran away and the loss rose again). The table
printed (and, with `--write-table`, written into `jaxdiff/schedules/_tables.py` as
`_TUNED_FLOW`) holds, per step count, the first finite level and the relative log-sigma
positions of the finite levels between it and `sigma_min`. The held-out check then runs on
flows: each held-out mixture's exact rectified-flow velocity through `from_velocity`, from
unit noise, against the exact flow-ODE endpoint (adaptive Dopri8,
`jaxdiff.bench.flow_reference`), next to diffusers' Euler on its own grid
(`FlowMatchEulerDiscreteScheduler`, computed as jaxdiff's Euler on `diffusers_flow_match`).

    python benchmarks/tune_schedule.py --from-noise --write-table   # tuned_flow's grids
    python benchmarks/tune_schedule.py --from-noise --steps 10 --iterations 50   # a look

Each step count is tuned independently (its own key, `jr.key(n)`), so `--steps 10 20` and
`--steps 5 15 30` together reproduce the full run; the shipped grids were made that way, in
three runs on 2 CPU cores shared with other jobs (load average 8 to 12): 90 to 370 s per
step count (about 100 s of it building the references and compiling), 20 minutes in all; the
held-out table adds about a minute per step count (`--no-eval` skips it). Everything runs in
float64.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import jaxdiff as jd

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
# the ranges the grids are tuned on at once (through `jd.schedules.carry`): EDM's, DDPM's (linear
# betas 1e-4 -> 0.02 over 1000 steps) and Stable Diffusion's (scaled-linear 0.00085 -> 0.012)
RANGES = {"edm": (0.002, 80.0), "ddpm": (0.0100, 157.4), "sd": (0.0292, 14.61)}
FROM_NOISE_STEPS = [5, 8, 10, 15, 20, 30]
TABLES = Path(__file__).resolve().parents[1] / "jaxdiff" / "schedules" / "_tables.py"

# (dim, components, seed, scale, min_std, max_std)
TRAIN = [
    (2, 4, 101, 1.5, 0.05, 0.2),
    (2, 8, 102, 2.0, 0.1, 0.6),
    (2, 8, 103, 3.0, 0.05, 0.15),
    (2, 16, 104, 2.0, 0.08, 0.3),
    (2, 25, 105, 4.0, 0.1, 0.3),
    (2, 6, 106, 1.0, 0.2, 0.8),
    (16, 12, 111, 2.0, 0.1, 0.6),
    (16, 4, 112, 3.0, 0.05, 0.2),
    (16, 8, 113, 1.5, 0.1, 0.4),
    (16, 24, 114, 2.5, 0.1, 0.6),
    (16, 16, 115, 4.0, 0.2, 0.5),
    (16, 6, 116, 1.0, 0.05, 0.3),
]


def train_mixtures():
    return [
        jd.analytic.random_mixture(
            dim=d, num_components=k, seed=s, scale=sc, min_std=lo, max_std=hi
        )
        for d, k, s, sc, lo, hi in TRAIN
    ]


def held_out():
    rm = jd.analytic.random_mixture
    return {
        "ring (2-D)": jd.analytic.ring(),
        "grid (2-D)": jd.analytic.grid(),
        "random 2-D s0": rm(dim=2, num_components=8, seed=0),
        "random 2-D s7, narrow": rm(dim=2, num_components=10, seed=7, min_std=0.05, max_std=0.15),
        "random 8-D": rm(dim=8, num_components=10, seed=3),
        "random 16-D s0": rm(dim=16, num_components=12, seed=0),
        "random 32-D": rm(dim=32, num_components=16, seed=5),
        "ill_conditioned": jd.analytic.ill_conditioned(),
    }


def relative(sigmas):
    """Relative log-sigma positions of the positive levels, 1 -> 0."""
    s = np.log(np.asarray(sigmas[:-1], np.float64))
    return (s - s[-1]) / (s[0] - s[-1])


def rms(a, b):
    return float(jnp.sqrt(jnp.mean(jnp.sum((a - b) ** 2, axis=-1))))


def relative_finite(sigmas):
    """`(sigma_1, relative log-sigma positions of the finite levels, 1 -> 0)` of a grid that
    starts at inf."""
    s = np.log(np.asarray(sigmas[1:-1], np.float64))
    return float(np.exp(s[0])), (s - s[-1]) / (s[0] - s[-1])


def flow_table(entries):
    """The `_TUNED_FLOW` block of `_tables.py` for `{n: (sigma_1, relative positions)}`."""
    lines = ["_TUNED_FLOW: dict[int, tuple[float, tuple[float, ...]]] = {"]
    for n, (first, rel) in sorted(entries.items()):
        head = f"    {n}: ({first:.4g}, ("
        values = [f"{v:.4f}" for v in rel]
        line = head
        for i, v in enumerate(values):
            item = v + ("," if i < len(values) - 1 else ")),")
            if len(line) + len(item) + 1 > 100 and line.strip():
                lines.append(line.rstrip())
                line = " " * len(head)
            line += item + " "
        lines.append(line.rstrip())
    lines.append("}  # fmt: skip")
    return "\n".join(lines)


def write_table(entries):
    """Writes `entries` into `_TUNED_FLOW` in `jaxdiff/schedules/_tables.py`: the step counts
    tuned in this run replace theirs, the others stay (so runs on parts of the step counts
    build the table together)."""
    from jaxdiff.schedules._tables import _TUNED_FLOW

    entries = {**{n: (f, np.asarray(r)) for n, (f, r) in _TUNED_FLOW.items()}, **entries}
    text = TABLES.read_text()
    pattern = re.compile(r"^_TUNED_FLOW: [^\n]*? = \{(\}|\n.*?^\}(  # fmt: skip)?)$", re.S | re.M)
    if not pattern.search(text):
        raise SystemExit(f"no _TUNED_FLOW table found in {TABLES}")
    TABLES.write_text(pattern.sub(lambda m: flow_table(entries), text, count=1))
    print(f"wrote _TUNED_FLOW ({', '.join(map(str, sorted(entries)))} steps) into {TABLES}")


def evaluate_flows(problems, grids, solver, samples, seed):
    """RMS to the exact rectified-flow endpoint from the same unit noise: `solver` on every
    grid of `grids`, and diffusers' Euler on its own grid (shift 1 and 3)."""
    import jaxdiff.bench as jb

    rf = jd.RectifiedFlow()
    out = {}
    for name, gm in problems.items():
        velocity = gm.process_velocity(rf)
        den = jd.parametrizations.from_velocity(velocity, rf)
        x = jr.normal(jr.key(seed), (samples, gm.means.shape[-1]), jnp.float64)
        ref, _ = jb.flow_reference(velocity, x)
        row = {g: rms(jd.sample(den, x, s, solver=solver), ref) for g, s in grids.items()}
        n = len(next(iter(grids.values()))) - 1
        for shift in (1.0, 3.0):
            grid = jd.schedules.diffusers_flow_match(n, shift=shift, dtype=jnp.float64)
            row[f"diffusers euler s{shift:g}"] = rms(jd.sample(den, x, grid, solver="euler"), ref)
        out[name] = row
    return out


def main_from_noise(args, solver, t_start):
    entries = {}
    with jax.enable_x64(True):
        gms = train_mixtures()
        dens = [g.denoiser for g in gms]
        shapes = [(args.samples, g.means.shape[-1]) for g in gms]
        for n in args.steps:
            t0 = time.perf_counter()
            res = jd.schedules.optimize(
                dens,
                shapes,
                n,
                solver=solver,
                sigma_max=float("inf"),
                init=getattr(jd.schedules, args.init),
                sigma_first=args.sigma_first,
                iterations=args.iterations,
                learning_rate=args.learning_rate,
                key=jr.key(n),
                objective="log_rms",
            )
            entries[n] = relative_finite(res.sigmas)
            first, rel = entries[n]
            print(
                f"n={n}: train-set geometric-mean RMS on held-out noise {res.initial_loss:.4g} "
                f"([inf] + {args.init}) -> {res.final_loss:.4g}  "
                f"[{time.perf_counter() - t0:.0f} s]\n"
                f"    {n}: ({first:.4g}, ({', '.join(f'{v:.4f}' for v in rel)})),",
                flush=True,
            )
        print("\n" + flow_table(entries) + "\n")
        if args.write_table:
            write_table(entries)
        if not args.no_eval:
            for n, (first, rel) in entries.items():
                log_lo, log_hi = np.log(SIGMA_MIN), np.log(first)
                finite = np.exp(log_lo + rel * (log_hi - log_lo))
                grids = {
                    "tuned": jnp.asarray(np.concatenate([[np.inf], finite, [0.0]])),
                    "karras": jnp.concatenate(
                        [
                            jnp.array([jnp.inf]),
                            jd.schedules.karras(n - 1, SIGMA_MIN, 20.0, dtype=jnp.float64),
                        ]
                    ),
                    "flow": jd.schedules.flow(n, dtype=jnp.float64),
                }
                res = evaluate_flows(held_out(), grids, solver, 256, seed=1000 + n)
                print(
                    f"held-out flows, {args.sampler}, n={n} (NFE {n}): RMS error to the exact "
                    "endpoint (tuned / [inf]+karras / flow; diffusers' Euler shift 1 / 3)"
                )
                for name, e in res.items():
                    print(
                        f"  {name:24s} {e['tuned']:.4g} / {e['karras']:.4g} / {e['flow']:.4g};"
                        f"  {e['diffusers euler s1']:.4g} / {e['diffusers euler s3']:.4g}"
                    )
    print(f"total {time.perf_counter() - t_start:.0f} s")


def evaluate(problems, grids, solver, samples, seed):
    out = {}
    for name, gm in problems.items():
        x = SIGMA_MAX * jr.normal(jr.key(seed), (samples, gm.means.shape[-1]), jnp.float64)
        ref = jd.sample(
            gm.denoiser,
            x,
            jd.schedules.karras(1000, SIGMA_MIN, SIGMA_MAX, dtype=jnp.float64),
            solver=jd.samplers.Heun(),
        )
        out[name] = {
            g: rms(jd.sample(gm.denoiser, x, s, solver=solver), ref) for g, s in grids.items()
        }
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sampler", default="IPNDM")
    p.add_argument("--steps", type=int, nargs="+", default=None)
    p.add_argument("--iterations", type=int, default=None, help="200 (--from-noise: 300)")
    p.add_argument("--learning-rate", type=float, default=None, help="0.05 (--from-noise: 0.02)")
    p.add_argument("--samples", type=int, default=128, help="training samples per mixture")
    p.add_argument("--init", default="karras", help="a schedule name, e.g. tuned to refine")
    p.add_argument(
        "--ranges",
        nargs="+",
        default=list(RANGES),
        choices=[*RANGES, "none"],
        help="the ranges tuned on at once (none: 80 -> 0.002 alone, the pre-0.4 grids)",
    )
    p.add_argument("--no-eval", action="store_true")
    p.add_argument(
        "--from-noise",
        action="store_true",
        help=f"tune grids from sigma = inf (tuned_flow; default steps {FROM_NOISE_STEPS})",
    )
    p.add_argument(
        "--sigma-first", type=float, default=20.0, help="--from-noise: initial first level"
    )
    p.add_argument(
        "--write-table",
        action="store_true",
        help="--from-noise: write the table into jaxdiff/schedules/_tables.py",
    )
    args = p.parse_args(argv)
    solver = getattr(jd.samplers, args.sampler)()
    t_start = time.perf_counter()
    if args.from_noise:
        # Adam at 0.05 is unstable on the longer grids from inf (the first level runs away)
        args.steps = args.steps or FROM_NOISE_STEPS
        args.iterations = args.iterations or 300
        args.learning_rate = args.learning_rate or 0.02
        return main_from_noise(args, solver, t_start)
    args.steps = args.steps or [5, 10, 15, 20, 30]
    args.iterations = args.iterations or 200
    args.learning_rate = args.learning_rate or 0.05
    knots = {}
    with jax.enable_x64(True):
        gms = train_mixtures()
        dens = [g.denoiser for g in gms]
        shapes = [(args.samples, g.means.shape[-1]) for g in gms]
        for n in args.steps:
            t0 = time.perf_counter()
            res = jd.schedules.optimize(
                dens,
                shapes,
                n,
                solver=solver,
                init=getattr(jd.schedules, args.init),
                iterations=args.iterations,
                learning_rate=args.learning_rate,
                key=jr.key(n),
                objective="log_rms",
                ranges=None if "none" in args.ranges else [RANGES[r] for r in args.ranges],
            )
            knots[n] = relative(res.sigmas)
            print(
                f"n={n}: train-set geometric-mean RMS on held-out noise {res.initial_loss:.4g} "
                f"({args.init}) -> {res.final_loss:.4g}  [{time.perf_counter() - t0:.0f} s]\n"
                f"    {n}: ({', '.join(f'{v:.4f}' for v in knots[n])}),",
                flush=True,
            )
        print("\n_TUNED_KNOTS = {  # relative log-sigma positions, 1 -> 0")
        for n, r in knots.items():
            print(f"    {n}: ({', '.join(f'{v:.4f}' for v in r)}),")
        print("}\n")
        if not args.no_eval:
            for n, r in knots.items():
                log_lo, log_hi = np.log(SIGMA_MIN), np.log(SIGMA_MAX)
                tuned = np.append(np.exp(log_lo + r * (log_hi - log_lo)), 0.0)
                grids = {
                    "tuned": jnp.asarray(tuned),
                    "karras": jd.schedules.karras(n, SIGMA_MIN, SIGMA_MAX, dtype=jnp.float64),
                    "kl_optimal": jd.schedules.kl_optimal(
                        n, SIGMA_MIN, SIGMA_MAX, dtype=jnp.float64
                    ),
                }
                res = evaluate(held_out(), grids, solver, 256, seed=1000 + n)
                print(f"held-out, {args.sampler}, n={n}: RMS error (tuned / karras / kl_optimal)")
                for name, e in res.items():
                    print(
                        f"  {name:24s} {e['tuned']:.4g} / {e['karras']:.4g} / {e['kl_optimal']:.4g}"
                    )
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
