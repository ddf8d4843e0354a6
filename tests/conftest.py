"""Shared fixtures.

``engine`` runs every DB test on in-memory SQLite and, when ``FACEID_TEST_PG_URL`` names a
PostgreSQL database (scripts/test.sh starts a throwaway one), on PostgreSQL too. In CI
(``CI=true``) a missing PostgreSQL is a failure, not a skip: the suite promises both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from faceid.store import schema
from faceid.store.db import make_engine, memory_engine

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pg_url_or_skip() -> str:
    url = os.environ.get("FACEID_TEST_PG_URL")
    if not url:
        if IN_CI:
            pytest.fail("FACEID_TEST_PG_URL is not set in CI: the PostgreSQL run is required.")
        pytest.skip("PostgreSQL not available (set FACEID_TEST_PG_URL; scripts/test.sh does)")
    return url


@pytest.fixture
def pg_url() -> str:
    return pg_url_or_skip()


def reset_pg(engine: Engine) -> None:
    """Drop everything in the public schema so each test starts from nothing."""
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))


def empty_engine(kind: str, tmp_path: Path) -> Engine:
    """An engine on an empty database: ``memory`` (in-memory SQLite, one shared connection),
    ``file`` (a SQLite file: real locking, WAL) or ``postgres`` (the public schema dropped)."""
    if kind == "memory":
        return memory_engine()
    if kind == "file":
        return make_engine(f"sqlite:///{tmp_path}/desk.db")
    eng = make_engine(pg_url_or_skip())
    reset_pg(eng)
    return eng


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty schema on each backend."""
    eng = empty_engine(request.param, tmp_path)
    schema.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def mt_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """For multi-threaded tests: the in-memory engine shares ONE connection between threads,
    so these run on a SQLite file (real locking, WAL) and on PostgreSQL."""
    eng = empty_engine(request.param, tmp_path)
    schema.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine() -> Iterator[Engine]:
    eng = memory_engine()
    schema.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def hash_key() -> bytes:
    return b"test-pii-key"


@pytest.fixture
def page_success() -> bytes:
    return (FIXTURES / "page_success.json").read_bytes()


@pytest.fixture
def page_failure() -> bytes:
    return (FIXTURES / "page_failure.json").read_bytes()
