"""The mkdocs hook that generates the site's reference parts from the repository (mkdocs.yml
names it under `hooks:`).

- The API reference (`api/*.md`): one page per group of docs/hooks/api_groups.py, one
  mkdocstrings directive per public name (api_pages.py). A public name or subpackage without
  a page fails the build, naming the table to edit.
- The CLI reference (`cli.md`), from the argparse definitions of `jaxdiff.cli` (cli_page.py).
- The notebooks (`notebooks/*.ipynb`): the executed copies that tests/test_notebooks.py saves,
  executed here when missing or stale (executed_notebooks.py; `JAXDIFF_DOCS_EXECUTE=0` shows
  them without outputs instead, for a quick preview); mkdocs-jupyter renders them.
  Their index is notebooks/README.md.
- The benchmarks page (`benchmarks/index.md`, benchmarks/README.md and its figures) and the
  error-against-NFE plots of the sampler guide, drawn from its tables (benchmark_plots.py).
- MathJax, served from the installed `django-static-mathjax` package (the site loads nothing
  from outside): `assets/mathjax/`.
- The navigation's "API reference" and "Notebooks" sections, filled in from the same tables.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import mkdocs.plugins
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import api_groups  # noqa: E402
import api_pages  # noqa: E402
import benchmark_plots  # noqa: E402
import cli_page  # noqa: E402
import executed_notebooks  # noqa: E402

log = logging.getLogger("mkdocs.hooks.jaxdiff_docs")

ROOT = HERE.parents[1]
#: the `custom_mathjax_url` given to mkdocs-jupyter: its script tag is removed from the
#: notebook pages (the theme loads MathJax on every page, from assets/mathjax/)
NOTEBOOK_MATHJAX_SENTINEL = "jaxdiff-docs:mathjax-is-loaded-by-the-theme"
#: MathJax's files the site serves: the TeX-to-HTML bundle and what it loads on demand
MATHJAX_FILES = ("tex-chtml.js",)
MATHJAX_DIRS = ("a11y", "adaptors", "input", "output/chtml", "sre", "ui")


def notebook_titles() -> dict[str, str]:
    """Each notebook's title, as notebooks/README.md's table gives it (file stem -> title)."""
    readme = (executed_notebooks.NOTEBOOKS_DIR / "README.md").read_text(encoding="utf-8")
    return {
        stem: f"{int(number)}. {title}"
        for number, title, stem in re.findall(
            r"^\| (\d+) \| \[([^\]]+)\]\((\d\d_\w+)\.py\)", readme, flags=re.MULTILINE
        )
    }


def on_config(config):
    """Fills in the navigation's "API reference" and "Notebooks" entries."""
    titles = notebook_titles()
    sections = {
        "API reference": [{"Overview": "api/index.md"}]
        + [{g.title: f"api/{g.slug}.md"} for g in api_groups.GROUPS],
        "Notebooks": [{"Overview": "notebooks/index.md"}]
        + [
            {titles.get(s.stem, s.stem): f"notebooks/{s.stem}.ipynb"}
            for s in executed_notebooks.sources()
        ],
    }
    for i, item in enumerate(config["nav"] or []):
        if isinstance(item, dict) and len(item) == 1:
            ((title, _),) = item.items()
            if title in sections:
                config["nav"][i] = {title: sections.pop(title)}
    if sections:
        raise PluginError(f"mkdocs.yml's nav has no entries named {sorted(sections)}")
    return config


def _executed_notebook(source: Path) -> Path:
    """The executed copy of `source`, executing it first when the tests left none that is up
    to date. With JAXDIFF_DOCS_EXECUTE=0 (a quick preview) such a notebook is shown without
    outputs instead, with a warning (an error under --strict)."""
    if not executed_notebooks.up_to_date(source):
        if os.environ.get("JAXDIFF_DOCS_EXECUTE") == "0":
            log.warning("%s: no up-to-date executed copy, shown without outputs", source.name)
            import jupytext

            path = ROOT / "build" / "unexecuted" / "notebooks" / f"{source.stem}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            jupytext.write(jupytext.read(source), path)
            return path
        log.info("executing %s (no up-to-date executed copy in build/notebooks/)", source.name)
        with tempfile.TemporaryDirectory() as workdir:
            nb = executed_notebooks.execute(source, Path(workdir))
        executed_notebooks.save(nb, source)
    return executed_notebooks.executed_path(source)


def _mathjax_root() -> Path:
    try:
        import mathjax  # the django-static-mathjax package (no Django needed)
    except ImportError as err:
        raise PluginError(
            "MathJax is served from the django-static-mathjax package: pip install '.[docs]'"
        ) from err
    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


@mkdocs.plugins.event_priority(100)  # before mkdocs-jupyter wraps the notebooks
def on_files(files: Files, config) -> Files:
    problems = api_pages.coverage_problems()
    if problems:
        raise PluginError("the API reference is incomplete:\n" + "\n".join(problems))

    def add(src_uri: str, *, content: str | bytes | None = None, path: Path | None = None):
        files.append(
            File.generated(
                config,
                src_uri,
                content=content,
                abs_src_path=None if path is None else str(path),
            )
        )

    add("api/index.md", content=api_pages.index_markdown())
    for group in api_groups.GROUPS:
        add(f"api/{group.slug}.md", content=api_pages.group_markdown(group))
    add("cli.md", content=cli_page.cli_markdown())

    readme = (executed_notebooks.NOTEBOOKS_DIR / "README.md").read_text(encoding="utf-8")
    add("notebooks/index.md", content=re.sub(r"\]\((\d\d_\w+)\.py\)", r"](\1.ipynb)", readme))
    for source in executed_notebooks.sources():
        # a File backed by its directory, not File.generated: mkdocs-jupyter reads
        # `src_dir` (a generated file has none)
        path = _executed_notebook(source)
        files.append(
            File(
                f"notebooks/{path.name}",
                src_dir=str(path.parents[1]),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )

    benchmarks = ROOT / "benchmarks"
    add("benchmarks/index.md", content=(benchmarks / "README.md").read_text(encoding="utf-8"))
    for figure in sorted((benchmarks / "figures").glob("*.png")):
        add(f"benchmarks/figures/{figure.name}", path=figure)
    for name, png in benchmark_plots.draw_all().items():
        add(f"guides/{name}", content=png)

    mathjax = _mathjax_root()
    paths = [mathjax / f for f in MATHJAX_FILES]
    paths += [p for d in MATHJAX_DIRS for p in sorted((mathjax / d).rglob("*")) if p.is_file()]
    for path in paths:
        add(f"assets/mathjax/{path.relative_to(mathjax).as_posix()}", path=path)
    return files


_SENTINEL_SCRIPT = re.compile(
    rf'<script src="{re.escape(NOTEBOOK_MATHJAX_SENTINEL)}">\s*</script>\s*'
    r'<!-- MathJax configuration -->\s*<script type="text/x-mathjax-config">.*?</script>',
    flags=re.DOTALL,
)
# nbconvert's loader of mermaid.js from a CDN: the notebooks have no mermaid diagrams
_MERMAID_SCRIPT = re.compile(
    r'<script type="module">\s*document\.addEventListener\('
    r'"DOMContentLoaded", async \(\) => \{\s*const diagrams = '
    r'document\.querySelectorAll\("\.jp-Mermaid.*?</script>',
    flags=re.DOTALL,
)


def on_post_page(output: str, page, config) -> str:
    """Drops nbconvert's MathJax 2 loader (and its CDN mermaid loader) from notebook pages."""
    if page.file.src_uri.endswith(".ipynb"):
        output, found = _SENTINEL_SCRIPT.subn("", output)
        if found != 1:
            raise PluginError(f"{page.file.src_uri}: nbconvert's MathJax loader not found")
        output = _MERMAID_SCRIPT.sub("", output)
    return output
