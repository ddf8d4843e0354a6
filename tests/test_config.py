from __future__ import annotations

import pytest

from faceid.core.config import DEFAULT_BASE_URL, load_settings
from faceid.core.errors import ConfigError


def test_no_credentials_means_demo_mode() -> None:
    s = load_settings(env={}, secrets={})
    assert s.demo and "demo" in s.mode_label
    assert s.base_url == DEFAULT_BASE_URL
    assert s.database_url == "sqlite:///data/faceid.db"


def test_secrets_section_and_env_precedence() -> None:
    secrets = {"faceid": {"api_key": "k", "api_secret": "from-file", "base_url":
                          "https://api-sgp.megvii.com"}, "database": {"url": "sqlite:///x.db"}}
    s = load_settings(env={"FACEID_API_SECRET": "from-env"}, secrets=secrets)
    assert not s.demo
    assert s.api_secret == "from-env" and s.api_key == "k"
    assert s.base_url == "https://api-sgp.megvii.com" and s.database_url == "sqlite:///x.db"
    assert "from-env" not in repr(s)


def test_root_level_secrets_are_ignored() -> None:
    # Root keys of secrets.toml become environment variables in Streamlit: not read here.
    assert load_settings(env={}, secrets={"api_key": "k", "api_secret": "s"}).demo


def test_live_mode_requires_pii_key() -> None:
    s = load_settings(env={"FACEID_API_KEY": "k", "FACEID_API_SECRET": "s"}, secrets={})
    with pytest.raises(ConfigError, match="FACEID_PII_KEY"):
        s.hash_key()


@pytest.mark.parametrize("env", [{"FACEID_BASE_URL": "http://api.megvii.com"},
                                 {"FACEID_MAX_CONCURRENCY": "zero"},
                                 {"FACEID_MAX_CONCURRENCY": "0"}])
def test_bad_settings_refused(env: dict) -> None:
    with pytest.raises(ConfigError):
        load_settings(env=env, secrets={})


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("0", False)])
def test_second_review_rejects_flag(raw: str, expected: bool) -> None:
    assert load_settings(env={"FACEID_SECOND_REVIEW_REJECTS": raw},
                         secrets={}).second_review_rejects is expected
    assert load_settings(env={}, secrets={"review": {"second_review_rejects": expected}}
                         ).second_review_rejects is expected


def test_bad_flag_refused() -> None:
    with pytest.raises(ConfigError):
        load_settings(env={"FACEID_SECOND_REVIEW_REJECTS": "maybe"}, secrets={})
