"""PF-ODE trajectory error against NFE: jaxdiff's deterministic samplers vs k-diffusion's.

For each problem (a Gaussian mixture with its exact denoiser), draw `x = 80 * N(0, I)` once and
solve the probability-flow ODE from sigma = 80 to 0 with:

- a tight reference: `jd.sample(gm.denoiser, x, jd.schedules.karras(2000, 0.002, 80.0),
  solver=jd.samplers.Heun())`; its convergence is checked against the same solve with 4000
  steps, and that difference is reported;
- every public jaxdiff sampler with `stochastic == False` (default options) on every schedule in
  `jd.schedules.__all__` (called as `f(n, 0.002, 80.0)`), with the largest `n` such that
  `S().nfe(n) <= NFE`;
- k-diffusion's deterministic samplers (`sample_euler`, `sample_heun`, `sample_dpm_2`,
  `sample_lms`, `sample_dpmpp_2m`, and `sample_dpmpp_3m_sde` with `eta=0` as "dpmpp_3m") on
  k-diffusion's own karras / exponential / polyexponential grids, with the same NFE rule
  (euler, lms, dpmpp: n steps = n calls; heun and dpm_2: 2n - 1 calls).

The error of a solve is the RMS over samples of the Euclidean distance to the reference. All
solves run in float64 (jaxdiff under `jax.enable_x64`, k-diffusion in float64 torch), so the
numbers are truncation error, not float32 rounding.

k-diffusion is loaded through `tests/kdiffusion_peer.py`; the script puts `tests/` on
`sys.path` itself (equivalent to running with `PYTHONPATH=tests`). Without k-diffusion the
peer rows are skipped.

    python benchmarks/error_vs_nfe.py --out DIR     # results.csv, results.md, error_vs_nfe.png
    python benchmarks/error_vs_nfe.py --quick       # smoke run
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.metadata
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxdiff as jd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
TARGETS = {2: 0.5, 16: 0.7}  # target ratio (best jaxdiff / best k-diffusion) by dimension

KD_SAMPLERS = {  # name -> (k-diffusion function, extra kwargs, nfe(n))
    "euler": ("sample_euler", {}, lambda n: n),
    "heun": ("sample_heun", {}, lambda n: 2 * n - 1),
    "dpm_2": ("sample_dpm_2", {}, lambda n: 2 * n - 1),
    "lms": ("sample_lms", {}, lambda n: n),
    "dpmpp_2m": ("sample_dpmpp_2m", {}, lambda n: n),
    "dpmpp_3m": ("sample_dpmpp_3m_sde", {"eta": 0.0}, lambda n: n),
}
KD_NAMES = {  # jaxdiff class -> k-diffusion namesake (for the plot's colours)
    "Euler": "euler",
    "Heun": "heun",
    "DPM2": "dpm_2",
    "LMS": "lms",
    "DPMpp2M": "dpmpp_2m",
    "DPMpp3M": "dpmpp_3m",
}
KD_GRIDS = {
    "karras": "get_sigmas_karras",
    "exponential": "get_sigmas_exponential",
    "polyexponential": "get_sigmas_polyexponential",
}


def problems(quick):
    out = {
        "ring (2-D, 8 comp.)": (jd.analytic.ring(), 256 if quick else 1024),
        "random_mixture (16-D, 12 comp.)": (
            jd.analytic.random_mixture(dim=16, num_components=12, seed=0),
            128 if quick else 512,
        ),
        "grid (2-D, 25 comp.)": (jd.analytic.grid(), 256 if quick else 1024),
    }
    if quick:
        out.pop("grid (2-D, 25 comp.)")
    return out


def deterministic_samplers():
    out = {}
    for name in dir(jd.samplers):
        cls = getattr(jd.samplers, name)
        if (
            isinstance(cls, type)
            and issubclass(cls, jd.samplers.AbstractSampler)
            and cls is not jd.samplers.AbstractSampler
            and not name.startswith("_")
            and not cls.stochastic
        ):
            out[name] = cls
    return out


def max_steps(nfe_fn, budget):
    """The largest n with nfe_fn(n) <= budget (0 if none)."""
    n = 0
    while nfe_fn(n + 1) <= budget:
        n += 1
    return n


def rms_error(out, ref):
    out = np.asarray(out, np.float64)
    if not np.all(np.isfinite(out)):
        return float("inf")
    return float(np.sqrt(np.mean(np.sum((out - ref) ** 2, axis=-1))))


def fmt(e):
    return "inf" if not np.isfinite(e) else f"{e:.3g}"


def run(args):
    rows = []
    notes = []
    samplers = deterministic_samplers()
    schedules = list(jd.schedules.__all__)
    try:
        import torch
        from kdiffusion_peer import load, torch_denoiser

        kd = load()
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    except ImportError as e:
        kd = None
        notes.append(f"k-diffusion rows skipped: {e}")
    compile_s = 0.0
    for pname, (gm, nsamp) in problems(args.quick).items():
        dim = int(gm.means.shape[-1])
        x = SIGMA_MAX * np.random.default_rng(args.seed).standard_normal((nsamp, dim))
        xj = jnp.asarray(x, jnp.float64)
        t0 = time.perf_counter()
        ref_n = 500 if args.quick else 2000
        ref = np.asarray(
            jd.sample(
                gm.denoiser,
                xj,
                jd.schedules.karras(ref_n, SIGMA_MIN, SIGMA_MAX, dtype=jnp.float64),
                solver=jd.samplers.Heun(),
            )
        )
        ref2 = np.asarray(
            jd.sample(
                gm.denoiser,
                xj,
                jd.schedules.karras(2 * ref_n, SIGMA_MIN, SIGMA_MAX, dtype=jnp.float64),
                solver=jd.samplers.Heun(),
            )
        )
        ref_diff = rms_error(ref, ref2)
        notes.append(
            f"{pname}: {nsamp} samples; reference Heun/karras {ref_n} steps vs {2 * ref_n} steps: "
            f"RMS difference {ref_diff:.2e} (reference solves {time.perf_counter() - t0:.1f} s)"
        )
        print(notes[-1], flush=True)
        for budget in args.nfe:
            for sname, cls in samplers.items():
                solver = cls()
                n = max_steps(solver.nfe, budget)
                if n < 1:
                    continue
                for i, sched in enumerate(schedules):
                    schedule = getattr(jd.schedules, sched)
                    sigmas = schedule(n, SIGMA_MIN, SIGMA_MAX, dtype=jnp.float64)
                    t0 = time.perf_counter()
                    out = jax.block_until_ready(jd.sample(gm.denoiser, xj, sigmas, solver=solver))
                    if i == 0:
                        compile_s += time.perf_counter() - t0
                    rows.append(
                        dict(
                            problem=pname,
                            dim=dim,
                            samples=nsamp,
                            nfe_budget=budget,
                            library="jaxdiff",
                            sampler=sname,
                            schedule=sched,
                            steps=n,
                            nfe=solver.nfe(n),
                            sigma_first=float(sigmas[0]),
                            error=rms_error(out, ref),
                        )
                    )
            if kd is None:
                continue
            den = torch_denoiser(gm)
            xt = torch.tensor(x, dtype=torch.float64)
            for kname, (fn, kwargs, nfe_fn) in KD_SAMPLERS.items():
                n = max_steps(nfe_fn, budget)
                if n < 1:
                    continue
                for gname, gfn in KD_GRIDS.items():
                    sig = getattr(kd, gfn)(n, SIGMA_MIN, SIGMA_MAX).to(torch.float64)
                    with torch.no_grad():
                        out = getattr(kd, fn)(den, xt.clone(), sig, disable=True, **kwargs)
                    rows.append(
                        dict(
                            problem=pname,
                            dim=dim,
                            samples=nsamp,
                            nfe_budget=budget,
                            library="k-diffusion",
                            sampler=kname,
                            schedule=gname,
                            steps=n,
                            nfe=nfe_fn(n),
                            sigma_first=float(sig[0]),
                            error=rms_error(out.numpy(), ref),
                        )
                    )
            print(f"  {pname} NFE {budget} done", flush=True)
    notes.append(f"first-call (compile + run) time of jaxdiff solves, summed: {compile_s:.0f} s")
    return rows, notes


def summary_tables(rows, budgets):
    lines = []
    for pname in dict.fromkeys(r["problem"] for r in rows):
        dim = next(r["dim"] for r in rows if r["problem"] == pname)
        target = TARGETS.get(dim, TARGETS[16] if dim > 2 else TARGETS[2])
        lines += [
            f"**{pname}** (target ratio <= {target})",
            "",
            "| NFE | best jaxdiff (sampler / schedule, steps) | error "
            "| best k-diffusion (sampler / grid, steps) | error | ratio | target met |",
            "|--:|---|--:|---|--:|--:|---|",
        ]
        for b in budgets:
            sel = [r for r in rows if r["problem"] == pname and r["nfe_budget"] == b]
            jd_rows = [r for r in sel if r["library"] == "jaxdiff"]
            kd_rows = [r for r in sel if r["library"] == "k-diffusion"]
            if not jd_rows:
                continue
            bj = min(jd_rows, key=lambda r: r["error"])
            cell_j = f"{bj['sampler']} / {bj['schedule']}, {bj['steps']}"
            if kd_rows:
                bk = min(kd_rows, key=lambda r: r["error"])
                ratio = bj["error"] / bk["error"]
                cell_k = f"{bk['sampler']} / {bk['schedule']}, {bk['steps']}"
                lines.append(
                    f"| {b} | {cell_j} | {fmt(bj['error'])} | {cell_k} | {fmt(bk['error'])} "
                    f"| {ratio:.2f} | {'yes' if ratio <= target else 'no'} |"
                )
            else:
                lines.append(f"| {b} | {cell_j} | {fmt(bj['error'])} | - | - | - | - |")
        lines.append("")
    return lines


def matrix_tables(rows, budgets):
    lines = []
    for pname in dict.fromkeys(r["problem"] for r in rows):
        for b in budgets:
            sel = [r for r in rows if r["problem"] == pname and r["nfe_budget"] == b]
            if not sel:
                continue
            for lib in ("jaxdiff", "k-diffusion"):
                part = [r for r in sel if r["library"] == lib]
                if not part:
                    continue
                samp = list(dict.fromkeys(r["sampler"] for r in part))
                sch = list(dict.fromkeys(r["schedule"] for r in part))
                err = {(r["sampler"], r["schedule"]): r for r in part}
                lines += [
                    f"{pname}, NFE <= {b}, {lib} (RMS error; steps in brackets)",
                    "",
                    "| sampler | " + " | ".join(sch) + " |",
                    "|---|" + "--:|" * len(sch),
                ]
                for s in samp:
                    cells = [
                        f"{fmt(err[s, c]['error'])} ({err[s, c]['steps']})"
                        if (s, c) in err
                        else "-"
                        for c in sch
                    ]
                    lines.append(f"| {s} | " + " | ".join(cells) + " |")
                lines.append("")
    return lines


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pnames = list(dict.fromkeys(r["problem"] for r in rows))
    # one colour per algorithm: a jaxdiff sampler and its k-diffusion namesake share it
    names = list(dict.fromkeys(r["sampler"] for r in rows if r["library"] == "jaxdiff"))
    colours = {s: plt.cm.tab10(i % 10) for i, s in enumerate(names)}
    for s in list(colours):
        colours[KD_NAMES.get(s, s)] = colours[s]
    fig, axes = plt.subplots(1, len(pnames), figsize=(6 * len(pnames), 5), squeeze=False)
    for ax, pname in zip(axes[0], pnames, strict=True):
        for lib, style in (("jaxdiff", "-"), ("k-diffusion", "--")):
            part = [
                r
                for r in rows
                if r["problem"] == pname and r["library"] == lib and r["schedule"] == "karras"
            ]
            for s in dict.fromkeys(r["sampler"] for r in part):
                pts = sorted({(r["nfe"], r["error"]) for r in part if r["sampler"] == s})
                pts = [p for p in pts if np.isfinite(p[1])]
                if pts:
                    label = s if lib == "jaxdiff" else f"kd {s}"
                    ax.loglog(
                        *zip(*pts, strict=True),
                        style,
                        marker="." if lib == "jaxdiff" else "x",
                        color=colours.get(s),
                        label=label,
                    )
        ax.set_title(f"{pname}, karras grid")
        ax.set_xlabel("NFE (denoiser calls)")
        ax.set_ylabel("RMS error vs reference")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def header():
    def ver(p):
        try:
            return importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            return "missing"

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"device: {jax.devices()[0].platform.upper()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at start; jax {jax.__version__}, "
        f"jaxdiff {ver('jaxdiff')}, torch {ver('torch')}, k-diffusion {ver('k-diffusion')}, "
        f"python {platform.python_version()}; {now}"
    )


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
        with open(args.from_csv, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            for k in ("dim", "samples", "nfe_budget", "steps", "nfe"):
                r[k] = int(r[k])
            for k in ("sigma_first", "error"):
                r[k] = float(r[k])
        budgets = sorted({r["nfe_budget"] for r in rows})
        out = args.out or args.from_csv.parent
        out.mkdir(parents=True, exist_ok=True)
        lines = [*summary_tables(rows, budgets), "## Full results", ""]
        (out / "tables.md").write_text("\n".join([*lines, *matrix_tables(rows, budgets)]) + "\n")
        plot(rows, out / "error_vs_nfe.png")
        print("\n".join(summary_tables(rows, budgets)))
        print(f"wrote {out}/tables.md, error_vs_nfe.png")
        return
    if args.nfe is None:
        args.nfe = [10, 20] if args.quick else [5, 10, 15, 20, 30, 50]
    head = header()
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        rows, notes = run(args)
    notes.append(f"total wall time {time.perf_counter() - t0:.0f} s")
    md = [head, "", *[f"- {n}" for n in notes], ""]
    md += summary_tables(rows, args.nfe)
    print("\n".join(md))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        full = [*md, "## Full results", "", *matrix_tables(rows, args.nfe)]
        (args.out / "results.md").write_text("\n".join(full) + "\n")
        plot(rows, args.out / "error_vs_nfe.png")
        print(f"wrote {args.out}/results.csv, results.md, error_vs_nfe.png")


if __name__ == "__main__":
    main()
