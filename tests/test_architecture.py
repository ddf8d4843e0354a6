"""Architectural promises that are easy to break by accident."""

from __future__ import annotations

import ast
import subprocess
import sys
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
