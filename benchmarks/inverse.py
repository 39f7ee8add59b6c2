"""Posterior samplers and guidance measured against exact answers (issue 14).

Inverse problems: every posterior sampler of `jd.inverse` (DPS, PiGDM, TMPD, RePaint, and
the sequential Monte Carlo sampler MCGdiff, "smc") on a Gaussian-mixture prior with its exact
denoiser, for a linear observation `y = A x + noise_std n` of a sample `x` of the prior,
against the exact posterior `mixture.posterior(A, y, noise_std)` of `jd.analytic`. Problems:
a 2-D ring of six anisotropic components (full covariances) and a 16-D random mixture
(`jd.analytic.random_mixture(dim=16)`); observations: a random dense `A` (1 row in 2-D, 4 in
16-D) and a mask (the first coordinate in 2-D, 8 random coordinates in 16-D), at noise_std
0.05 and 0.5; the Karras grid 80 -> 0.002 with 20, 50 and 200 steps; each method at its
defaults on its default sampler. 1024 samples per method and case. Distance: the sliced
2-Wasserstein distance (`jd.metrics.sliced_wasserstein`'s estimator, the same 128 directions
for every method) between the method's samples and 8192 exact posterior samples, divided by
the floor: the mean distance of eight independent sets of 1024 exact samples to the same
reference (what a perfect sampler scores; a ratio near 1 is exact, up to the estimate's noise:
the table gives the spread of one exact set's distance). SMC's particles: 64 in the main
table; 16 / 64 / 256 at 200 steps in the second (2-D, noise 0.05).

Guidance: the same 2-D ring with its components labelled in three classes (class 0: the two
opposite modes at 0 and 180 degrees). Distance (same estimator, over the floor) of the samples
of a guided denoiser (Heun, 32 steps) to the exact class-conditional distribution, against the
guidance weight: classifier-free guidance (exact conditional and unconditional denoisers)
everywhere and in three noise intervals, and autoguidance of an imperfect conditional model
(its covariances 1.5x too wide) by a worse one (2.5x), everywhere and in the middle interval.

    python benchmarks/inverse.py                  # everything (~25 min wall on 2 busy CPU cores)
    python benchmarks/inverse.py --quick          # smoke run: fewer samples, steps, methods
    python benchmarks/inverse.py --part guidance  # or --part inverse
    python benchmarks/inverse.py --out FILE.md    # also write the tables
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import jaxdiff as jd
import jaxdiff.guidance
import jaxdiff.inverse
import jaxdiff.metrics
from jaxdiff.analytic import FullGaussianMixture

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
STEPS = (20, 50, 200)
NOISES = (0.05, 0.5)
PROJECTIONS = 128
FLOOR_SETS = 8
REFERENCE = 8  # reference samples, in multiples of the samples of a method
METHODS = {  # label -> (method, options)
    "DPS": ("dps", {}),
    "PiGDM": ("pigdm", {}),
    "TMPD": ("tmpd", {}),
    "RePaint": ("repaint", {}),
    "SMC (64 particles)": ("smc", {"num_particles": 64}),
}
SWEEP_PARTICLES = (16, 64, 256)
SWEEP_NOISE = 0.05  # the particle sweep: 2-D, 200 steps, this noise level
GUIDANCE_WEIGHTS = (1.0, 1.5, 2.0, 3.0, 5.0)
GUIDANCE_INTERVALS = {
    "every sigma": None,
    "interval (0.3, 3)": (0.3, 3.0),
    "interval (3, inf)": (3.0, np.inf),
    "interval (0, 0.3)": (0.0, 0.3),
}


def ring_2d() -> FullGaussianMixture:
    """Six components on a circle of radius 2, elongated along it (std 0.35 tangential, 0.12
    radial), labelled 0, 1, 2, 0, 1, 2 (a class: two opposite modes)."""
    angles = 2 * np.pi * np.arange(6) / 6
    radial = np.stack([np.cos(angles), np.sin(angles)], -1)
    tangent = np.stack([-np.sin(angles), np.cos(angles)], -1)
    outer = lambda u: u[:, :, None] * u[:, None, :]
    covariances = 0.35**2 * outer(tangent) + 0.12**2 * outer(radial)
    return FullGaussianMixture(2.0 * radial, covariances, labels=np.arange(6) % 3)


def problems(quick: bool):
    """name -> (mixture, samples, rows of the dense A, observed coordinates of the mask)."""
    return {
        "2-D ring": (ring_2d(), 512 if quick else 1024, 1, 1),
        "16-D random": (jd.analytic.random_mixture(dim=16, seed=0), 512 if quick else 1024, 4, 8),
    }


def observation(gm, kind: str, rows: int, observed: int, noise_std: float, seed: int):
    """A `LinearObservation` of one prior sample (dense A or mask), and its dense (A, y)."""
    rng = np.random.default_rng(seed)
    d = gm.dim
    x_true = np.asarray(gm.sample(jr.key(seed), 1), np.float64)[0]
    if kind == "dense":
        A = rng.standard_normal((rows, d)) / np.sqrt(d)
        y = A @ x_true + noise_std * rng.standard_normal(rows)
        obs = jd.inverse.LinearObservation(A.astype(np.float32), y.astype(np.float32), noise_std)
    else:
        mask = np.zeros(d, np.float32)
        mask[np.sort(rng.permutation(d)[:observed])] = 1.0
        y = mask * (x_true + noise_std * rng.standard_normal(d))
        obs = jd.inverse.LinearObservation(jd.inverse.Mask(mask), y.astype(np.float32), noise_std)
    A_dense, y_dense = obs.dense((d,))
    return obs, A_dense, y_dense


class Distance:
    """Sliced W2 (`PROJECTIONS` fixed directions) to a reference of `REFERENCE` x n exact
    samples, matched at the n mid-point quantiles, and the floor: the mean distance of
    `FLOOR_SETS` independent exact sets of n samples. In numpy (XLA's CPU sort is slower);
    the estimator is `jd.metrics.sliced_wasserstein`'s, checked against it on equal sizes."""

    def __init__(self, exact, key, n: int, dim: int):
        keys = jr.split(key, FLOOR_SETS + 2)
        theta = np.asarray(jr.normal(keys[0], (dim, PROJECTIONS), jnp.float32), np.float64)
        self.theta = theta / np.linalg.norm(theta, axis=0, keepdims=True)
        reference = np.sort(np.asarray(exact(keys[1], REFERENCE * n), np.float64) @ self.theta, 0)
        q = (np.arange(n) + 0.5) / n * reference.shape[0] - 0.5
        lo = np.floor(q).astype(int)
        frac = (q - lo)[:, None]
        self.quantiles = (1 - frac) * reference[lo] + frac * reference[lo + 1]
        others = [np.asarray(exact(k, n), np.float64) for k in keys[2:]]
        library = jd.metrics.sliced_wasserstein(
            others[0], others[1], key=keys[0], num_projections=PROJECTIONS
        )
        mine = _sliced(np.sort(others[0] @ self.theta, 0), np.sort(others[1] @ self.theta, 0))
        assert abs(float(library) - mine) < 1e-4 * mine, (float(library), mine)
        floors = np.array([self.raw(x) for x in others])
        self.floor = float(floors.mean())
        self.spread = float(floors.std(ddof=1) / floors.mean())  # of one exact set's ratio

    def raw(self, x) -> float:
        return _sliced(np.sort(np.asarray(x, np.float64) @ self.theta, axis=0), self.quantiles)

    def ratio(self, x) -> float:
        return self.raw(x) / self.floor


def _sliced(px, py) -> float:
    return float(np.sqrt(np.mean((px - py) ** 2)))


def grid(steps: int):
    return jd.schedules.karras(steps, SIGMA_MIN, SIGMA_MAX)


def posterior_sample(gm, obs, x, steps: int, method: str, options: dict, key):
    sigmas = grid(steps)
    out = jd.inverse.sample(gm.denoiser, obs, x, sigmas, method=method, key=key, **options)
    nfe = jd.inverse.num_evaluations(method, sigmas, **options)
    return np.asarray(out), nfe


def run_inverse(args, log):
    rows, sweep = [], []
    steps_list = (20, 50) if args.quick else STEPS
    for pname, (gm, n, rows_a, observed) in problems(args.quick).items():
        x = SIGMA_MAX * jr.normal(jr.key(args.seed + 1), (n, gm.dim))
        for kind in ("dense", "mask"):
            for noise_std in NOISES:
                obs, A, y = observation(gm, kind, rows_a, observed, noise_std, args.seed + 7)
                post = gm.posterior(A, y, noise_std)
                dist = Distance(post.sample, jr.key(args.seed + 2), n, gm.dim)
                case = {"problem": pname, "observation": kind, "noise": noise_std}
                for label, (method, options) in METHODS.items():
                    if method == "repaint" and kind != "mask":
                        continue
                    if args.quick and method == "smc":
                        options = {"num_particles": 16}
                        label = "SMC (16 particles)"
                    ratios, nfes = {}, {}
                    for steps in steps_list:
                        t0 = time.perf_counter()
                        out, nfe = posterior_sample(
                            gm, obs, x, steps, method, options, jr.key(args.seed + 3)
                        )
                        ratios[steps], nfes[steps] = dist.ratio(out), nfe
                        log(f"{pname} {kind} {noise_std} {label} {steps}: {ratios[steps]:.2f} "
                            f"({time.perf_counter() - t0:.1f} s)")  # fmt: skip
                    rows.append(case | {"method": label, "ratios": ratios, "nfe": nfes,
                                        "floor": dist.floor, "spread": dist.spread})  # fmt: skip
                if gm.dim == 2 and noise_std == SWEEP_NOISE and not args.quick:
                    steps = STEPS[-1]
                    for particles in SWEEP_PARTICLES:
                        options = {"num_particles": particles}
                        if particles == METHODS["SMC (64 particles)"][1]["num_particles"]:
                            ratio, nfe = rows[-1]["ratios"][steps], rows[-1]["nfe"][steps]
                        else:
                            out, nfe = posterior_sample(
                                gm, obs, x, steps, "smc", options, jr.key(args.seed + 3)
                            )
                            ratio = dist.ratio(out)
                        sweep.append(case | {"particles": particles, "ratio": ratio, "nfe": nfe})
                        log(f"{pname} {kind} {noise_std} SMC {particles}: {ratio:.2f}")
    return rows, sweep


def run_guidance(args, log):
    gm = ring_2d()
    label = 0
    conditional = gm.class_conditional(label)
    n = 4096 if args.quick else 32768
    dist = Distance(conditional.sample, jr.key(args.seed + 4), n, gm.dim)

    def inflated(mixture, factor):
        return FullGaussianMixture(mixture.means, factor * mixture.covariances, mixture.weights)

    main, weak = inflated(conditional, 1.5), inflated(conditional, 2.5)
    steps = 16 if args.quick else 32
    sigmas = grid(steps)
    x = SIGMA_MAX * jr.normal(jr.key(args.seed + 5), (n, gm.dim))
    solver = jd.samplers.Heun()

    @jax.jit
    def sample(denoiser, x):
        return jd.sample(denoiser, x, sigmas, solver=solver)

    variants = {}
    for name, interval in GUIDANCE_INTERVALS.items():
        variants[f"CFG, {name}"] = lambda w, i=interval: jd.guidance.classifier_free(
            conditional.denoiser, gm.denoiser, w, interval=i
        )
    for name, interval in list(GUIDANCE_INTERVALS.items())[:2]:
        variants[f"autoguidance, {name}"] = lambda w, i=interval: jd.guidance.autoguidance(
            main.denoiser, weak.denoiser, w, interval=i
        )
    rows = []
    unguided = dist.ratio(sample(conditional.denoiser, x))
    for name, make in variants.items():
        ratios = {}
        for w in GUIDANCE_WEIGHTS:
            ratios[w] = dist.ratio(sample(make(jnp.float32(w)), x))
            log(f"guidance {name} w={w}: {ratios[w]:.2f}")
        rows.append({"variant": name, "ratios": ratios})
    same = jd.guidance.autoguidance(main.denoiser, main.denoiser, jnp.float32(3.0))
    np.testing.assert_allclose(sample(same, x), sample(main.denoiser, x), rtol=1e-5, atol=1e-5)
    info = {"floor": dist.floor, "spread": dist.spread, "unguided": unguided}
    return rows, info | {"steps": steps, "n": n}


def inverse_table(rows, steps_list) -> str:
    head = " | ".join(f"{s} steps" for s in steps_list)
    lines = [
        f"| problem | A | noise | method | NFE/sample at {steps_list[-1]} steps | {head} "
        "| floor (sd of an exact set) |",
        "|---|---|--:|---|--:|" + "--:|" * len(steps_list) + "--:|",
    ]
    for r in rows:
        cells = " | ".join(f"{r['ratios'][s]:.2f}" for s in steps_list)
        lines.append(
            f"| {r['problem']} | {r['observation']} | {r['noise']:g} | {r['method']} | "
            f"{r['nfe'][steps_list[-1]]} | {cells} | {r['floor']:.4f} (±{r['spread']:.0%}) |"
        )
    return "\n".join(lines)


def sweep_table(sweep) -> str:
    if not sweep:
        return ""
    particles = sorted({r["particles"] for r in sweep})
    head = " | ".join(f"{p} particles" for p in particles)
    lines = [f"| problem | A | noise | {head} |", "|---|---|--:|" + "--:|" * len(particles)]
    cases = {}
    for r in sweep:
        cases.setdefault((r["problem"], r["observation"], r["noise"]), {})[r["particles"]] = r
    for (problem, kind, noise), by_p in cases.items():
        cells = " | ".join(
            f"{by_p[p]['ratio']:.2f} ({by_p[p]['nfe']} NFE)" for p in particles if p in by_p
        )
        lines.append(f"| {problem} | {kind} | {noise:g} | {cells} |")
    return "\n".join(lines)


def guidance_table(rows, info) -> str:
    head = " | ".join(f"w = {w:g}" for w in GUIDANCE_WEIGHTS)
    lines = [f"| guidance | {head} |", "|---|" + "--:|" * len(GUIDANCE_WEIGHTS)]
    for r in rows:
        cells = " | ".join(f"{r['ratios'][w]:.2f}" for w in GUIDANCE_WEIGHTS)
        lines.append(f"| {r['variant']} | {cells} |")
    lines.append(
        f"\n(distance / floor; floor {info['floor']:.4f}, sd of an exact set "
        f"±{info['spread']:.0%}; the exact conditional denoiser alone scores "
        f"{info['unguided']:.2f}; autoguidance: model 1.5x too wide, guide 2.5x; Heun "
        f"{info['steps']} steps, {info['n']} samples)"
    )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("all", "inverse", "guidance"), default="all")
    p.add_argument("--quick", action="store_true", help="smoke run (fewer samples and steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the Markdown tables to this file")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    log = (lambda s: print(s, flush=True)) if args.verbose else (lambda s: None)
    start = time.perf_counter()
    load = f", load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    parts = [
        f"device: {jax.devices()[0].platform.upper()}, {platform.machine()}, "
        f"{os.cpu_count()} cores{load}; jax {jax.__version__}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    ]
    if args.part in ("all", "inverse"):
        rows, sweep = run_inverse(args, log)
        steps_list = (20, 50) if args.quick else STEPS
        parts.append("Posterior samplers: sliced W2 to the exact posterior / floor\n")
        parts.append(inverse_table(rows, steps_list))
        if sweep:
            parts.append(f"\nSMC at {STEPS[-1]} steps, 2-D: distance / floor by particles\n")
            parts.append(sweep_table(sweep))
    if args.part in ("all", "guidance"):
        rows, info = run_guidance(args, log)
        parts.append("\nGuidance: sliced W2 to the exact class-conditional / floor\n")
        parts.append(guidance_table(rows, info))
    text = "\n".join(parts)
    print(text)
    print(f"\n({time.perf_counter() - start:.0f} s wall, {time.process_time():.0f} s CPU)")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
