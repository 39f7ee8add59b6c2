"""PF-ODE trajectory error against NFE: jaxdiff's deterministic samplers vs k-diffusion's.

A thin wrapper over `jaxdiff.bench` (the library behind ``jaxdiff bench``). For each problem
(a Gaussian mixture with its exact denoiser), draw `x = 80 * N(0, I)` once and solve the
probability-flow ODE from sigma = 80 to 0 with:

- a tight reference: `jd.sample(gm.denoiser, x, jd.schedules.karras(2000, 0.002, 80.0),
  solver=jd.samplers.Heun())`; its convergence is checked against the same solve with 4000
  steps, and that difference is reported;
- every deterministic jaxdiff sampler (k-diffusion's names, default options) on every
  schedule in `jd.schedules.SCHEDULES` (called as `f(n, 0.002, 80.0)`), with the largest `n`
  such that `S().nfe(n) <= NFE`;
- k-diffusion's deterministic samplers (`sample_euler`, `sample_heun`, `sample_dpm_2`,
  `sample_lms`, `sample_dpmpp_2m`, and `sample_dpmpp_3m_sde` with `eta=0` as "dpmpp_3m") on
  the same grids, with the same NFE rule (euler, lms, dpmpp: n steps = n calls; heun and
  dpm_2: 2n - 1 calls).

The error of a solve is the RMS over samples of the Euclidean distance to the reference. All
solves run in float64 (jaxdiff under `jax.enable_x64`, k-diffusion in float64 torch), so the
numbers are truncation error, not float32 rounding. Without k-diffusion the peer rows are
skipped. ``jaxdiff bench`` runs the same measurements with stochastic samplers, diffrax peers,
more problems, wall times and empirical orders.

    python benchmarks/error_vs_nfe.py --out DIR     # results.csv, results.md, error_vs_nfe.png
    python benchmarks/error_vs_nfe.py --quick       # smoke run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax

import jaxdiff.bench as jb
from jaxdiff import schedules
from jaxdiff.samplers import SAMPLERS

TARGETS = {2: 0.5, 16: 0.7}  # target ratio (best jaxdiff / best k-diffusion) by dimension
KD_NAMES = ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "dpmpp_3m")


def problems(quick):
    names = ["ring", "mixture16"] if quick else ["ring", "mixture16", "grid"]
    with jax.enable_x64(True):
        return [
            jb.problem(n, num_samples=(128 if n == "mixture16" else 256) * (1 if quick else 4))
            for n in names
        ]


def deterministic_samplers():
    return [name for name, cls in SAMPLERS.items() if not cls.stochastic]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2 problems, NFE 10 and 20")
    p.add_argument("--nfe", type=int, nargs="+", default=None, help="NFE budgets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write results.csv/.md/.png here")
    p.add_argument(
        "--from-csv",
        type=Path,
        default=None,
        help="redo results.md's tables and the plot from an earlier results.csv (no solves)",
    )
    args = p.parse_args(argv)
    if args.from_csv is not None:
        rows = jb.read_csv(args.from_csv)
        out = args.out or args.from_csv.parent
        out.mkdir(parents=True, exist_ok=True)
        summary = jb.summary_tables(rows, targets=TARGETS)
        full = [*summary, "## Full results", "", *jb.matrix_tables(rows)]
        (out / "tables.md").write_text("\n".join(full) + "\n")
        jb.plot(rows, out / "error_vs_nfe.png", schedule="karras")
        print("\n".join(summary))
        print(f"wrote {out}/tables.md, error_vs_nfe.png")
        return
    if args.nfe is None:
        args.nfe = [10, 20] if args.quick else [5, 10, 15, 20, 30, 50]
    head = jb.environment()
    t0 = time.perf_counter()
    samplers = deterministic_samplers()
    result = jb.run_bench(
        problems(args.quick),
        samplers,
        list(schedules.SCHEDULES),
        args.nfe,
        peers=["k-diffusion"],
        ref_steps=500 if args.quick else 2000,
        seed=args.seed,
        progress=lambda done, total, label: (
            print(f"  [{done}/{total}] {label}", flush=True)
            if label.endswith("karras") and "k-diffusion" in label
            else None
        ),
    )
    # k-diffusion's rows: its deterministic samplers only (the namesakes of KD_NAMES)
    result.rows = [r for r in result.rows if r["library"] == "jaxdiff" or r["sampler"] in KD_NAMES]
    result.orders = jb.orders(result.rows)
    result.notes.append(f"total wall time {time.perf_counter() - t0:.0f} s")
    md = [head, "", *[f"- {n}" for n in result.notes], ""]
    md += jb.summary_tables(result.rows, targets=TARGETS)
    print("\n".join(md))
    if args.out is not None:
        jb.write_results(result, args.out, header=[head], targets=TARGETS)
        print(f"wrote {args.out}/results.csv, results.md, error_vs_nfe.png")


if __name__ == "__main__":
    main()
