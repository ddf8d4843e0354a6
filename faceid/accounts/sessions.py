"""When a signed-in dashboard session must sign in again: ``SessionPolicy``, the idle and
absolute expiry rule ``faceid.accounts.auth`` applies (pure: the caller passes the times),
configured from the environment or secrets.toml."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from faceid.core.config import load_secrets_file
from faceid.core.errors import ConfigError
from faceid.core.timeutil import as_utc

DEFAULT_IDLE_MINUTES = 30
DEFAULT_ABSOLUTE_HOURS = 12


def _int_setting(env: Mapping[str, str], secrets: Mapping[str, Any], var: str, section: str,
                 key: str, default: int | None) -> int | None:
    sect = secrets.get(section)
    raw = env.get(var) or (sect.get(key) if isinstance(sect, Mapping) else None)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{var} ([{section}] {key}) must be a whole number.") from None


#: A last_seen this far in the future is clock jitter between threads/hosts; further is not
#: trusted (fail closed).
_SKEW = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """When a signed-in dashboard session must sign in again.

    Defaults follow NIST SP 800-63B (rev. 3) AAL2: 30 minutes idle, 12 hours absolute. The
    absolute limit matters because Streamlit's OIDC identity cookie lasts 30 days and cannot be
    shortened (field notes): the app has to end sessions itself.
    """

    idle_minutes: int = DEFAULT_IDLE_MINUTES
    absolute_hours: int | None = DEFAULT_ABSOLUTE_HOURS

    def __post_init__(self) -> None:
        if self.idle_minutes < 1:
            raise ConfigError("The session idle timeout must be at least 1 minute.")
        if self.absolute_hours is not None and self.absolute_hours < 1:
            raise ConfigError("The absolute session lifetime must be at least 1 hour.")

    def is_expired(self, last_seen: datetime | None, now: datetime, *,
                   signed_in_at: datetime | None = None) -> bool:
        """True if the session must end. No ``last_seen`` (never seen) counts as expired."""
        seen, current = as_utc(last_seen), as_utc(now)
        assert current is not None
        if seen is None or seen - current > _SKEW:
            return True
        if current - seen >= timedelta(minutes=self.idle_minutes):
            return True
        start = as_utc(signed_in_at)
        return (self.absolute_hours is not None and start is not None
                and current - start >= timedelta(hours=self.absolute_hours))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 secrets: Mapping[str, Any] | None = None) -> SessionPolicy:
        """``FACEID_SESSION_IDLE_MINUTES`` / ``FACEID_SESSION_MAX_HOURS`` or secrets.toml
        ``[session] idle_minutes`` / ``max_hours``; environment wins."""
        env = os.environ if env is None else env
        secrets = load_secrets_file() if secrets is None else secrets
        idle = _int_setting(env, secrets, "FACEID_SESSION_IDLE_MINUTES", "session",
                            "idle_minutes", DEFAULT_IDLE_MINUTES)
        hours = _int_setting(env, secrets, "FACEID_SESSION_MAX_HOURS", "session", "max_hours",
                             DEFAULT_ABSOLUTE_HOURS)
        assert idle is not None
        return cls(idle, hours)
