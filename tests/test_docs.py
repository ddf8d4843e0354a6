"""README stays true: every CLI verb and every export column is documented."""

from __future__ import annotations

from pathlib import Path

from faceid.cli import VERBS
from faceid.export import EXPORT_COLUMNS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_cli_verb_is_in_the_readme() -> None:
    for verb in VERBS:
        assert f"`{verb}" in README, verb


def test_every_export_column_is_in_the_readme_in_order() -> None:
    positions = [README.index(f"| `{name}` |") for name, _ in EXPORT_COLUMNS]
    assert positions == sorted(positions)


def test_two_commands_are_documented() -> None:
    assert "make run" in README and "make test" in README
