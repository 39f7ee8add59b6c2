"""The solver frontier: best PF-ODE error per NFE on every noise range, jaxdiff against the best
configuration of diffusers and of k-diffusion (issue 13).

For each sigma range a model may have been trained on --

- `ddpm`: the range of diffusers' DDPM-trained models (linear betas 1e-4 -> 0.02 over 1000
  steps: sigma 156.7 -> 0.0100, `alphas_cumprod` of the table),
- `edm`: EDM's range (80 -> 0.002),

-- each problem (a Gaussian mixture with its exact denoiser, float64) draws unit noise `z` once;
a solve that starts at `sigma_0` starts from `sigma_0 z` and is scored against a tight solve of
the probability-flow ODE from the same point (Heun, `--ref-steps` Karras steps down to the
range's `sigma_min`, then the denoiser there: the map every grid of the range approximates), by
the RMS over samples of the Euclidean distance. For each NFE budget the best of each library
is taken over its samplers and sigma families, each with the largest step count within the
budget:

- **jaxdiff**: its deterministic samplers (`SAMPLERS` minus the stochastic ones, with default
  options, plus `UniPC(order=3)`, `UniPC(variant="bh1")`, `DEIS(order=2)`,
  `DEIS(variant="rho")`, `IPNDM(order=3)`, `DPMpp3M(exact_third_order=True)`) on every
  schedule of `jd.schedules.SCHEDULES` over the range and, on the `ddpm` range, on diffusers'
  timestep spacings of the table (`jd.schedules.discrete`).
- **k-diffusion** (its own code, `sampling.py`): `euler`, `heun`, `dpm_2`, `lms`,
  `dpmpp_2m`, `dpmpp_3m` (`sample_dpmpp_3m_sde`, `eta=0`) on `get_sigmas_karras`,
  `get_sigmas_exponential`, and on the `ddpm` range the discrete model's own grid
  (`DiscreteSchedule.get_sigmas`: `t` uniform from 999 to 0, log sigma interpolated).
- **diffusers** (its own schedulers, run in float64 by `jaxdiff.bench.diffusers_loop`):
  `DPMSolverMultistepScheduler` (2M, 3M; midpoint and heun), `UniPCMultistepScheduler` (bh1,
  bh2; orders 2, 3), `DEISMultistepScheduler` (orders 2, 3), `DDIMScheduler`,
  `EulerDiscreteScheduler`, `HeunDiscreteScheduler`, `LMSDiscreteScheduler`, each with its
  sigma families: on the `ddpm` range its own grids (`timestep_spacing` leading, trailing,
  linspace; Karras, exponential and beta sigmas where the scheduler has them), on the `edm`
  range the EDM schedulers' grids (Karras and exponential from 80 to 0.002) given to each.

Targets (issue 13): jaxdiff's best <= 0.7x the best peer in every cell, <= 0.5x at NFE >= 10.

    python benchmarks/frontier.py --out benchmarks/results/frontier.md
    python benchmarks/frontier.py --quick        # 1 problem, NFE 5 and 10, fewer candidates
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import jaxdiff as jd
import jaxdiff.bench as jb
from jaxdiff.bench._peers import kdiffusion_nfe

NFES = (5, 8, 10, 15, 20)
KD_SAMPLERS = ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "dpmpp_3m")
TARGET, TARGET_10 = 0.7, 0.5


def ddpm_table():
    """`alphas_cumprod` of DDPM's linear betas (1e-4 -> 0.02, 1000 steps), float64."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def ranges():
    ab = ddpm_table()
    sig = np.sqrt((1 - ab) / ab)
    return {"ddpm": (float(sig[0]), float(sig[-1])), "edm": (0.002, 80.0)}


def kdiffusion_discrete_sigmas(n):
    """k-diffusion's `DiscreteSchedule.get_sigmas(n)` on the DDPM table: t uniform from 999 to
    0, log sigma interpolated linearly between integer timesteps, then 0."""
    ab = ddpm_table()
    log_sigmas = np.log(np.sqrt((1 - ab) / ab))
    t = np.linspace(len(ab) - 1, 0, n)
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, len(ab) - 1)
    w = t - lo
    return np.append(np.exp((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]), 0.0)


def jaxdiff_grids(range_name, n, sigma_min, sigma_max):
    grids = {}
    for name in jd.schedules.SCHEDULES:
        try:
            grids[name] = np.asarray(
                getattr(jd.schedules, name)(n, sigma_min, sigma_max, dtype=jnp.float64)
            )
        except ValueError:  # e.g. iddpm's levels do not reach this range with n levels
            continue
    if range_name == "ddpm":
        for spacing in jd.schedules.SPACINGS:
            grid = jd.schedules.discrete(ddpm_table(), n, spacing=spacing, dtype=jnp.float64)
            grids[f"diffusers {spacing}"] = np.asarray(grid)
    return grids


def kdiffusion_grids(range_name, n, sigma_min, sigma_max):
    grids = {
        "karras": np.asarray(jd.schedules.karras(n, sigma_min, sigma_max, dtype=jnp.float64)),
        "exponential": np.asarray(
            jd.schedules.exponential(n, sigma_min, sigma_max, dtype=jnp.float64)
        ),
    }
    if range_name == "ddpm":
        grids["discrete"] = kdiffusion_discrete_sigmas(n)
    return grids


class References:
    """Tight PF-ODE solves from `sigma_0 z` to the range's `sigma_min`, then the denoiser; one
    per starting level (grids of some families start below `sigma_max`)."""

    def __init__(self, prob, z, sigma_min, steps):
        self.prob, self.z, self.sigma_min, self.steps = prob, z, sigma_min, steps
        self.cache = {}

    def __call__(self, sigma_0):
        key = round(float(sigma_0), 12)
        if key not in self.cache:
            grid = jd.schedules.karras(
                self.steps, self.sigma_min, float(sigma_0), dtype=jnp.float64
            )
            x = jnp.asarray(float(sigma_0) * self.z)
            self.cache[key] = np.asarray(
                jd.sample(self.prob.denoiser, x, grid, solver=jd.samplers.Heun())
            )
        return self.cache[key]


def best_kdiffusion(prob, z, refs, range_name, rng, budget):
    best = (np.inf, "")
    for name in KD_SAMPLERS:
        n = jb.max_steps(lambda k, name=name: kdiffusion_nfe(name, k), budget)
        for sched, grid in kdiffusion_grids(range_name, n, *rng).items():
            out = jb.run_kdiffusion(name, prob.denoiser, grid[0] * z, grid)
            err = jb.rms_error(out, refs(grid[0]))
            best = min(best, (err, f"{name} / {sched}"))
    return best


# diffusers' schedulers and the options people pick (each with every sigma family it has)
DIFFUSERS_CONFIGS = [
    ("DPMSolverMultistepScheduler", "2M", {"solver_order": 2}),
    ("DPMSolverMultistepScheduler", "2M heun", {"solver_order": 2, "solver_type": "heun"}),
    ("DPMSolverMultistepScheduler", "3M", {"solver_order": 3}),
    ("DPMSolverMultistepScheduler", "3M heun", {"solver_order": 3, "solver_type": "heun"}),
    ("UniPCMultistepScheduler", "bh2", {"solver_order": 2}),
    ("UniPCMultistepScheduler", "bh2 order 3", {"solver_order": 3}),
    ("UniPCMultistepScheduler", "bh1", {"solver_order": 2, "solver_type": "bh1"}),
    ("DEISMultistepScheduler", "order 2", {"solver_order": 2}),
    ("DEISMultistepScheduler", "order 3", {"solver_order": 3}),
    ("DDIMScheduler", "", {"clip_sample": False}),
    ("EulerDiscreteScheduler", "", {}),
    ("HeunDiscreteScheduler", "", {}),
    ("LMSDiscreteScheduler", "", {}),
]
# diffusers' sigma families on its own table (the options its schedulers take)
DIFFUSERS_FAMILIES = {
    "leading": {"timestep_spacing": "leading"},
    "trailing": {"timestep_spacing": "trailing"},
    "linspace": {"timestep_spacing": "linspace"},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "beta": {"use_beta_sigmas": True},
}


def _diffusers_steps(cls_name, budget):
    return (budget + 1) // 2 if cls_name == "HeunDiscreteScheduler" else budget


def best_diffusers(prob, z, refs, range_name, budget):
    """diffusers' best over `DIFFUSERS_CONFIGS` x its sigma families: on the `ddpm` range its
    own grids on the DDPM table; on the `edm` range the EDM schedulers' Karras and exponential
    grids from 80 to 0.002, given to each scheduler (not DDIM, which steps over its table)."""
    import warnings

    import diffusers

    calls = [0]
    denoiser = jax.jit(lambda x, sigma: prob.denoiser(x, sigma))

    def counted(x, sigma):
        calls[0] += 1
        return denoiser(x, sigma)

    best = (np.inf, "")
    for cls_name, label, config in DIFFUSERS_CONFIGS:
        cls = getattr(diffusers, cls_name)
        n = _diffusers_steps(cls_name, budget)
        if range_name == "ddpm":
            runs = []
            for family, options in DIFFUSERS_FAMILIES.items():
                if family != "leading" and not _accepts(cls, options):
                    continue
                runs.append((family, dict(config, **options), None))
        else:
            lo, hi = ranges()["edm"]
            runs = [
                (
                    f,
                    dict(config),
                    np.asarray(getattr(jd.schedules, f)(n, lo, hi, dtype=jnp.float64)),
                )
                for f in ("karras", "exponential")
            ]
            if cls_name == "DDIMScheduler":
                runs = []
        for family, options, grid in runs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    scheduler = cls(**options)
                    if grid is None:
                        grid = jb.diffusers_scheduler_grid(scheduler, n)
                    calls[0] = 0
                    run = jb.run_diffusers_scheduler(
                        scheduler,
                        counted,
                        grid[0] * z,
                        num_steps=n,
                        sigmas=None if range_name == "ddpm" else grid,
                    )
                except (ValueError, TypeError, NotImplementedError):
                    continue
            if calls[0] > budget:
                raise AssertionError(f"{cls_name} {family}: {calls[0]} calls > NFE {budget}")
            err = jb.rms_error(run.x, refs(run.sigmas[0]))
            name = " ".join(filter(None, [cls_name.removesuffix("Scheduler"), label]))
            best = min(best, (err, f"{name} / {family}"))
    return best


def _accepts(cls, options):
    """Whether the scheduler class has every option of `options` in its config."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return all(k in params for k in options)


def jaxdiff_candidates():
    """jaxdiff's deterministic samplers with default options, and the variants people pick."""
    out = {n: c() for n, c in jd.samplers.SAMPLERS.items() if not c.stochastic}
    out["unipc order 3"] = jd.samplers.UniPC(order=3)
    out["unipc bh1"] = jd.samplers.UniPC(variant="bh1")
    out["deis order 2"] = jd.samplers.DEIS(order=2)
    out["deis rho"] = jd.samplers.DEIS(variant="rho")
    out["ipndm order 3"] = jd.samplers.IPNDM(order=3)
    out["dpmpp_3m exact"] = jd.samplers.DPMpp3M(exact_third_order=True)
    return out


def best_of_jaxdiff(prob, z, refs, range_name, rng, budget, candidates):
    best = (np.inf, "")
    for label, solver in candidates.items():
        n = jb.max_steps(solver.nfe, budget)
        if n < 1:
            continue
        for sched, grid in jaxdiff_grids(range_name, n, *rng).items():
            x = jnp.asarray(grid[0] * z)
            out = jd.sample(prob.denoiser, x, jnp.asarray(grid), solver=solver)
            best = min(best, (jb.rms_error(out, refs(grid[0])), f"{label} / {sched}"))
    return best


def cell(err_label):
    err, label = err_label
    return f"{err:.3g} ({label})" if np.isfinite(err) else "-"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="ring only, NFE 5 and 10")
    p.add_argument("--nfe", type=int, nargs="+", default=None)
    p.add_argument("--ranges", nargs="+", default=None, choices=sorted(ranges()))
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--ref-steps", type=int, default=2000)
    p.add_argument("--no-peers", action="store_true", help="jaxdiff only")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = p.parse_args(argv)
    nfes = args.nfe or ((5, 10) if args.quick else NFES)
    names = ["ring"] if args.quick else ["ring", "mixture16"]
    all_ranges = ranges()
    chosen = args.ranges or list(all_ranges)
    t0 = time.perf_counter()
    lines = [
        "| range | problem | NFE | jaxdiff best | diffusers best | k-diffusion best "
        "| ratio to best peer | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with jax.enable_x64(True):
        candidates = jaxdiff_candidates()
        for name in names:
            prob = jb.problem(name, num_samples=args.samples)
            z = np.asarray(jr.normal(jr.key(0), (args.samples, *prob.shape), jnp.float64))
            for range_name in chosen:
                rng = all_ranges[range_name]
                refs = References(prob, z, rng[0], args.ref_steps)
                for budget in nfes:
                    ours = best_of_jaxdiff(prob, z, refs, range_name, rng, budget, candidates)
                    peers = {}
                    if not args.no_peers:
                        peers["diffusers"] = best_diffusers(prob, z, refs, range_name, budget)
                        peers["k-diffusion"] = best_kdiffusion(
                            prob, z, refs, range_name, rng, budget
                        )
                    best_peer = min((v[0] for v in peers.values()), default=np.nan)
                    ratio = ours[0] / best_peer
                    target = TARGET_10 if budget >= 10 else TARGET
                    met = "-" if not peers else "yes" if ratio <= target else "**no**"
                    lines.append(
                        f"| {range_name} {rng[1]:.4g} -> {rng[0]:.4g} | {name} | {budget} "
                        f"| {cell(ours)} | {cell(peers.get('diffusers', (np.nan, '')))} "
                        f"| {cell(peers.get('k-diffusion', (np.nan, '')))} | {ratio:.2f} "
                        f"| <= {target} | {met} |"
                    )
                    print(lines[-1], flush=True)
    table = "\n".join(lines)
    head = f"{jb.environment()}; {time.perf_counter() - t0:.0f} s\n\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(head + table + "\n")
    print(head + table)


if __name__ == "__main__":
    main()
