"""The layering rules (docs/architecture.md, "Rooms"), checked on the AST of every module.

- No module of the core (tickcast/ outside tickcast/app), dataflows, models or api imports
  the composition root (tickcast.app).
- Only tickcast.app imports both dataflows and api.

Imports inside functions count as much as top-level ones: a lazy import is still wiring.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tickcast", "dataflows", "models", "api")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every absolute module name the file imports (relative imports resolved against it)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _modules() -> dict[str, set[str]]:
    return {
        _module_name(path): _imports(path) for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_walk_sees_the_project() -> None:
    modules = _modules()
    assert {"tickcast.app.cli", "tickcast.records", "dataflows.signals", "api.app", "models.registry"} <= set(modules)
    assert any(_is(name, "dataflows") for name in modules["tickcast.app.embedded"])


def test_nothing_below_the_composition_root_imports_it() -> None:
    offenders = {
        module: sorted(name for name in imported if _is(name, "tickcast.app"))
        for module, imported in _modules().items()
        if not _is(module, "tickcast.app")
    }
    assert {m: names for m, names in offenders.items() if names} == {}


def test_only_the_composition_root_imports_both_dataflows_and_api() -> None:
    both = [
        module
        for module, imported in _modules().items()
        if not _is(module, "tickcast.app")
        and any(_is(name, "dataflows") for name in imported)
        and any(_is(name, "api") for name in imported)
    ]
    assert both == []


def test_the_core_and_models_import_neither_dataflows_nor_api() -> None:
    offenders = {
        module: sorted(name for name in imported if _is(name, "dataflows") or _is(name, "api"))
        for module, imported in _modules().items()
        if (_is(module, "tickcast") and not _is(module, "tickcast.app")) or _is(module, "models")
    }
    assert {m: names for m, names in offenders.items() if names} == {}
