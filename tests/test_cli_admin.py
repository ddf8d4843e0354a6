"""``python -m faceid user|audit|purge`` against a temporary SQLite file (DATABASE_URL)."""

from __future__ import annotations

import argparse
import importlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from faceid.accounts.users import UserService
from faceid.api.simulator import generate_result
from faceid.cli import main as cli
from faceid.core.errors import FaceIDError
from faceid.core.timeutil import utcnow
from faceid.store import write as store
from faceid.store.db import make_engine
from faceid.store.tables import AuditEvent, User, Verification

PASSWORD = "a long enough passphrase"
MODULES = {"user": "user", "audit": "audit_cmd", "purge": "purge"}


def run_cli(verb: str, *argv: str) -> int:
    """Through ``faceid.cli.main`` once the verb is wired there; until then through the
    module's own parser, with the same error handling as ``main``."""
    if verb in cli.VERBS:
        return cli.main([verb, *argv])
    module = importlib.import_module(f"faceid.cli.commands.{MODULES[verb]}")
    parser = argparse.ArgumentParser(prog=f"python -m faceid {verb}")
    module.add_arguments(parser)
    try:
        return int(module.run(parser.parse_args(list(argv))) or 0)
    except FaceIDError as exc:
        print(f"error: {exc}")
        return 2


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "desk.db"
    monkeypatch.chdir(tmp_path)  # no stray .streamlit/secrets.toml from the working tree
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    for var in ("FACEID_NEW_PASSWORD", "FACEID_RETAIN_IMAGES_DAYS", "FACEID_RETAIN_PII_DAYS",
                "FACEID_API_KEY", "FACEID_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    yield path


@pytest.fixture
def engine_for(db: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{db}")
    yield eng
    eng.dispose()


def test_user_add_list_disable_enable(db: Path, engine_for: Engine,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FACEID_NEW_PASSWORD", PASSWORD)
    assert run_cli("user", "add", "alice", "--role", "reviewer",
                   "--display-name", "Alice A.") == 0
    assert run_cli("user", "add", "boss", "--role", "admin") == 0
    assert run_cli("user", "add", "olga", "--role", "auditor",
                   "--oidc-iss", "https://idp.example.com", "--oidc-sub", "s-1") == 0
    capsys.readouterr()
    assert run_cli("user", "list") == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert lines["alice"][:4] == ["alice", "reviewer", "password", "enabled"]
    assert lines["olga"][:4] == ["olga", "auditor", "oidc", "enabled"]
    assert "3 users" in out
    assert PASSWORD not in out and "$argon2" not in out

    users = UserService(engine_for)
    assert users.authenticate("alice", PASSWORD) is not None
    assert run_cli("user", "disable", "alice") == 0
    assert users.authenticate("alice", PASSWORD) is None
    capsys.readouterr()
    run_cli("user", "list")
    assert "disabled" in capsys.readouterr().out
    assert run_cli("user", "enable", "alice") == 0
    assert users.authenticate("alice", PASSWORD) is not None

    monkeypatch.setenv("FACEID_NEW_PASSWORD", "another long passphrase")
    assert run_cli("user", "passwd", "alice") == 0
    assert users.authenticate("alice", "another long passphrase") is not None
    assert run_cli("user", "role", "alice", "senior") == 0
    alice = users.current("alice")
    assert alice is not None and alice.role == "senior"

    with Session(engine_for) as s:
        events = list(s.exec(select(AuditEvent).where(col(AuditEvent.action)
                                                      .startswith("user."))).all())
        stored = s.exec(select(User).where(User.username == "alice")).one()
    assert [e.action for e in events] == ["user.add", "user.add", "user.add", "user.disable",
                                          "user.enable", "user.passwd", "user.role"]
    assert all(e.actor.startswith("cli:") for e in events)
    assert all(PASSWORD not in (e.detail or "") for e in events)
    assert stored.password_hash and PASSWORD not in stored.password_hash


def test_user_errors_exit_nonzero(db: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    # No FACEID_NEW_PASSWORD and no terminal (pytest's stdin): refuse, do not hang.
    assert run_cli("user", "add", "alice", "--role", "reviewer") == 2
    captured = capsys.readouterr()
    assert "FACEID_NEW_PASSWORD" in captured.out + captured.err
    monkeypatch.setenv("FACEID_NEW_PASSWORD", "short")
    assert run_cli("user", "add", "alice", "--role", "reviewer") == 2
    assert run_cli("user", "disable", "ghost") == 2
    with pytest.raises(SystemExit):  # there is no way to pass a password on the command line
        run_cli("user", "add", "bob", "--role", "reviewer", "--password", PASSWORD)
    with pytest.raises(SystemExit):
        run_cli("user", "add", "bob", "--role", "root")


def test_audit_verify_intact_then_tampered(db: Path, engine_for: Engine,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FACEID_NEW_PASSWORD", PASSWORD)
    for name in ("alice", "bob", "carol"):
        assert run_cli("user", "add", name, "--role", "reviewer") == 0
    capsys.readouterr()
    assert run_cli("audit", "verify") == 0
    assert "intact: 3 entries" in capsys.readouterr().out

    with Session(engine_for) as s:
        target = s.exec(select(AuditEvent).order_by(col(AuditEvent.id)).offset(1)).first()
        assert target is not None and target.id is not None
    engine_for.dispose()
    # Someone with file access gets past the trigger and rewrites an entry.
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError):
        conn.execute("UPDATE audit_events SET detail = 'x' WHERE id = ?", (target.id,))
    conn.execute("DROP TRIGGER audit_events_no_update")
    conn.execute("UPDATE audit_events SET detail = ? WHERE id = ?",
                 ('{"role": "admin", "username": "bob"}', target.id))
    conn.commit()
    conn.close()
    assert run_cli("audit", "verify") == 1
    out = capsys.readouterr().out
    assert f"BROKEN at entry id {target.id}" in out


def test_purge_dry_run_and_real_run(db: Path, engine_for: Engine,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str],
                                    hash_key: bytes) -> None:
    assert run_cli("purge", "--dry-run") == 0  # also creates the schema
    assert "nothing purged" in capsys.readouterr().out
    stored = store.ingest(engine_for, json.dumps(generate_result(7, status="OK")).encode(),
                          source="import", hash_key=hash_key)
    with engine_for.begin() as conn:
        conn.execute(update(Verification).where(col(Verification.id) == stored.verification_id)
                     .values(stored_at=utcnow() - timedelta(days=400)))
    monkeypatch.setenv("FACEID_RETAIN_IMAGES_DAYS", "30")
    monkeypatch.setenv("FACEID_RETAIN_PII_DAYS", "365")
    assert run_cli("purge", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "Would purge personal data of 1 cases" in out
    with Session(engine_for) as s:
        v = s.get(Verification, stored.verification_id)
        assert v is not None and v.pii_purged_at is None and v.idcard_name
    assert run_cli("purge") == 0
    assert "Purged personal data of 1 cases" in capsys.readouterr().out
    with Session(engine_for) as s:
        v = s.get(Verification, stored.verification_id)
        assert v is not None and v.pii_purged_at is not None and v.idcard_name is None
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "purge")).one()
        assert event.actor.startswith("cli:")
    monkeypatch.setenv("FACEID_RETAIN_PII_DAYS", "7")  # shorter than images: refused
    assert run_cli("purge") == 2


def test_verbs_work_through_cli_main(db: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The exact VERBS entries proposed for faceid/cli.py, through ``main`` (only these verbs,
    so the test does not depend on other verbs' modules existing yet)."""
    monkeypatch.setattr(cli, "VERBS", {
        "user": ("user", "manage local users and OIDC identities"),
        "audit": ("audit_cmd", "verify the audit trail's hash chain"),
        "purge": ("purge", "purge images and personal data past the retention policy"),
    })
    monkeypatch.setenv("FACEID_NEW_PASSWORD", PASSWORD)
    assert cli.main(["user", "add", "alice", "--role", "senior"]) == 0
    assert cli.main(["user", "list"]) == 0
    assert cli.main(["audit", "verify"]) == 0
    assert cli.main(["purge", "--dry-run"]) == 0
    assert cli.main(["user", "disable", "ghost"]) == 2  # FaceIDError: message, no traceback
    captured = capsys.readouterr()
    assert "alice" in captured.out and "intact" in captured.out
    assert "No user 'ghost'" in captured.err
