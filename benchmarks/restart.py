"""Restart sampling against Heun and EDM's stochastic sampler at equal NFE.

Overlapping Gaussian mixtures with their exact denoisers (float64), the Karras grid
80 -> 0.002 (rho 7). Every sampler spends 59 denoiser evaluations: Heun and EDM's stochastic
sampler (its defaults, churn 40, and churn 10) on 30 steps; Restart (Heun base) on
`n_main = (60 - extra) / 2` main steps, where `extra = sum 2 k n_restart` is what its
restart passes cost. For each seed: the initial noise and the exact reference samples are
shared by all samplers; the distance is the sliced 2-Wasserstein distance
(`jd.metrics.sliced_wasserstein`, the same directions for all samplers) to exact samples, and
the gap of the mean exact log-density of the samples to that of the exact samples. The
table gives mean +- std over seeds, the ratio of the mean distance to Heun's, and on how many
seeds a sampler beats Heun. `floor` is the distance between two independent sets of exact
samples (what a perfect sampler scores).

    python benchmarks/restart.py                 # the default set (2-3 min on 2 CPU cores)
    python benchmarks/restart.py --sweep         # the sweep the default was chosen from
    python benchmarks/restart.py --out restart.md
"""

from __future__ import annotations

import argparse
import itertools
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import jaxdiff as jd
from jaxdiff.samplers._restart import DEFAULT_INTERVALS, Restart

TARGET_NFE = 59  # Heun on 30 steps
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def problems():
    """Overlapping mixtures: name -> (GaussianMixture (float64), samples per seed). In 2-D
    the exact-vs-exact floor of the sliced distance hides Heun's error at 16384 samples."""
    f64 = jnp.float64
    return {
        "ring 2-D": (jd.analytic.ring(8, radius=1.0, std=0.25, dtype=f64), 65536),
        "random 16-D": (
            jd.analytic.random_mixture(
                dim=16, num_components=12, seed=0, scale=1.0, min_std=0.05, max_std=0.6, dtype=f64
            ),
            16384,
        ),
    }


def baselines():
    """name -> (sampler, steps)."""
    return {
        "Heun": (jd.samplers.Heun(), 30),
        "EDM stochastic (churn 40)": (jd.samplers.EDMStochastic(), 30),
        "EDM stochastic (churn 10)": (jd.samplers.EDMStochastic(s_churn=10.0), 30),
    }


def restart_settings(sweep: bool):
    """Tuples of intervals: the default, the paper's CIFAR-10 settings, a few neighbours;
    with `sweep`, a grid over n_restart, k and (sigma_min, sigma_max)."""
    settings = [
        DEFAULT_INTERVALS,
        ((3, 2, 0.14, 0.30),),  # the paper's CIFAR-10 (EDM) setting, n_restart as steps
        ((2, 2, 0.06, 0.30),),  # the official params_cifar10_vp.txt [3, 2, 0.06, 0.30]
        ((10, 1, 0.1, 2.0),),  # the default's neighbours
        ((8, 1, 0.1, 2.0),),
        ((10, 1, 0.1, 1.0),),
        ((8, 2, 0.1, 1.0),),
    ]
    if sweep:
        ranges = [(0.06, 0.3), (0.06, 1.0), (0.1, 1.0), (0.06, 2.0), (0.1, 2.0), (0.2, 2.0)]
        for (lo, hi), n_restart, k in itertools.product(ranges, (4, 6, 8, 10, 12), (1, 2)):
            if 2 * k * n_restart <= 36:
                settings.append(((n_restart, k, lo, hi),))
    unique = []
    for s in settings:
        if s not in unique:
            unique.append(s)
    return unique


def restart_steps(solver: Restart) -> int:
    """Main-grid steps that bring `solver` to TARGET_NFE (or just below)."""
    extra = solver.nfe(30) - jd.samplers.Heun().nfe(30)
    return (TARGET_NFE + 1 - extra) // 2


NOTES = {
    DEFAULT_INTERVALS: " (default)",
    ((3, 2, 0.14, 0.30),): " (paper, CIFAR-10 EDM)",
    ((2, 2, 0.06, 0.30),): " (official, CIFAR-10 VP)",
}


def label(intervals) -> str:
    text = ", ".join(f"({n}, {k}, {lo:g}, {hi:g})" for n, k, lo, hi in intervals)
    return f"Restart {text}{NOTES.get(intervals, '')}"


def directions(key, dim: int, num: int) -> np.ndarray:
    """The unit directions `jd.metrics.sliced_wasserstein` draws from `key`."""
    theta = np.asarray(jr.normal(key, (dim, num), jnp.float64))
    return theta / np.linalg.norm(theta, axis=0, keepdims=True)


def sliced_w2(x, y_sorted, theta) -> float:
    """`jd.metrics.sliced_wasserstein` for equal sample sizes, in numpy (XLA's CPU sort is
    about 10x slower than numpy's here); `y_sorted`: the sorted projections of the
    reference."""
    px = np.sort(np.asarray(x) @ theta, axis=0)
    return float(np.sqrt(np.mean((px - y_sorted) ** 2)))


def run(args):
    rows = []
    seeds = args.seeds
    with jax.enable_x64(True):
        for pname, (gm, n) in problems().items():
            n = args.samples or n
            d = gm.dim
            # per seed: exact reference samples, an independent exact set for the floor,
            # the projection directions; the initial noise of all seeds in one batch
            keys = [jr.split(jr.key(1000 + args.seed + s), 3) for s in range(seeds)]
            refs = [np.asarray(gm.sample(k[0], n)) for k in keys]
            exact = [np.asarray(gm.sample(k[1], n)) for k in keys]
            thetas = [directions(k[2], d, args.projections) for k in keys]
            ref_sorted = [np.sort(r @ t, axis=0) for r, t in zip(refs, thetas, strict=True)]
            library = jd.metrics.sliced_wasserstein(
                exact[0], refs[0], key=keys[0][2], num_projections=args.projections
            )
            assert abs(float(library) - sliced_w2(exact[0], ref_sorted[0], thetas[0])) < 1e-9
            x0 = SIGMA_MAX * jr.normal(jr.key(1 + args.seed), (seeds * n, d), jnp.float64)
            # E_p[log p]: the same estimate for every sampler (its error cancels in the ratios)
            expected = float(jnp.mean(gm.log_prob(gm.sample(jr.key(2), 200_000))))

            def score(x, s, ref_sorted=ref_sorted, thetas=thetas, expected=expected, gm=gm):
                w = sliced_w2(x, ref_sorted[s], thetas[s])
                return w, float(jnp.mean(gm.log_prob(jnp.asarray(x)))) - expected

            floor = np.mean([score(exact[s], s)[0] for s in range(seeds)])
            candidates = dict(baselines())
            for intervals in restart_settings(args.sweep):
                solver = Restart(intervals=intervals)
                candidates[label(intervals)] = (solver, restart_steps(solver))
            heun = None
            for name, (solver, steps) in candidates.items():
                t0 = time.perf_counter()
                grid = jd.schedules.karras(steps, SIGMA_MIN, SIGMA_MAX, dtype=jnp.float64)
                key = jr.key(3 + args.seed) if solver.stochastic else None
                out = np.asarray(jd.sample(gm.denoiser, x0, grid, solver=solver, key=key))
                dist, gap = np.array([score(out[s * n : (s + 1) * n], s) for s in range(seeds)]).T
                if heun is None:
                    heun = dist
                rows.append(
                    {
                        "problem": pname,
                        "sampler": name,
                        "steps": steps,
                        "nfe": jd.samplers.num_evaluations(solver, grid),
                        "sw": dist,
                        "gap": gap,
                        "ratio": dist.mean() / heun.mean(),
                        "wins": int(np.sum(dist < heun)),
                        "floor": float(floor),
                    }
                )
                if args.verbose:
                    print(f"{pname} | {name}: {dist.mean():.5f} {gap.mean():+.4f} "
                          f"({time.perf_counter() - t0:.1f}s)", flush=True)  # fmt: skip
    return rows


def table(rows, seeds) -> str:
    lines = [
        "| problem | sampler | steps | NFE | sliced W2 (mean ± std) | / Heun | beats Heun "
        f"(of {seeds}) | mean log p gap | floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['problem']} | {r['sampler']} | {r['steps']} | {r['nfe']} | "
            f"{r['sw'].mean():.4f} ± {r['sw'].std(ddof=1):.4f} | {r['ratio']:.2f} | "
            f"{r['wins']} | {r['gap'].mean():+.4f} ± {r['gap'].std(ddof=1):.4f} | "
            f"{r['floor']:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="the first seed")
    p.add_argument("--samples", type=int, default=None, help="samples per seed")
    p.add_argument("--projections", type=int, default=128)
    p.add_argument("--sweep", action="store_true", help="the full sweep of Restart settings")
    p.add_argument("--out", default=None, help="also write the Markdown table to this file")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.seeds < 2:
        p.error("--seeds must be >= 2")
    start = time.perf_counter()
    text = table(run(args), args.seeds)
    print(text)
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
