"""Execute every teaching notebook (`notebooks/NN_*.py`, jupytext percent files) from scratch.

Each notebook asserts its own numerical claim, so a notebook that raises fails its test. The
kernel is this interpreter (`sys.executable`), whatever kernelspecs the machine has installed:
a `python3` kernelspec elsewhere on the Jupyter path (a user's, a system one) could point at
another Python without jaxdiff.
"""

import importlib.util
import re
import sys
import time
from pathlib import Path

import pytest
from jaxdiff_test_utils import require

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
KERNEL_NAME = "jaxdiff-this-python"
TIMEOUT_S = 300  # per cell; the notebooks aim for well under a minute in all


# the tools that execute a notebook: converter, client, kernel
NOTEBOOK_MODULES = ("jupytext", "nbclient", "nbformat", "jupyter_client", "ipykernel")


def _notebook_tools():
    """jupytext, nbclient and a kernel manager bound to this interpreter. Skipped when the
    notebook tools are not installed, except in CI, where a missing one fails the test
    (`jaxdiff_test_utils.require`)."""
    require(*NOTEBOOK_MODULES, why="the notebook tests")
    import jupytext
    import nbclient
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager

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


# the teaching notebooks, as notebooks/README.md lists them: a lost or renamed one fails
EXPECTED = [
    "01_brownian_motion_ito_integral.py",
    "02_ito_lemma_gbm.py",
    "03_sde_solver_convergence.py",
    "04_ornstein_uhlenbeck_fokker_planck.py",
    "05_score_matching_langevin.py",
    "06_reverse_sde_probability_flow.py",
    "07_edm_design_space.py",
    "08_ddpm_ddim.py",
    "09_training_with_optax.py",
    "10_likelihood_pf_ode.py",
    "11_analytic_dpm.py",
    "12_diffusion_bridges.py",
    "13_flow_matching.py",
]


def test_notebooks_found():
    assert [p.name for p in NOTEBOOKS] == EXPECTED, f"the teaching notebooks in {NOTEBOOKS_DIR}"
    # and the README's table links exactly these
    readme = (NOTEBOOKS_DIR / "README.md").read_text()
    assert re.findall(r"\]\((\d\d_\w+\.py)\)", readme) == EXPECTED


def test_missing_notebook_tools_skip_locally_and_fail_in_ci(monkeypatch):
    """`require` (used for the notebook tools and the k-diffusion peer): a module that is not
    installed skips the test, but fails it in CI, naming the module."""
    missing = "jaxdiff_no_such_module_for_this_test"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=missing):
        require("json", missing, why="a test of require")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"{missing} not installed"):
        require(missing)
    # the message names the package to install (k-diffusion's module is k_diffusion)
    real = importlib.util.find_spec
    with monkeypatch.context() as m:
        m.setattr(importlib.util, "find_spec", lambda n: None if n == "k_diffusion" else real(n))
        with pytest.raises(pytest.fail.Exception, match="^k-diffusion not installed"):
            require("json", "k_diffusion")
    require("json", "os.path")  # installed: neither a skip nor a failure


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
