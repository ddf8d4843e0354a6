"""README stays true: every CLI verb and every export column is documented."""

from __future__ import annotations

from pathlib import Path

from faceid.cli.main import VERBS
from faceid.store.export_lines import EXPORT_COLUMNS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_cli_verb_is_in_the_readme() -> None:
    for verb in VERBS:
        assert f"`{verb}" in README, verb


def test_every_export_column_is_in_the_readme_in_order() -> None:
    positions = [README.index(f"| `{name}` |") for name, _ in EXPORT_COLUMNS]
    assert positions == sorted(positions)


def test_export_column_meanings_match_the_code() -> None:
    # The README table is what compliance reads: each row says what the code's list says.
    for name, meaning in EXPORT_COLUMNS:
        assert f"| `{name}` | {meaning} |" in README, name


def test_every_db_action_is_in_the_readme() -> None:
    import argparse

    from faceid.cli.commands import db

    parser = argparse.ArgumentParser()
    db.add_arguments(parser)
    (action,) = [a for a in parser._actions if a.dest == "action"]
    for choice in action.choices:
        assert f"`db {choice}`" in README, choice


def test_every_setting_is_in_the_readme() -> None:
    from faceid.core.config import _ENV

    for var in _ENV.values():
        assert f"| `{var}` |" in README, var


def test_two_commands_are_documented() -> None:
    assert "make run" in README and "make test" in README
