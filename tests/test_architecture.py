"""The architecture, enforced (docs/architecture.md): which package may import which, no import
circles, no reaching into another package's private modules, and modules and functions small
enough to read in one sitting. Imports are read from the source (every ``import`` statement,
also inside functions), so an import hidden in a function counts like any other."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import nbmodels

SRC = Path(nbmodels.__file__).parent

BASE = (
    "errors",
    "_config",
    "_paths",
    "_redact",
    "_aio",
    "refs",
    "_progress",
    "_options",
    "_fserrors",
)
#: unit -> the units it may import (besides itself). A unit is a top-level module or package of
#: ``nbmodels``; ``api`` is ``nbmodels/__init__.py``. The table is the picture of
#: docs/architecture.md, bottom to top.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_config": {"errors"},
    "_paths": {"errors"},
    "_redact": {"errors"},
    "_aio": {"errors"},
    "refs": {"errors", "_redact"},
    "_progress": {"errors"},
    "_options": {"errors", "_paths", "_redact"},
    "_fserrors": {"errors", "_config"},
    "net": {*BASE},
    "transfer": {*BASE, "net"},
    "hub": {*BASE, "net"},
    "sources": {*BASE, "net", "transfer", "hub"},
    "archives": {*BASE},
    "cards": {*BASE, "net", "hub"},
    "cache": {*BASE, "net", "hub", "archives"},
    "engine": {*BASE, "net", "transfer", "hub", "sources", "archives"},
    "remote": {*BASE, "engine"},
    "api": {*BASE, "engine", "cards", "remote"},
    "cluster": {*BASE, "net", "transfer", "hub", "sources", "engine", "api"},
    "_present": {*BASE, "cards", "api"},
    "_flags": {*BASE, "api", "_present"},
    "cli": {*BASE, "net", "transfer", "hub", "sources", "archives", "cards", "cache", "engine",
            "api", "_present", "_flags", "server", "cluster"},
    "notebook": {*BASE, "net", "transfer", "hub", "sources", "archives", "cards", "cache",
                 "engine", "api", "_present", "_flags", "cluster"},
    "server": {*BASE, "net", "transfer", "hub", "sources", "archives", "cards", "cache", "engine",
               "api", "_present", "remote"},
    "testing": {"api", "engine", "errors"},
    "__main__": {"cli"},
}
#: Packages outside the core: they may be as long as they need to be read as a whole.
FRONT_ENDS = ("cli", "notebook", "server", "testing")
MAX_MODULE_LINES = 520
MAX_FUNCTION_LINES = 60


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _unit(module: str) -> str:
    parts = module.split(".")
    return "api" if len(parts) == 1 else parts[1]


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every nbmodels import in a file; ``from x import y`` counts
    ``x.y`` when that is a module."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("nbmodels")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("nbmodels"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                is_module = (SRC.parent / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    SRC.parent / Path(*sub.split(".")) / "__init__.py"
                ).exists()
                found.append((node.lineno, sub if is_module else target))
    return found


MODULES = _modules()


def test_the_table_itself_has_no_circle() -> None:
    """Following what each unit may import never leads back to it: no circle is possible."""

    def visit(unit: str, path: tuple[str, ...]) -> None:
        assert unit not in path, " -> ".join((*path, unit))
        for dep in ALLOWED[unit]:
            visit(dep, (*path, unit))

    for unit in ALLOWED:
        visit(unit, ())


def test_every_import_follows_the_table() -> None:
    wrong = []
    for module, path in MODULES:
        unit = _unit(module)
        assert unit in ALLOWED, f"{module}: a new unit; add it to the table and the docs"
        for line, target in _imports(module, path):
            dep = _unit(target)
            if dep != unit and dep not in ALLOWED[unit]:
                wrong.append(f"{path.relative_to(SRC)}:{line}: {unit} -> {dep} ({target})")
    assert wrong == []


def test_no_package_reaches_into_another_packages_private_modules() -> None:
    wrong = []
    for module, path in MODULES:
        for line, target in _imports(module, path):
            parts = target.split(".")
            if len(parts) >= 3 and parts[2].startswith("_") and _unit(target) != _unit(module):
                wrong.append(f"{path.relative_to(SRC)}:{line}: {target}")
    assert wrong == []


def test_modules_and_functions_are_short_in_the_core() -> None:
    long = []
    for module, path in MODULES:
        if _unit(module) in FRONT_ENDS:
            continue
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(SRC)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {n} lines")
    assert long == []


@pytest.mark.parametrize(
    "name",
    [
        m.name
        for m in pkgutil.walk_packages(nbmodels.__path__, "nbmodels.")
        if not m.name.endswith("__main__")
    ],
)
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)
