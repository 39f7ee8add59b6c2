"""The documentation site's sources, checked without building it (the build itself,
`mkdocs build --strict`, and a browser test of the built site, tests/test_docs_site.py, run
after the suite: see the README's test command).

- The API reference (docs/hooks/api_groups.py, api_pages.py) gives every public name a page:
  a subpackage or a top-level name without one fails, naming the table to edit.
- Every public name has a docstring (as griffe, the reference's reader, sees it: `#:` comments
  of constants included), and every sampler's names its paper, its order and its NFE.
- The CLI reference holds every command and option of the argparse definitions.
- The README's quick start is two commands, the second the one `.ci/run` runs verbatim; the
  changelog moved to docs/changelog.md.
- The guides' code marked `<!-- tested by tests/test_docs.py -->` runs (training shortened).
- The benchmark plots draw from benchmarks/README.md's tables; the demo's figure keeps its
  panel titles inside the picture.
"""

from __future__ import annotations

import argparse
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from jaxdiff_test_utils import require

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "docs" / "hooks"
sys.path.insert(0, str(HOOKS))

import api_groups  # noqa: E402  (docs/hooks, put on the path above)
import api_pages  # noqa: E402
import benchmark_plots  # noqa: E402
import cli_page  # noqa: E402
import executed_notebooks  # noqa: E402

# ------------------------------------------------------------------------- API reference


def test_every_public_name_has_a_page():
    assert api_pages.coverage_problems() == []
    documented = api_pages.documented_names()
    assert set(api_pages.public_names()) == set(documented)
    slugs = {g.slug for g in api_groups.GROUPS}
    assert set(documented.values()) <= slugs
    # the reexports are documented once, under their subpackage
    assert documented["jaxdiff.VP"] == documented["jaxdiff.processes.VP"] == "processes"
    assert documented["jaxdiff.sample"] == "sampling"


def test_a_subpackage_or_name_without_a_page_fails_naming_the_table():
    """Drop a subpackage, a top-level name and add a bogus entry: each is a problem that says
    where to fix it."""
    groups = [
        g._replace(
            entries=tuple(e for e in g.entries if e not in ("jaxdiff.samplers", "jaxdiff.sample"))
        )
        for g in api_groups.GROUPS
    ]
    groups[0] = groups[0]._replace(entries=(*groups[0].entries, "jaxdiff.no_such_thing"))
    problems = "\n".join(api_pages.coverage_problems(groups))
    assert re.search(
        r"public subpackage jaxdiff\.samplers has no page.*add \"jaxdiff\.samplers\" to the "
        r"entries of a Group in docs/hooks/api_groups\.py",
        problems,
    )
    assert "jaxdiff.sample has no page in the API reference" in problems
    assert "'jaxdiff.no_such_thing', which is neither a public subpackage" in problems
    # a subpackage that exists but is not registered in jaxdiff._SUBPACKAGES yet counts too
    assert set(api_pages.public_subpackages()) >= {"cli", "samplers", "guidance"}


def test_each_page_has_one_directive_per_name():
    directives = []
    for group in api_groups.GROUPS:
        text = api_pages.group_markdown(group)
        assert text.startswith(f"# {group.title}\n")
        directives += re.findall(r"^::: (\S+)$", text, flags=re.MULTILINE)
    members = [
        d
        for d in directives
        if d.count(".") >= 1 and d not in {f"jaxdiff.{s}" for s in api_pages.public_subpackages()}
    ]
    assert len(members) == len(set(members))
    aliases = {a for names in api_pages.aliases().values() for a in names}
    assert set(members) | aliases == set(api_pages.public_names())


def test_summaries_keep_code_and_math_whole():
    import jaxdiff.samplers as samplers

    assert api_pages.summary(samplers.Heun) == (
        "Heun's second-order method on the probability-flow ODE."
    )
    # "Alg." and "et al." do not end the sentence
    ddpm = api_pages.summary(samplers.DDPM)
    assert ddpm.count("(") == ddpm.count(")") and ddpm.endswith(".")
    for name in samplers.__all__:
        text = api_pages.summary(getattr(samplers, name))
        assert text.count("`") % 2 == 0 and text.count("$") % 2 == 0, (name, text)


@pytest.fixture(scope="module")
def griffe_package():
    """jaxdiff as the API reference reads it: griffe, with the site's extensions."""
    require("griffe", why="the documentation checks")
    import griffe

    extensions = griffe.load_extensions(str(HOOKS / "griffe_jaxdiff.py"))
    return griffe.load(
        "jaxdiff",
        search_paths=[str(ROOT)],
        extensions=extensions,
        resolve_aliases=True,
        resolve_external=False,
    )


@pytest.mark.slow
def test_every_public_name_has_a_docstring(griffe_package):
    undocumented = []
    for name in api_pages.documented_names():
        obj = griffe_package[name.split(".", 1)[1]]
        if obj.docstring is None or not obj.docstring.value.strip():
            undocumented.append(name)
    assert not undocumented, (
        f"public names without a docstring (a constant takes '#:' comment lines above it): "
        f"{undocumented}"
    )
    # constants document themselves with '#:' comments, classes get their runtime signature
    assert "sampler class" in griffe_package["samplers.SAMPLERS"].docstring.value
    ddim = griffe_package["samplers.DDIM"].members["__init__"].parameters
    assert [p.name for p in ddim] == ["self", "eta"]
    assert ddim["eta"].default == "0.0"


def test_every_sampler_names_its_paper_order_and_nfe():
    import inspect

    import jaxdiff.samplers as samplers

    classes = [
        getattr(samplers, n)
        for n in samplers.__all__
        if isinstance(getattr(samplers, n), type)
        and issubclass(getattr(samplers, n), samplers.AbstractSampler)
        and getattr(samplers, n) is not samplers.AbstractSampler
    ]
    assert len(classes) >= 25
    for cls in classes:
        doc = inspect.getdoc(cls) or ""
        assert re.search(r"\b(19|20)\d\d\b", doc), f"{cls.__name__}: no paper (year)"
        assert re.search(r"\border\b", doc, flags=re.IGNORECASE), f"{cls.__name__}: no order"
        assert re.search(r"NFE|evaluations?\s+per\s+step", doc), f"{cls.__name__}: no NFE"


# ------------------------------------------------------------------------- CLI reference


def test_cli_page_has_every_command_and_option():
    from jaxdiff.cli import COMMANDS, build_parser

    text = cli_page.cli_markdown()
    for command in COMMANDS:
        assert f"## `jaxdiff {command.NAME}`" in text
        sub = cli_page._subparser(build_parser(command.NAME), command.NAME)
        section = text.split(f"## `jaxdiff {command.NAME}`", 1)[1].split("\n## ", 1)[0]
        assert sub.format_usage().split()[1] in section  # the usage line's program
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                assert f"`{flag}" in section or f", {flag}" in section, (command.NAME, flag)
    assert "[quick start](guides/getting-started.md)" in text


# ------------------------------------------------------------------ README, CI, changelog


def _quick_start(path: Path) -> list[str]:
    text = path.read_text()
    block = re.search(r"## Quick start\n.*?```bash\n(.*?)```", text, flags=re.DOTALL)
    assert block, f"{path}: no quick start"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_quick_start_is_the_ci_command():
    commands = _quick_start(ROOT / "README.md")
    assert len(commands) == 2, commands
    assert commands[0] == "pip install . && jaxdiff demo"
    ci = (ROOT / ".ci" / "run").read_text()
    last = [line for line in ci.splitlines() if line.strip()][-1]
    assert last == commands[1], "the README's test command and .ci/run's last line differ"
    assert "mkdocs build --strict" in commands[1]
    assert "JAXDIFF_DOCS_SITE=site" in commands[1] and "tests/test_docs_site.py" in commands[1]
    # the site's home page and getting-started guide show the same two commands
    assert _quick_start(ROOT / "docs" / "index.md") == commands
    guide = (ROOT / "docs" / "guides" / "getting-started.md").read_text()
    assert all(c in guide for c in commands)


def test_readme_links_the_site_and_the_changelog_moved():
    readme = (ROOT / "README.md").read_text()
    assert "mkdocs serve" in readme
    assert "(docs/changelog.md)" in readme and "## Changelog" not in readme
    changelog = (ROOT / "docs" / "changelog.md").read_text()
    assert changelog.startswith("# Changelog\n")
    versions = re.findall(r"^## (\d+\.\d+\.\d+)", changelog, flags=re.MULTILINE)
    assert versions[-1] == "0.2.0" and len(versions) == len(set(versions))
    links = re.findall(r"\]\(((?:docs|benchmarks|notebooks)/[^)#]+)\)", readme)
    assert links and all((ROOT / link).exists() for link in links), links


# ---------------------------------------------------------------------------- the guides

TESTED = "<!-- tested by tests/test_docs.py -->"
# training shortened for the test: the guides' examples train for hundreds of steps
SHORTER = ((re.compile(r"\brange\(500\)"), "range(3)"), (re.compile(r"\bsteps=500\b"), "steps=3"))


def _tested_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for page in sorted((ROOT / "docs" / "guides").glob("*.md")):
        text = page.read_text()
        for i, match in enumerate(
            re.finditer(re.escape(TESTED) + r"\n+```python\n(.*?)```", text, flags=re.DOTALL)
        ):
            blocks.append((page.stem, i, match.group(1)))
    return blocks


def test_the_guides_mark_their_examples():
    pages = {page for page, _, _ in _tested_blocks()}
    assert {"getting-started", "bring-your-own-network"} <= pages


@pytest.mark.slow
@pytest.mark.parametrize(
    "block", _tested_blocks(), ids=[f"{p}-{i}" for p, i, _ in _tested_blocks()]
)
def test_guide_example_runs(block, tmp_path, monkeypatch):
    _, _, code = block
    for pattern, replacement in SHORTER:
        code = pattern.sub(replacement, code)
    monkeypatch.chdir(tmp_path)  # files the example writes (a run directory) land here
    # a module of its own: dataclasses (equinox modules) look their module up in sys.modules
    module = types.ModuleType("jaxdiff_guide_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, f"<guide {block[0]}>", "exec"), module.__dict__)


# ------------------------------------------------------------------- plots and pictures


def test_benchmark_plots_draw_from_the_tables():
    markdown = benchmark_plots.BENCHMARKS_README.read_text()
    rows = benchmark_plots.tables(benchmark_plots.section(markdown, "`frontier.py`"))[0]
    assert {"range", "problem", "NFE", "jaxdiff best"} <= set(rows[0])
    assert benchmark_plots.number("0.075 (ipndm / exponential)") == 0.075
    assert benchmark_plots.number("**0.34**") == 0.34
    pngs = benchmark_plots.draw_all()
    assert set(pngs) == set(benchmark_plots.PLOTS)
    assert all(png.startswith(b"\x89PNG") for png in pngs.values())
    with pytest.raises(LookupError, match="no section"):
        benchmark_plots.section(markdown, "`no_such_script.py`")


def test_demo_figure_keeps_its_titles_inside(tmp_path):
    """The front-page picture (`jaxdiff demo`'s figure): nothing drawn touches its edges."""
    import matplotlib.image

    from jaxdiff.cli import _demo

    rng = np.random.default_rng(0)
    held = rng.normal(size=(2000, 2))
    names = ["heun", "dpmpp_2m", "dpmpp_2m_sde"]
    samples = {n: held + 0.1 * rng.normal(size=held.shape) for n in names}
    rows = [(n, 20, 39, 0.0712, 1.34, 1.0) for n in names]
    out = tmp_path / "demo.png"
    _demo._write(out, "table", held, samples, rows)
    image = matplotlib.image.imread(out)[..., :3].mean(axis=-1)
    ink = np.argwhere(image < 0.6)
    top, left = ink.min(axis=0)
    bottom, right = ink.max(axis=0)
    height, width = image.shape
    margin = 5
    assert top >= margin and left >= margin, (top, left)
    assert bottom < height - margin and right < width - margin, (bottom, right, image.shape)


# --------------------------------------------------------------------- executed notebooks


def test_executed_notebook_copies_are_stamped(tmp_path, monkeypatch):
    require("nbformat", why="the notebook copies")
    import nbformat

    monkeypatch.setattr(executed_notebooks, "EXECUTED_DIR", tmp_path / "executed")
    source = tmp_path / "01_example.py"
    source.write_text("# %%\nprint(1)\n")
    assert not executed_notebooks.up_to_date(source)  # no copy yet
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    path = executed_notebooks.save(nb, source)
    assert path == tmp_path / "executed" / "01_example.ipynb"
    assert executed_notebooks.up_to_date(source)
    source.write_text("# %%\nprint(2)\n")  # the source changed: the copy is stale
    assert not executed_notebooks.up_to_date(source)
    assert executed_notebooks.sources()[0].name.startswith("01_")
