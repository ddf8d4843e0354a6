"""Settings from the environment and ``.streamlit/secrets.toml``.

Precedence: environment variables win over secrets.toml, which wins over defaults. FaceID
credentials live in the ``[faceid]`` section of secrets.toml (root-level keys there would be
exported to the environment by Streamlit: field notes).

With no api_key/api_secret the desk runs in **demo mode** against the built-in simulator.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from faceid.core.errors import ConfigError

DEFAULT_BASE_URL = "https://api.megvii.com"
DEFAULT_DATABASE_URL = "sqlite:///data/faceid.db"
DEMO_API_KEY = "demo-key"
DEMO_API_SECRET = "demo-secret"  # noqa: S105 - the simulator's public demo credential


@dataclass(frozen=True)
class Settings:
    api_key: str | None = None
    api_secret: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    database_url: str = DEFAULT_DATABASE_URL
    #: Key for the keyed hash of ID numbers (links one person's cases without storing the
    #: number in clear for linking). Demo mode uses a fixed demo key.
    pii_key: str | None = field(default=None, repr=False)
    #: Process-wide cap on concurrent get_result calls.
    max_concurrency: int = 4
    timeout_s: float = 15.0
    #: Port of the notify_url callback receiver.
    notify_port: int = 8028
    #: Seconds a fetch job's or request slot's lease lasts without renewal: how soon the
    #: work of a killed process can be taken over (holders renew it every quarter).
    fetch_lease_s: float = 60.0
    #: Threads of the fetch worker the desk hosts (None: the cap in demo mode, 0 live, where
    #: the notify receiver or a ``worker`` process runs the queue).
    desk_workers: int | None = None
    #: A first-review reject waits for a senior's second review (four eyes on rejects too).
    second_review_rejects: bool = False
    #: A fetch worker stores its answers in a child process (None: auto, on PostgreSQL with
    #: two cores or more; see ``faceid.store.store_process``).
    store_process: bool | None = None

    @property
    def demo(self) -> bool:
        return not (self.api_key and self.api_secret)

    @property
    def mode_label(self) -> str:
        return "demo mode (built-in simulator)" if self.demo else "live (FaceID)"

    def hash_key(self) -> bytes:
        if self.pii_key:
            return self.pii_key.encode()
        if self.demo:
            return b"faceid-review-desk-demo-pii-key"
        raise ConfigError("FACEID_PII_KEY must be set in live mode (it keys the ID-number hash).")


_ENV = {
    "api_key": "FACEID_API_KEY",
    "api_secret": "FACEID_API_SECRET",
    "base_url": "FACEID_BASE_URL",
    "database_url": "DATABASE_URL",
    "pii_key": "FACEID_PII_KEY",
    "max_concurrency": "FACEID_MAX_CONCURRENCY",
    "timeout_s": "FACEID_TIMEOUT_S",
    "notify_port": "FACEID_NOTIFY_PORT",
    "fetch_lease_s": "FACEID_FETCH_LEASE_S",
    "desk_workers": "FACEID_DESK_WORKERS",
    "second_review_rejects": "FACEID_SECOND_REVIEW_REJECTS",
    "store_process": "FACEID_STORE_PROCESS",
}
# Where each setting lives in secrets.toml: (section, key).
_SECRETS = {
    "api_key": ("faceid", "api_key"),
    "api_secret": ("faceid", "api_secret"),
    "base_url": ("faceid", "base_url"),
    "pii_key": ("faceid", "pii_key"),
    "max_concurrency": ("faceid", "max_concurrency"),
    "timeout_s": ("faceid", "timeout_s"),
    "notify_port": ("faceid", "notify_port"),
    "fetch_lease_s": ("faceid", "fetch_lease_s"),
    "desk_workers": ("faceid", "desk_workers"),
    "store_process": ("faceid", "store_process"),
    "second_review_rejects": ("review", "second_review_rejects"),
    "database_url": ("database", "url"),
}


def load_secrets_file(path: str | Path = ".streamlit/secrets.toml") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None


def load_settings(
    env: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
) -> Settings:
    """Build Settings. ``secrets`` defaults to reading ``.streamlit/secrets.toml``."""
    env = os.environ if env is None else env
    secrets = load_secrets_file() if secrets is None else secrets
    values: dict[str, Any] = {}
    for name, var in _ENV.items():
        section, key = _SECRETS[name]
        sect = secrets.get(section)
        value = env.get(var) or (sect.get(key) if isinstance(sect, Mapping) else None)
        if value not in (None, ""):
            values[name] = value
    try:
        for name in ("max_concurrency", "notify_port", "desk_workers"):
            if name in values:
                values[name] = int(values[name])
        for name in ("timeout_s", "fetch_lease_s"):
            if name in values:
                values[name] = float(values[name])
        if "second_review_rejects" in values:
            values["second_review_rejects"] = _flag(values["second_review_rejects"])
        if "store_process" in values:
            values["store_process"] = (None if str(values["store_process"]).lower() == "auto"
                                       else _flag(values["store_process"]))
    except ValueError as exc:
        raise ConfigError(f"A numeric setting is not a number: {exc}") from None
    settings = Settings(**values)
    check_base_url(settings.base_url)
    if settings.max_concurrency < 1:
        raise ConfigError("FACEID_MAX_CONCURRENCY must be at least 1.")
    if settings.fetch_lease_s < 1:
        raise ConfigError("FACEID_FETCH_LEASE_S must be at least 1 second.")
    if settings.desk_workers is not None and settings.desk_workers < 0:
        raise ConfigError("FACEID_DESK_WORKERS must be 0 or more.")
    return settings


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"Expected 1/0 or true/false, got {value!r}.")


def check_base_url(url: str) -> str:
    """Refuse plain http except to loopback: the api_secret travels in the query string."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"FaceID base URL must be an http(s) URL, got {url!r}.")
    if parts.query or parts.username or parts.password:
        raise ConfigError("FaceID base URL must not carry a query string or credentials.")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            "Plain http:// is refused for a remote FaceID host: the api_secret would travel in "
            "clear. Use https://, or http:// only to 127.0.0.1/localhost (the simulator)."
        )
    return url.rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
