"""Architectural promises that are easy to break by accident."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _importers(paths: list[Path], package: str) -> list[str]:
    """The files among ``paths`` that import ``package`` or one of its modules."""
    offenders = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == package or n.startswith(package + ".") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
                break
    return offenders


def test_core_never_imports_streamlit() -> None:
    assert _importers(list((ROOT / "faceid").rglob("*.py")), "streamlit") == []


def test_pages_never_build_dataframes() -> None:
    # pandas stays in the service/export layer: pages render what the services return.
    pages = [ROOT / "dashboard.py", *(ROOT / "pages").glob("*.py")]
    assert _importers(pages, "pandas") == []
    # The check itself works: the service layer does import pandas.
    assert "faceid/review/case_view.py" in _importers(
        [ROOT / "faceid" / "review" / "case_view.py"], "pandas")


def test_importing_the_whole_core_does_not_load_streamlit() -> None:
    code = ("import pkgutil, importlib, sys, faceid\n"
            "for m in pkgutil.walk_packages(faceid.__path__, 'faceid.'):\n"
            "    if '.migrations' not in m.name and not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)\n"
            "print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_dashboard_lists_every_page_module() -> None:
    dashboard = (ROOT / "dashboard.py").read_text(encoding="utf-8")
    pages = [p.stem for p in (ROOT / "pages").glob("*.py") if not p.stem.startswith("_")]
    assert pages, "no pages"
    for stem in pages:
        assert stem in dashboard, f"pages/{stem}.py is not routed in dashboard.py"
    assert "st.navigation" in dashboard


def test_no_module_level_engine_in_core() -> None:
    for path in (ROOT / "faceid").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                func = node.value.func
                name = getattr(func, "id", getattr(func, "attr", ""))
                assert name not in ("create_engine", "make_engine", "memory_engine"), path


def test_secrets_file_is_not_tracked() -> None:
    out = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT)
    assert not [f for f in out.stdout.splitlines() if f.endswith("secrets.toml")]


# --------------------------------------------------------------------------- layering
#
# The package layering of docs/architecture.md (decision 26): each faceid package may import
# only the packages listed for it (its own modules always). A "unit" is a package under
# faceid/ or a top-level module (faceid.app, the dashboard's wiring; faceid.__main__); the
# bare "faceid" is the root package's own __init__. Every import counts wherever it is
# written: module level, inside a function, under ``if TYPE_CHECKING``.

LAYERS: dict[str, frozenset[str]] = {
    "faceid": frozenset(),
    "core": frozenset(),
    "api": frozenset({"core"}),
    "access": frozenset({"core"}),
    "store": frozenset({"core", "api", "access"}),
    "review": frozenset({"core", "api", "access", "store"}),
    "accounts": frozenset({"core", "access", "store"}),
    "reports": frozenset({"core", "api", "access", "store", "review"}),
    "app": frozenset({"core", "api", "access", "store", "review", "reports", "accounts"}),
    "cli": frozenset({"core", "api", "access", "store", "review", "reports", "accounts"}),
    "__main__": frozenset({"cli"}),
}

#: What the pages may import: the services they render and the vocabularies they show. Never
#: the database, the write path or the fetchers (a page goes through a service).
PAGES_MAY_IMPORT = frozenset({
    "faceid.access.actors", "faceid.access.permissions",
    "faceid.accounts.users",
    "faceid.api.vocab",
    "faceid.core.csvsafe", "faceid.core.errors", "faceid.core.timeutil",
    "faceid.reports.compare", "faceid.reports.export", "faceid.reports.insights",
    "faceid.reports.queries",
    "faceid.review.case_view", "faceid.review.decisions", "faceid.review.linking",
    "faceid.review.queue", "faceid.review.service",
    "faceid.store.export_lines", "faceid.store.summary",
})
#: dashboard.py builds the Desk, signs in and routes: the wiring and sign-in, nothing else.
DASHBOARD_MAY_IMPORT = frozenset({
    "faceid.access.actors", "faceid.accounts.auth", "faceid.accounts.sessions", "faceid.app",
    "faceid.core.config", "faceid.core.errors",
})


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _faceid_modules() -> dict[str, Path]:
    return {_module_of(p): p for p in sorted((ROOT / "faceid").rglob("*.py"))}


def imported_modules(source: str, importer: str, modules: Iterable[str], *,
                     is_package: bool = False) -> set[str]:
    """The faceid modules ``source`` (the text of module ``importer``) imports, wherever the
    import is. ``from a.b import c`` is the module ``a.b.c`` when that is a module, else ``a.b``
    (the package or module holding ``c``); relative imports are resolved."""
    known = set(modules)
    package = importer if is_package else importer.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m == "faceid" or m.startswith("faceid.")}


def import_graph() -> dict[str, set[str]]:
    """faceid module -> the faceid modules it imports."""
    modules = _faceid_modules()
    return {name: imported_modules(path.read_text(encoding="utf-8"), name, modules,
                                   is_package=path.name == "__init__.py")
            for name, path in modules.items()}


def unit(module: str) -> str:
    """``faceid.store.write`` -> ``store``; ``faceid.app`` -> ``app``; ``faceid`` -> ``faceid``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layering_violations(graph: Mapping[str, Iterable[str]],
                        layers: Mapping[str, frozenset[str]]) -> list[str]:
    """Every import from one unit into another that ``layers`` does not allow."""
    out = []
    for importer, imported in sorted(graph.items()):
        for target in sorted(imported):
            a, b = unit(importer), unit(target)
            if a != b and b not in layers.get(a, frozenset()):
                out.append(f"{importer} -> {target} ({a} may not import {b})")
    return out


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle between modules (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        todo = [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _declared_layers(package: Path) -> frozenset[str]:
    """The packages a package's __init__ docstring says it may import ("May import: ...")."""
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
    match = re.search(r"May import:(.*)", doc or "", re.DOTALL)
    assert match, f"{package.name}/__init__.py does not say what it may import"
    return frozenset(re.findall(r"faceid\.(\w+)", match.group(1)))


GRAPH = import_graph()


def test_every_unit_is_in_the_layering_table() -> None:
    assert {unit(m) for m in GRAPH} == set(LAYERS)


def test_each_package_says_what_it_may_import() -> None:
    for package in sorted(p.parent for p in (ROOT / "faceid").glob("*/__init__.py")):
        assert _declared_layers(package) == LAYERS[package.name], package.name


def test_packages_import_only_the_layers_below_them() -> None:
    assert layering_violations(GRAPH, LAYERS) == []


def test_no_import_cycle_between_faceid_modules() -> None:
    assert find_cycle(GRAPH) is None


def test_pages_and_dashboard_import_only_service_facing_modules() -> None:
    modules = list(GRAPH)
    for path in (ROOT / "pages").glob("*.py"):
        found = imported_modules(path.read_text(encoding="utf-8"), _module_of(path), modules)
        assert found <= PAGES_MAY_IMPORT, (path.name, sorted(found - PAGES_MAY_IMPORT))
    found = imported_modules((ROOT / "dashboard.py").read_text(encoding="utf-8"), "dashboard",
                             modules)
    assert found <= DASHBOARD_MAY_IMPORT, sorted(found - DASHBOARD_MAY_IMPORT)


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    """The checks above can fail: fed a synthetic upward arrow, they say so."""
    modules = list(GRAPH)
    # An upward import hidden in a function of the write path (store -> review).
    lazy = ("def f():\n"
            "    from faceid.review.service import ReviewService\n"
            "    return ReviewService\n")
    graph = {**GRAPH, "faceid.store.write": imported_modules(lazy, "faceid.store.write",
                                                              modules)}
    assert layering_violations(graph, LAYERS) == [
        "faceid.store.write -> faceid.review.service (store may not import review)"]
    # A relative import from the bottom layer is still an import (core -> api).
    rel = "from ..api import vocab\n"
    assert imported_modules(rel, "faceid.core.errors", modules) == {"faceid.api.vocab"}
    graph = {**GRAPH, "faceid.core.errors": imported_modules(rel, "faceid.core.errors", modules)}
    assert layering_violations(graph, LAYERS) == [
        "faceid.core.errors -> faceid.api.vocab (core may not import api)"]
    # An annotation-only import back from permissions to actors closes a cycle.
    typing_only = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                   "    from faceid.access.actors import Actor\n")
    graph = {**GRAPH, "faceid.access.permissions": imported_modules(
        typing_only, "faceid.access.permissions", modules)}
    assert layering_violations(graph, LAYERS) == []  # same package: only the cycle shows it
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert {"faceid.access.actors", "faceid.access.permissions"} <= set(cycle)
    # A page reaching past the services into the database.
    page = "from faceid.store.db import make_engine\n"
    assert not imported_modules(page, "pages.queue", modules) <= PAGES_MAY_IMPORT
