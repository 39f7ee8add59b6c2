"""The package's shape: public surfaces with `__all__`, private implementation modules, imports
that point down the layers (nothing below the CLI imports it, no import from the bottom of a
file), one home for the boundary checks, and a top level that imports its names lazily."""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import jaxdiff

ROOT = Path(jaxdiff.__file__).parent
SOURCES = sorted(ROOT.rglob("*.py"))
PACKAGES = sorted(
    name
    for _, name, is_pkg in pkgutil.walk_packages(jaxdiff.__path__, "jaxdiff.")
    if is_pkg and not name.split(".")[-1].startswith("_")
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    """The package a relative import in `path` starts from."""
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in `path`."""
    tree = ast.parse(path.read_text())
    package = package_of(path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((node.lineno, base))
            out.extend((node.lineno, f"{base}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
    return out


def test_every_public_package_has_an_all_that_resolves():
    assert {"jaxdiff.samplers", "jaxdiff.sde", "jaxdiff.processes", "jaxdiff.cli"} <= set(PACKAGES)
    for name in ["jaxdiff", *PACKAGES]:
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), f"{name} has no __all__"
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, f"{name}.__all__ names missing attributes: {missing}"


def test_implementation_modules_are_private():
    for path in SOURCES:
        if path.name != "__init__.py":
            assert path.stem.startswith("_"), f"{path.relative_to(ROOT)} is a public module"


def test_nothing_below_the_cli_imports_it():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in SOURCES
        if "cli" not in path.relative_to(ROOT).parts
        for line, mod in imported_modules(path)
        if mod == "jaxdiff.cli" or mod.startswith("jaxdiff.cli.")
    ]
    assert not offenders, f"library modules import the CLI: {offenders}"


def test_no_import_from_the_bottom_of_a_file():
    """Every module-level import comes before the first definition (no hidden cycles)."""
    for path in SOURCES:
        body = ast.parse(path.read_text()).body
        seen_code = False
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                assert not seen_code, f"{path.relative_to(ROOT)}:{node.lineno} imports late"
            elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
                seen_code = True


@pytest.mark.parametrize(
    "needle",
    [
        "core.Tracer",  # "is this traced": jaxdiff._checks.is_traced
        "operator.index(",  # counts: jaxdiff._checks.check_count
    ],
)
def test_checks_have_one_home(needle):
    homes = [p.relative_to(ROOT) for p in SOURCES if needle in p.read_text()]
    assert [str(h) for h in homes] in ([], ["_checks.py"]), f"{needle!r} written in {homes}"


def test_every_import_resolves_lazy_ones_included():
    """Imports inside functions run late: a name moved away would only fail when called."""
    broken = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            package = package_of(path)
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join([*anchor, node.module] if node.module else anchor)
            module = importlib.import_module(target)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{target}.{alias.name}")
                    except ImportError:
                        broken.append(f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}")
    assert not broken, f"imports of names that do not exist: {broken}"


def _type_checking_imports() -> dict[str, str]:
    """{public name: relative module} of the imports in the ``if TYPE_CHECKING:`` block of
    jaxdiff/__init__.py (a subpackage maps to itself, ``.sde``)."""
    tree = ast.parse((ROOT / "__init__.py").read_text())
    [block] = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    names = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1, ast.unparse(node)
        for alias in node.names:
            assert alias.asname == alias.name, ast.unparse(node)  # the re-export idiom
            names[alias.name] = f".{node.module}" if node.module else f".{alias.name}"
    return names


def test_the_lazy_top_level_matches_its_type_checking_imports():
    """jaxdiff/__init__.py names each public name twice: in the tables `__getattr__` imports
    from, and in the imports type checkers read. They must agree, and cover `__all__`."""
    lazy = dict.fromkeys(jaxdiff._SUBPACKAGES) | jaxdiff._ATTRIBUTES
    lazy = {name: module or f".{name}" for name, module in lazy.items()}
    assert lazy == _type_checking_imports()
    assert set(lazy) == set(jaxdiff.__all__)
    for name, module in lazy.items():
        target = importlib.import_module(module, "jaxdiff")
        expected = target if name in jaxdiff._SUBPACKAGES else getattr(target, name)
        assert getattr(jaxdiff, name) is expected, name
    assert set(jaxdiff.__all__) <= set(dir(jaxdiff))


def test_import_jaxdiff_imports_neither_jax_nor_a_subpackage():
    code = """if True:
        import sys
        import jaxdiff
        assert jaxdiff.__version__
        loaded = sorted(m for m in sys.modules if m == "jax" or m.startswith("jaxdiff."))
        assert not loaded, loaded
        # on first access, each from its module
        from jaxdiff import sample
        from jaxdiff.samplers._core import sample as core_sample
        assert sample is core_sample and jaxdiff.samplers.Heun
        namespace = {}
        exec("from jaxdiff import *", namespace)
        assert set(jaxdiff.__all__) <= set(namespace)
        try:
            jaxdiff.no_such_name
        except AttributeError as err:
            assert "no_such_name" in str(err)
        else:
            raise AssertionError("no AttributeError")
    """
    subprocess.run([sys.executable, "-c", code], check=True)
