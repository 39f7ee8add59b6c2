"""Execute every teaching notebook (`notebooks/NN_*.py`, jupytext percent files) from scratch.

Each notebook asserts its own numerical claim, so a notebook that raises fails its test. The
kernel is this interpreter (`sys.executable`), whatever kernelspecs the machine has installed:
a `python3` kernelspec elsewhere on the Jupyter path (a user's, a system one) could point at
another Python without jaxdiff.

Each executed notebook, outputs and plots included, is saved to `build/notebooks/` (git-ignored)
for the documentation site, which renders these copies instead of executing the notebooks a
second time (docs/hooks/executed_notebooks.py holds the execution and the copies' format).
"""

import importlib.util
import os
import re
import sys
import time
from pathlib import Path

import pytest
from jaxdiff_test_utils import UNOPTIMIZED, require

DOCS_HOOKS = Path(__file__).resolve().parent.parent / "docs" / "hooks"
sys.path.insert(0, str(DOCS_HOOKS))
import executed_notebooks  # noqa: E402  (docs/hooks, put on the path above)

NOTEBOOKS_DIR = executed_notebooks.NOTEBOOKS_DIR
NOTEBOOKS = executed_notebooks.sources()
TIMEOUT_S = 300  # per cell; the notebooks aim for well under a minute in all


# the tools that execute a notebook: converter, client, kernel
NOTEBOOK_MODULES = ("jupytext", "nbclient", "nbformat", "jupyter_client", "ipykernel")


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
    "14_guidance_inverse_problems.py",
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


#: Notebooks whose kernel compiles with XLA's default optimizations, not the suite's level 0
#: (conftest.py): they train for many steps, where unoptimized code costs more than the
#: compiles save (measured alone: 09 66 s -> 50 s, 13 44 s -> 39 s). The other notebooks are
#: compile-bound: in a CI run with all of them optimized, 10 of the 12 others took 1-10 s
#: longer, and the suite 100 s longer.
RUN_BOUND = {"09_training_with_optax", "13_flow_matching"}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    """Executes the notebook (skipped without the notebook tools, except in CI: `require`),
    fails on any cell that raises, and saves the executed copy for the site."""
    require(*NOTEBOOK_MODULES, why="the notebook tests")
    if path.stem in RUN_BOUND:
        flags = os.environ.get("XLA_FLAGS", "").replace(UNOPTIMIZED, "").strip()
        if flags:
            monkeypatch.setenv("XLA_FLAGS", flags)
        else:
            monkeypatch.delenv("XLA_FLAGS", raising=False)
    start = time.perf_counter()
    nb = executed_notebooks.execute(path, tmp_path, timeout=TIMEOUT_S)
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
    saved = executed_notebooks.save(nb, path)
    assert executed_notebooks.up_to_date(path), saved
