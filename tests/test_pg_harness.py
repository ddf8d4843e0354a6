"""Smoke test for the PostgreSQL that scripts/test.sh provides via FACEID_TEST_PG_URL."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.postgres


@pytest.fixture
def smoke_pg_url() -> str:
    url = os.environ.get("FACEID_TEST_PG_URL")
    if not url:
        # Self-contained on purpose (not relying on another conftest): under CI a missing
        # database is a broken pipeline, not a reason to skip.
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail("FACEID_TEST_PG_URL is unset but CI=true", pytrace=False)
        pytest.skip("FACEID_TEST_PG_URL unset (run via scripts/test.sh to get a temp cluster)")
    return url


def test_select_one(smoke_pg_url):
    engine = create_engine(smoke_pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar_one() == 1
            assert conn.dialect.name == "postgresql"
    finally:
        engine.dispose()
