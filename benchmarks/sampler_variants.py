"""PF-ODE trajectory error of the reference variants: DEIS `variant="rho"` against
`"logrho"`, and DPM-Solver++(3M) `solver_type="heun"` against `"midpoint"`.

For each problem (a Gaussian mixture with its exact denoiser, float64) and each sigma range
(Karras grids, rho = 7: EDM's 80 -> 0.002, and the range of a 1000-step DDPM with linear betas
1e-4 .. 0.02, about 157 -> 0.01), draw `x = sigma_max * N(0, I)` once, solve with a tight
reference (Heun on a 2000-step Karras grid of the same range; its distance to the 4000-step
solve is printed) and with each variant at NFE 5, 8, 10, 15, 20 (NFE = steps for all of
them). The error is the RMS over samples of the Euclidean distance to the reference.

    python benchmarks/sampler_variants.py            # prints a markdown table
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import jaxdiff as jd
import jaxdiff.bench as jb

NFES = (5, 8, 10, 15, 20)
VARIANTS = {
    "DEIS rho": jd.samplers.DEIS(variant="rho"),
    "DEIS logrho": jd.samplers.DEIS(variant="logrho"),
    "3M heun": jd.samplers.DPMpp3M(solver_type="heun"),
    "3M midpoint": jd.samplers.DPMpp3M(solver_type="midpoint"),
}


def ddpm_range() -> tuple[float, float]:
    """`(sigma_min, sigma_max)` of a 1000-step DDPM with linear betas 1e-4 .. 0.02."""
    alpha_bar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    sigmas = np.sqrt((1 - alpha_bar) / alpha_bar)
    return float(sigmas[0]), float(sigmas[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref-steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ranges = {"karras 80": (0.002, 80.0), "ddpm 157": ddpm_range()}
    lines = [
        "| problem | range | sampler | " + " | ".join(f"NFE {n}" for n in NFES) + " |",
        "|---|---|---|" + "---:|" * len(NFES),
    ]
    with jax.enable_x64(True):
        for name in ("ring", "mixture16"):
            prob = jb.problem(name)
            for label, (lo, hi) in ranges.items():
                rng = np.random.default_rng(args.seed)
                x = hi * rng.standard_normal((prob.num_samples, *prob.shape))

                def solve(solver, n, lo=lo, hi=hi, x=x, prob=prob):
                    grid = jd.schedules.karras(n, lo, hi)
                    return np.asarray(jd.sample(prob.denoiser, x, grid, solver=solver))

                ref = solve(jd.samplers.Heun(), args.ref_steps)
                ref2 = solve(jd.samplers.Heun(), 2 * args.ref_steps)
                print(f"{name} {label} ({lo:.4g} -> {hi:.4g}): reference vs 2x steps "
                      f"{jb.rms_error(ref, ref2):.1e}")  # fmt: skip
                for vname, solver in VARIANTS.items():
                    errs = [jb.rms_error(solve(solver, n), ref) for n in NFES]
                    lines.append(
                        f"| {name} | {label} | {vname} | "
                        + " | ".join(f"{e:.3g}" for e in errs)
                        + " |"
                    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
