"""The API reference's pages, generated from the package and the table in `api_groups`.

`public_names()` is what the package exports: the top-level `jaxdiff.__all__` and, for every
public subpackage (those in `jaxdiff._SUBPACKAGES` and any other package directory whose name
does not start with an underscore, registered or not yet), each name of its `__all__`.
`coverage_problems()` says what the table leaves out or names wrongly; `group_markdown()`
writes a page: one mkdocstrings directive (``::: jaxdiff.samplers.Heun``) per public name,
under a table of the names with the first sentence of each docstring.

Only the standard library and jaxdiff are imported here (no mkdocs), so tests/test_docs.py
checks the table without building the site.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterable
from types import ModuleType

from api_groups import GROUPS, Group

PACKAGE = "jaxdiff"
TABLE_FILE = "docs/hooks/api_groups.py"

# mkdocstrings options of one name's directive (the rest are global, in mkdocs.yml)
_MEMBER_OPTIONS = ("heading_level: {level}", "show_root_heading: true")


def _package() -> ModuleType:
    return importlib.import_module(PACKAGE)


def public_subpackages() -> list[str]:
    """The public subpackages' short names: the registered ones (`jaxdiff._SUBPACKAGES`) and
    every package directory whose name does not start with an underscore (a new subpackage is
    public as soon as it exists, before it is registered). `jaxdiff.cli` is one of them."""
    package = _package()
    on_disk = {
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if info.ispkg and not info.name.startswith("_")
    }
    return sorted(set(package._SUBPACKAGES) | on_disk)


def subpackage(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def top_level_names() -> list[str]:
    """The top-level public names that are not subpackages, in `jaxdiff.__all__`'s order."""
    subpackages = set(public_subpackages())
    return [n for n in _package().__all__ if n not in subpackages]


def public_names() -> dict[str, object]:
    """Every public name, fully qualified (``jaxdiff.sample``, ``jaxdiff.samplers.Heun``), and
    its object."""
    package = _package()
    names = {f"{PACKAGE}.{n}": getattr(package, n) for n in top_level_names()}
    for sub in public_subpackages():
        module = subpackage(sub)
        names.update({f"{PACKAGE}.{sub}.{n}": getattr(module, n) for n in module.__all__})
    return names


def _entry_kind(entry: str) -> str | None:
    """'subpackage', 'name' or None (the entry names nothing public)."""
    prefix = f"{PACKAGE}."
    if not entry.startswith(prefix):
        return None
    rest = entry[len(prefix) :]
    if rest in public_subpackages():
        return "subpackage"
    if rest in top_level_names():
        return "name"
    return None


def aliases() -> dict[str, list[str]]:
    """For each subpackage member, the top-level names bound to the same object
    (``jaxdiff.processes.VP`` -> ``["jaxdiff.VP"]``)."""
    package = _package()
    top = {n: getattr(package, n) for n in top_level_names()}
    out: dict[str, list[str]] = {}
    for sub in public_subpackages():
        module = subpackage(sub)
        for n in module.__all__:
            obj = getattr(module, n)
            same = [f"{PACKAGE}.{t}" for t, o in top.items() if o is obj]
            if same:
                out[f"{PACKAGE}.{sub}.{n}"] = same
    return out


def documented_names(groups: Iterable[Group] = GROUPS) -> dict[str, str]:
    """Every public name the table gives a page, and the page's slug: the members of the
    subpackages it lists, the top-level names it lists, and the top-level names that are
    aliases of documented members."""
    pages: dict[str, str] = {}
    for group in groups:
        for entry in group.entries:
            kind = _entry_kind(entry)
            if kind == "subpackage":
                module = subpackage(entry.split(".", 1)[1])
                for n in module.__all__:
                    pages.setdefault(f"{entry}.{n}", group.slug)
            elif kind == "name":
                pages.setdefault(entry, group.slug)
    for member, names in aliases().items():
        if member in pages:
            for name in names:
                pages.setdefault(name, pages[member])
    return pages


def coverage_problems(groups: Iterable[Group] = GROUPS) -> list[str]:
    """What is wrong with the table: entries that name nothing public or repeat, subpackages
    and names without a page, repeated slugs. Empty when every public name has one page."""
    groups = list(groups)
    problems = []
    seen: set[str] = set()
    for group in groups:
        for entry in group.entries:
            if _entry_kind(entry) is None:
                problems.append(
                    f"{TABLE_FILE}: the group {group.title!r} lists {entry!r}, which is neither "
                    f"a public subpackage nor a name in {PACKAGE}.__all__"
                )
            if entry in seen:
                problems.append(f"{TABLE_FILE}: {entry!r} is listed twice")
            seen.add(entry)
    slugs = [g.slug for g in groups]
    problems += [
        f"{TABLE_FILE}: two groups have the slug {s!r}" for s in set(slugs) if slugs.count(s) > 1
    ]
    tabled = {e.split(".", 1)[1] for g in groups for e in g.entries if "." in e}
    for sub in public_subpackages():
        if sub not in tabled:
            problems.append(
                f"the public subpackage {PACKAGE}.{sub} has no page in the API reference: add "
                f'"{PACKAGE}.{sub}" to the entries of a Group in {TABLE_FILE} (or a new Group)'
            )
    documented = documented_names(groups)
    for name in top_level_names():
        qualified = f"{PACKAGE}.{name}"
        if qualified not in documented:
            problems.append(
                f"{qualified} has no page in the API reference: add {qualified!r} to the "
                f"entries of a Group in {TABLE_FILE}, or export it from a documented subpackage"
            )
    return problems


# a full stop that ends an abbreviation, not a sentence
_ABBREVIATION = re.compile(r"(\b(Alg|Eq|Eqs|Sec|Fig|App|Thm|al|cf|vs|etc|i\.e|e\.g)|\b[A-Z])\.$")


def _first_paragraph(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


def summary(obj: object) -> str:
    """The first sentence of `obj`'s own docstring (its first paragraph when the sentence
    would break inline code or math), for the page's table; "" when it has none."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else None
    if not isinstance(obj, type):
        doc = obj.__doc__ if (inspect.isroutine(obj) or inspect.ismodule(obj)) else None
        if doc is None and callable(obj) and not inspect.isroutine(obj):
            doc = type(obj).__dict__.get("__doc__")  # e.g. a functools.partial-like object
    if not doc:
        return ""
    text = _first_paragraph(inspect.cleandoc(doc))
    for match in re.finditer(r"\.(\s|$)", text):
        head = text[: match.start() + 1]
        if (
            head.count("`") % 2 == 0
            and head.count("$") % 2 == 0
            and head.count("(") == head.count(")")
            and not _ABBREVIATION.search(head)
        ):
            return head
    return text


def _cell(text: str) -> str:
    return text.replace("|", r"\|")


def _directive(name: str, level: int) -> list[str]:
    return [
        f"::: {name}",
        "    options:",
        *(f"      {o.format(level=level)}" for o in _MEMBER_OPTIONS),
        "",
    ]


def _anchor(name: str) -> str:
    return f"#{name}"


def group_markdown(group: Group) -> str:
    """The Markdown of one API page."""
    alias_of = aliases()
    lines = [f"# {group.title}", "", group.summary, ""]
    for entry in group.entries:
        kind = _entry_kind(entry)
        if kind == "name":
            lines += _directive(entry, 2)
            continue
        if kind != "subpackage":
            raise ValueError(f"{TABLE_FILE}: {entry!r} names nothing public")
        module = subpackage(entry.split(".", 1)[1])
        lines += [
            f"## `{entry}`",
            "",
            f"::: {entry}",
            "    options:",
            "      members: false",
            "      show_root_heading: false",
            "      show_root_toc_entry: false",
            "",
            "| name | also exported as | summary |",
            "|---|---|---|",
        ]
        for n in module.__all__:
            full = f"{entry}.{n}"
            also = ", ".join(f"`{a}`" for a in alias_of.get(full, []))
            lines.append(
                f"| [`{n}`]({_anchor(full)}) | {also} | {_cell(summary(getattr(module, n)))} |"
            )
        lines.append("")
        for n in module.__all__:
            lines += _directive(f"{entry}.{n}", 3)
    return "\n".join(lines) + "\n"


def index_markdown(groups: Iterable[Group] = GROUPS) -> str:
    """The API reference's front page: its groups, each with its summary and names."""
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings of every public name: the top-level `jaxdiff` "
        "namespace and each public subpackage's `__all__`, grouped as below. Top-level names "
        "that are re-exported from a subpackage (`jaxdiff.VP` is `jaxdiff.processes.VP`) are "
        "documented once, under the subpackage.",
        "",
        "| page | what is there | names |",
        "|---|---|--:|",
    ]
    documented = documented_names(groups)
    for group in groups:
        count = sum(1 for slug in documented.values() if slug == group.slug)
        lines.append(f"| [{group.title}]({group.slug}.md) | {_cell(group.summary)} | {count} |")
    return "\n".join(lines) + "\n"
