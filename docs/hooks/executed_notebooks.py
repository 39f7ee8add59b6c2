"""The teaching notebooks, executed once, for the documentation site.

tests/test_notebooks.py executes every `notebooks/NN_*.py` (a jupytext percent file) and saves
the executed notebook, outputs and plots included, with `save()` to `EXECUTED_DIR`
(`build/notebooks/`, git-ignored), stamped with the SHA-256 of the source it ran. The site
build (docs/hooks/jaxdiff_docs.py) renders those copies with mkdocs-jupyter (which does not
execute anything). A copy whose stamp does not match its source (the notebook changed since
the tests ran), or a missing one, is executed by the build with `execute()`, the same way the
tests do, and saved for the next build: `pip install ".[docs]" && mkdocs serve` works on a
fresh clone, and a build right after the tests executes nothing.

Only the standard library is imported at module level; executing needs jupytext, nbclient
and ipykernel (the test and docs extras install them).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = ROOT / "notebooks"
EXECUTED_DIR = ROOT / "build" / "notebooks"
KERNEL_NAME = "jaxdiff-this-python"
#: the key of the notebook metadata that holds the stamp
STAMP = "jaxdiff_source_sha256"


def sources() -> list[Path]:
    """The teaching notebooks' sources, in order."""
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))


def digest(source: Path) -> str:
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


def executed_path(source: Path) -> Path:
    return EXECUTED_DIR / f"{Path(source).stem}.ipynb"


def up_to_date(source: Path) -> bool:
    """Whether `executed_path(source)` holds an execution of the current `source`."""
    path = executed_path(source)
    try:
        metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return False
    return metadata.get(STAMP) == digest(source)


def save(nb, source: Path) -> Path:
    """Writes the executed notebook `nb` (an nbformat node) of `source`, stamped with the
    source's digest, to `executed_path(source)` (atomically: a concurrent build never reads a
    half-written file). Returns the path."""
    import nbformat

    nb.metadata[STAMP] = digest(source)
    path = executed_path(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(path)
    return path


def kernel_manager():
    """A kernel manager whose one kernelspec is ipykernel on this interpreter
    (`sys.executable`), whatever kernelspecs the machine has installed: a `python3` kernelspec
    elsewhere on the Jupyter path could point at another Python without jaxdiff."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager

    class ThisInterpreter(KernelSpecManager):
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

    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ThisInterpreter())


def execute(source: Path, workdir: Path, *, timeout: int = 300):
    """Executes the notebook `source` in `workdir` (its files land there) with plots inline,
    and returns the executed notebook. A cell that raises raises `CellExecutionError`."""
    import jupytext
    import nbclient

    nb = jupytext.read(source)
    old = os.environ.get("MPLBACKEND")
    # plots render inline into the notebook's outputs
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        client = nbclient.NotebookClient(
            nb,
            km=kernel_manager(),
            timeout=timeout,
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old
    return nb
