"""Error-against-NFE plots for the guide "Choose a sampler and a grid", drawn at build time from
the tables in benchmarks/README.md (the measured numbers live there only, so the plots
follow the tables when a benchmark is rerun). A table whose shape changed fails the build
with the section's name.

Only the standard library, numpy and matplotlib are imported here (no mkdocs).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_README = ROOT / "benchmarks" / "README.md"


def section(markdown: str, heading_start: str) -> str:
    """The text of the `## ` section whose heading starts with `heading_start`."""
    parts = re.split(r"^## ", markdown, flags=re.MULTILINE)
    for part in parts[1:]:
        if part.startswith(heading_start):
            return part
    raise LookupError(f"benchmarks/README.md has no section '## {heading_start}...'")


def tables(text: str) -> list[list[dict[str, str]]]:
    """The Markdown tables of `text`, each a list of rows keyed by the header's cells."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if (
            lines[i].startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\|[-:| ]+\|$", lines[i + 1])
        ):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                rows.append(dict(zip(header, cells, strict=True)))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def number(cell: str) -> float:
    """The number a cell starts with (``"0.075 (ipndm / exponential)"`` -> 0.075)."""
    match = re.match(r"^\**\s*([0-9.eE+-]+)", cell)
    if not match:
        raise ValueError(f"benchmarks/README.md: no number at the start of the cell {cell!r}")
    return float(match.group(1))


def _nfe_axis(ax, nfe: list[float]) -> None:
    """NFE ticks at the measured values, written plainly (not as powers of ten)."""
    from matplotlib.ticker import NullLocator

    ticks = sorted(set(nfe))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("NFE")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def frontier_plot(markdown: str) -> bytes:
    """`frontier.py`'s table: the best PF-ODE error per NFE of jaxdiff, diffusers and
    k-diffusion, one panel per noise range and problem."""
    rows = tables(section(markdown, "`frontier.py`"))[0]
    panels: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        panels.setdefault((row["range"], row["problem"]), []).append(row)
    plt = _pyplot()
    rows_ = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows_, 2, figsize=(8, 3.2 * rows_), sharey=True, squeeze=False)
    axes = axes.ravel()
    for ax, ((rng, problem), cells) in zip(axes, panels.items(), strict=False):
        nfe = [number(r["NFE"]) for r in cells]
        for column, style in (
            ("jaxdiff best", "o-"),
            ("diffusers best", "s--"),
            ("k-diffusion best", "^:"),
        ):
            ax.loglog(nfe, [number(r[column]) for r in cells], style, label=column)
        ax.set_title(f"{problem}, {rng}", fontsize=9)
        _nfe_axis(ax, nfe)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[::2]:
        ax.set_ylabel("RMS error to the exact solve")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def flow_plot(markdown: str) -> bytes:
    """`flow_error_vs_nfe.py`'s table: Euler on diffusers' flow-matching grids (shift 1 and 3)
    against IPNDM on `tuned_flow`, one panel per problem."""
    rows = tables(section(markdown, "`flow_error_vs_nfe.py`"))[0]
    panels: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        panels.setdefault(row["problem"], []).append(row)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), sharey=True)
    for ax, (problem, cells) in zip(axes, panels.items(), strict=True):
        nfe = [number(r["NFE"]) for r in cells]
        for column, style in (
            ("diffusers Euler, shift 1", "s--"),
            ("diffusers Euler, shift 3", "d--"),
            ("IPNDM / tuned_flow", "o-"),
        ):
            ax.loglog(nfe, [number(r[column]) for r in cells], style, label=column)
        ax.set_title(f"rectified flow, {problem}", fontsize=9)
        _nfe_axis(ax, nfe)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("RMS error to the exact flow-ODE endpoint")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


#: the plots the guide shows: file name under docs/guides/ -> drawing function
PLOTS = {
    "plots/frontier.png": frontier_plot,
    "plots/flow_error_vs_nfe.png": flow_plot,
}


def draw_all() -> dict[str, bytes]:
    markdown = BENCHMARKS_README.read_text(encoding="utf-8")
    return {name: draw(markdown) for name, draw in PLOTS.items()}
