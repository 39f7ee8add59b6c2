"""Writers of `run_bench`'s results: Markdown tables, CSV, JSON and error-vs-NFE plots."""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import json
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._run import BenchResult, orders

__all__ = [
    "environment",
    "matrix_tables",
    "order_table",
    "plot",
    "read_csv",
    "summary_tables",
    "write_results",
]

LIBRARIES = ("jaxdiff", "k-diffusion", "diffrax", "diffusers")
_INT = ("dim", "samples", "nfe_budget", "steps", "nfe")
_FLOAT = ("sigma_first", "error", "sliced_w2", "loglik", "wall_s", "compile_s")


def fmt(e: float) -> str:
    return "inf" if not np.isfinite(e) else f"{e:.3g}"


def environment() -> str:
    """One line: device, cores, load, library versions, date."""
    import jax

    def ver(p):
        try:
            return importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            return "missing"

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"device: {jax.devices()[0].platform.upper()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load:.1f}; jax {jax.__version__}, "
        f"jaxdiff {ver('jaxdiff')}, diffrax {ver('diffrax')}, torch {ver('torch')}, "
        f"k-diffusion {ver('k-diffusion')}, diffusers {ver('diffusers')}, "
        f"python {platform.python_version()}; {now}"
    )


def summary_tables(
    rows: Sequence[dict[str, Any]], *, targets: dict[int, float] | None = None
) -> list[str]:
    """Per problem and NFE budget: the best (sampler / schedule) of every library, its error,
    and jaxdiff's error over the best peer's (with a target ratio by dimension if given)."""
    lines = []
    libs = [lib for lib in LIBRARIES if any(r["library"] == lib for r in rows)]
    for pname in dict.fromkeys(r["problem"] for r in rows):
        for metric in dict.fromkeys(r["metric"] for r in rows if r["problem"] == pname):
            sel_p = [r for r in rows if r["problem"] == pname and r["metric"] == metric]
            dim = sel_p[0]["dim"]
            target = None
            if targets:
                target = targets.get(
                    dim, max(targets.values()) if dim > 2 else min(targets.values())
                )
            what = "trajectory RMS error" if metric == "trajectory_rms" else "sliced W2"
            title = f"**{pname}**, {what}"
            head = "| NFE | " + " | ".join(
                f"best {lib} (sampler / schedule, steps) | error" for lib in libs
            )
            sep = "|--:|" + "---|--:|" * len(libs)
            if len(libs) > 1:
                head += " | ratio jaxdiff / best peer |"
                sep += "--:|"
                if target is not None:
                    title += f" (target ratio <= {target})"
                    head += " target met |"
                    sep += "---|"
            else:
                head += " |"
            lines += [title, "", head, sep]
            for b in sorted({r["nfe_budget"] for r in sel_p}):
                sel = [r for r in sel_p if r["nfe_budget"] == b]
                cells, best = [], {}
                for lib in libs:
                    part = [r for r in sel if r["library"] == lib]
                    if part:
                        r = min(part, key=lambda r: r["error"])
                        best[lib] = r["error"]
                        cells += [
                            f"{r['sampler']} / {r['schedule']}, {r['steps']}",
                            fmt(r["error"]),
                        ]
                    else:
                        cells += ["-", "-"]
                line = f"| {b} | " + " | ".join(cells) + " |"
                if len(libs) > 1:
                    peer = [v for k, v in best.items() if k != "jaxdiff"]
                    if "jaxdiff" in best and peer and min(peer) > 0:
                        ratio = best["jaxdiff"] / min(peer)
                        line += f" {ratio:.2f} |"
                        if target is not None:
                            line += f" {'yes' if ratio <= target else 'no'} |"
                    else:
                        line += " - |" + (" - |" if target is not None else "")
                lines.append(line)
            lines.append("")
    return lines


def order_table(order_rows: Sequence[dict[str, Any]]) -> list[str]:
    """Empirical orders, one row per (problem, library, sampler), one column per schedule."""
    if not order_rows:
        return []
    scheds = list(dict.fromkeys(o["schedule"] for o in order_rows))
    lines = [
        "Empirical order (minus the slope of log error against log NFE; deterministic samplers)",
        "",
        "| problem | library | sampler | " + " | ".join(scheds) + " |",
        "|---|---|---|" + "--:|" * len(scheds),
    ]
    table: dict[tuple, dict] = {}
    for o in order_rows:
        table.setdefault((o["problem"], o["library"], o["sampler"]), {})[o["schedule"]] = o["order"]
    for (p, lib, s), by in table.items():
        cells = [f"{by[c]:.2f}" if c in by and math.isfinite(by[c]) else "-" for c in scheds]
        lines.append(f"| {p} | {lib} | {s} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def matrix_tables(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every solve: per problem, NFE budget and library, errors (steps) by sampler x schedule."""
    lines = []
    for pname in dict.fromkeys(r["problem"] for r in rows):
        for b in sorted({r["nfe_budget"] for r in rows if r["problem"] == pname}):
            sel = [r for r in rows if r["problem"] == pname and r["nfe_budget"] == b]
            for lib in LIBRARIES:
                part = [r for r in sel if r["library"] == lib]
                if not part:
                    continue
                samp = list(dict.fromkeys(r["sampler"] for r in part))
                sch = list(dict.fromkeys(r["schedule"] for r in part))
                err = {(r["sampler"], r["schedule"]): r for r in part}
                lines += [
                    f"{pname}, NFE <= {b}, {lib} (error; steps in brackets; "
                    "sliced W2 for stochastic samplers)",
                    "",
                    "| sampler | " + " | ".join(sch) + " | wall (ms) |",
                    "|---|" + "--:|" * (len(sch) + 1),
                ]
                for s in samp:
                    cells = [
                        f"{fmt(err[s, c]['error'])} ({err[s, c]['steps']})"
                        if (s, c) in err
                        else "-"
                        for c in sch
                    ]
                    walls = [err[s, c]["wall_s"] for c in sch if (s, c) in err]
                    wall = f"{1e3 * float(np.median(walls)):.1f}" if walls else "-"
                    lines.append(f"| {s} | " + " | ".join(cells) + f" | {wall} |")
                lines.append("")
    return lines


def plot(rows: Sequence[dict[str, Any]], path, *, schedule: str | None = None) -> None:
    """Error against NFE, log-log, one panel per problem and one line per (library,
    sampler), on `schedule` (default: the first schedule of `rows`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schedule = schedule or rows[0]["schedule"]
    pnames = list(dict.fromkeys(r["problem"] for r in rows))
    names = list(dict.fromkeys(r["sampler"] for r in rows))
    colours = {s: plt.cm.tab20(i % 20) for i, s in enumerate(names)}
    styles = {
        "jaxdiff": ("-", "."),
        "k-diffusion": ("--", "x"),
        "diffrax": (":", "s"),
        "diffusers": ("-.", "^"),
    }
    fig, axes = plt.subplots(1, len(pnames), figsize=(6 * len(pnames), 5), squeeze=False)
    for ax, pname in zip(axes[0], pnames, strict=True):
        for lib, (style, marker) in styles.items():
            part = [
                r
                for r in rows
                if r["problem"] == pname and r["library"] == lib and r["schedule"] == schedule
            ]
            for s in dict.fromkeys(r["sampler"] for r in part):
                pts = sorted({(r["nfe"], r["error"]) for r in part if r["sampler"] == s})
                pts = [p for p in pts if np.isfinite(p[1]) and p[1] > 0]
                if pts:
                    stoch = any(r["stochastic"] for r in part if r["sampler"] == s)
                    label = (s if lib == "jaxdiff" else f"{lib} {s}") + (" (SW2)" if stoch else "")
                    ax.loglog(
                        *zip(*pts, strict=True),
                        style,
                        marker=marker,
                        color=colours[s],
                        label=label,
                    )
        ax.set_title(f"{pname}, {schedule} grid")
        ax.set_xlabel("NFE (denoiser calls)")
        ax.set_ylabel("error vs reference")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_csv(path) -> list[dict[str, Any]]:
    """Rows written by `write_results` (or the older benchmark's results.csv)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in _INT:
            if k in r:
                r[k] = int(r[k])
        for k in _FLOAT:
            if k in r:
                r[k] = float(r[k])
        r["stochastic"] = r.get("stochastic", "False") == "True"
        r.setdefault("metric", "trajectory_rms")
        r.setdefault("wall_s", float("nan"))
    return rows


def write_results(
    result: BenchResult,
    out_dir,
    *,
    header: Sequence[str] = (),
    targets: dict[int, float] | None = None,
) -> list[Path]:
    """Writes `results.md` (summary, orders, every solve), `results.csv`, `results.json` and
    `error_vs_nfe.png` (plus `error_vs_nfe_<schedule>.png` for every other schedule) into
    `out_dir`; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = result.rows
    if not rows:
        raise ValueError("no results to write")
    paths = [out / "results.md", out / "results.csv", out / "results.json"]
    md = [*header, "", *[f"- {n}" for n in result.notes], ""]
    md += summary_tables(rows, targets=targets)
    md += order_table(result.orders or orders(rows))
    md += ["## Every solve", "", *matrix_tables(rows)]
    paths[0].write_text("\n".join(md) + "\n")
    with open(paths[1], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    payload = {"rows": rows, "orders": result.orders, "notes": result.notes}
    paths[2].write_text(json.dumps(payload, indent=1, default=float, allow_nan=True) + "\n")
    scheds = list(dict.fromkeys(r["schedule"] for r in rows))
    for i, s in enumerate(scheds):
        p = out / ("error_vs_nfe.png" if i == 0 else f"error_vs_nfe_{s}.png")
        plot(rows, p, schedule=s)
        paths.append(p)
    return paths
