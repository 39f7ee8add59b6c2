"""Execute every teaching notebook (`notebooks/NN_*.py`, jupytext percent files) from scratch.

Each notebook asserts its own numerical claim, so a notebook that raises fails its test. The
kernel is this interpreter (`sys.executable`), whatever kernelspecs the machine has installed:
a `python3` kernelspec elsewhere on the Jupyter path (a user's, a system one) could point at
another Python without jaxdiff.
"""

import os
import sys
import time
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
KERNEL_NAME = "jaxdiff-this-python"
TIMEOUT_S = 300  # per cell; the notebooks aim for well under a minute in all


def _notebook_tools():
    """jupytext, nbclient and a kernel manager bound to this interpreter. Skipped when the
    notebook tools are missing, except in CI, where their absence is an error."""
    try:
        import ipykernel  # noqa: F401  (the kernel the notebooks run in)
        import jupytext
        import nbclient
        from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
        from jupyter_client.manager import KernelManager
    except ImportError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"notebook tools not installed: {e}")

    class ThisInterpreter(KernelSpecManager):
        """One kernelspec: ipykernel on `sys.executable`, whatever else is installed."""

        def find_kernel_specs(self):
            return {KERNEL_NAME: str(NOTEBOOKS_DIR)}

        def get_kernel_spec(self, kernel_name):
            if kernel_name != KERNEL_NAME:
                raise NoSuchKernel(kernel_name)
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name=f"Python ({sys.executable})",
                language="python",
                resource_dir=str(NOTEBOOKS_DIR),
            )

    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ThisInterpreter())
    return jupytext, nbclient, km


def test_notebooks_found():
    assert len(NOTEBOOKS) >= 6, f"expected the teaching notebooks in {NOTEBOOKS_DIR}"


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    jupytext, nbclient, km = _notebook_tools()
    nb = jupytext.read(path)
    # plots render inline into the in-memory notebook; nothing is written next to the sources
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    print(f"{path.name}: executed in {elapsed:.1f} s")
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, errors
