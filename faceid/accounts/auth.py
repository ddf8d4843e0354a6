"""Dashboard sign-in, without Streamlit: who is signed in, for how long, and on which pages.

``dashboard.py`` owns the widgets (password form, ``st.login``/``st.logout`` buttons); this
module owns the decisions, so they can be tested with a plain dict standing in for
``st.session_state`` (any ``MutableMapping`` works):

* **Methods.** OIDC when ``[auth]`` is configured in ``.streamlit/secrets.toml`` (users are
  resolved by issuer + subject with ``UserService.resolve_oidc``, never by e-mail; an identity
  with no enabled account is refused and audited ``login.failed``), otherwise local accounts
  with a password (``UserService.authenticate``, argon2, audited). Demo mode has no sign-in.
* **Re-checked on every rerun** (``SessionGate.current``): the account must still exist, be
  enabled and have the role the session started with, so a disable or a role change takes
  effect at the next click, not at the next sign-in.
* **Expiry.** ``sessions.SessionPolicy``: idle and absolute limits, tracked in the session
  (``last_seen`` is updated on every rerun, i.e. every user action). Streamlit's OIDC identity
  cookie lasts 30 days and cannot be shortened (field notes), so for OIDC the absolute limit
  counts from the identity token's ``auth_time``/``iat`` — a new tab cannot restart the clock —
  and after an expiry the session will not silently sign in again from the cookie: the user has
  to sign out of the IdP session (``st.logout``) and in again.
* **Audit.** ``login`` / ``login.failed`` (by ``UserService``), ``logout`` with the reason
  (``user``, ``expired``, ``revoked``).
* **Throttling.** After ``MAX_FAILURES`` wrong passwords for one username within
  ``FAILURE_WINDOW``, further attempts for it are refused without checking (audited
  ``login.failed``/``throttled``) until the window has passed: argon2 already makes each guess
  slow; this caps how many guesses one account can take (ASVS 6.3.1).
* **Menus.** ``PAGE_PERMISSIONS``: a page whose permission the role lacks is left out of
  ``st.navigation`` (and so cannot be reached by URL either); the services check again.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections import deque
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from faceid.access.actors import ROLES, Actor
from faceid.access.permissions import Permission
from faceid.accounts.sessions import SessionPolicy
from faceid.accounts.users import UserService, normalise_username
from faceid.core.timeutil import utcnow

#: Streamlit 1.67 needs ``Authlib>=1.3.2`` for ``st.login``; this is the pin we recommend.
AUTHLIB_MIN = (1, 3, 2)
AUTHLIB_REQUIREMENT = "Authlib==1.9.6"

#: Keys in the (Streamlit) session state. Leading underscores keep them apart from widget keys.
SESSION_KEY = "_faceid_session"
NOTICE_KEY = "_faceid_signin_notice"
#: Set after an OIDC session ended: do not sign in again from the identity cookie.
REAUTH_KEY = "_faceid_oidc_reauth"
#: The (iss, sub) whose refusal was already audited in this session (audit once, not per rerun).
REFUSED_KEY = "_faceid_oidc_refused"

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)

EXPIRED = "Your session expired (no activity, or the maximum session length was reached). " \
          "Sign in again."
REVOKED = "Your account was disabled or its role changed. Sign in again."
SIGNED_OUT = "You signed out."
WRONG = "Wrong username or password (or the account is disabled)."
THROTTLED = "Too many failed sign-ins for this account. Wait a few minutes and try again."
NOT_AUTHORISED = ("Your organisation account is not authorised for this desk. Ask an admin to "
                  "add it (python -m faceid user add … --oidc-iss … --oidc-sub …).")


class Method(StrEnum):
    PASSWORD = "password"  # noqa: S105 - the method's name, not a password
    OIDC = "oidc"


#: Dashboard page -> the permission a role needs to see it in the menu.
PAGE_PERMISSIONS: dict[str, Permission] = {
    "queue": Permission.VIEW_CASE,
    "case": Permission.VIEW_CASE,
    "audit": Permission.VIEW_CASE,
    "compare": Permission.VIEW_CASE,
    # Reviewer statistics, backlog and the CSV export: a bulk view of the desk.
    "reports": Permission.EXPORT,
    # Accounts and roles: admins only.
    "users": Permission.MANAGE_USERS,
}


def visible_pages(actor: Actor | None) -> list[str]:
    """The pages ``actor`` may see, in menu order (none for nobody)."""
    if actor is None:
        return []
    return [page for page, perm in PAGE_PERMISSIONS.items() if actor.can(perm)]


# --------------------------------------------------------------------------- OIDC config


def oidc_providers(auth_section: Mapping[str, Any] | None) -> list[str]:
    """Providers configured in secrets.toml ``[auth]``: ``["default"]`` for a single unnamed
    provider (``client_id`` in ``[auth]`` itself), else the names of ``[auth.<name>]`` sections
    that carry a ``client_id``. Empty: OIDC is not configured (password sign-in)."""
    if not isinstance(auth_section, Mapping) or not auth_section:
        return []
    if auth_section.get("client_id"):
        return ["default"]
    return [name for name, value in auth_section.items()
            if isinstance(value, Mapping) and value.get("client_id")]


def authlib_available() -> bool:
    """Whether an Authlib that ``st.login`` accepts is installed (checked without importing
    it: only the version matters here)."""
    try:
        version = importlib.metadata.version("authlib")
    except importlib.metadata.PackageNotFoundError:
        return False
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) >= AUTHLIB_MIN


def missing_authlib_message() -> str:
    return (f"Sign-in with your organisation account is configured ([auth] in "
            f".streamlit/secrets.toml), but Authlib is not installed, so nobody can sign in. "
            f"Install it (pip install {AUTHLIB_REQUIREMENT}) and restart the desk.")


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True)
class SignedIn:
    """What the session remembers about its user (no password, no token)."""

    username: str
    role: str
    method: str
    signed_in_at: datetime
    last_seen: datetime
    oidc_iss: str | None = None
    oidc_sub: str | None = None


class LoginThrottle:
    """Failed password sign-ins per username, process-wide (all sessions share it)."""

    def __init__(self, max_failures: int = MAX_FAILURES,
                 window: timedelta = FAILURE_WINDOW) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str, now: datetime) -> deque[datetime]:
        q = self._failures.setdefault(name, deque())
        while q and now - q[0] >= self.window:
            q.popleft()
        return q

    def blocked(self, username: str, now: datetime) -> bool:
        with self._lock:
            return len(self._recent(normalise_username(username), now)) >= self.max_failures

    def failed(self, username: str, now: datetime) -> None:
        with self._lock:
            self._recent(normalise_username(username), now).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(normalise_username(username), None)


def _claim_time(claims: Mapping[str, Any], now: datetime) -> datetime:
    """When the IdP authenticated the user: ``auth_time``, else ``iat``; ``now`` if neither is
    a sane unix time (a time in the future is not trusted either)."""
    for key in ("auth_time", "iat"):
        value = claims.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            try:
                at = datetime.fromtimestamp(float(value), tz=UTC)
            except (OverflowError, OSError, ValueError):
                continue
            return min(at, now)
    return now


def _same_identity(rec: SignedIn, claims: Mapping[str, Any] | None) -> bool:
    return bool(claims and claims.get("is_logged_in") and claims.get("iss") == rec.oidc_iss
                and claims.get("sub") == rec.oidc_sub)


class SessionGate:
    """Signs sessions in and out and re-checks them on every rerun. One per process."""

    def __init__(self, users: UserService, policy: SessionPolicy | None = None, *,
                 clock: Callable[[], datetime] = utcnow,
                 throttle: LoginThrottle | None = None) -> None:
        self.users = users
        self.policy = policy or SessionPolicy()
        self._now = clock
        self.throttle = throttle or LoginThrottle()

    # ------------------------------------------------------------------ every rerun

    def current(self, state: MutableMapping[str, Any],
                oidc_claims: Mapping[str, Any] | None = None) -> Actor | None:
        """The signed-in actor, re-checked now, with ``last_seen`` moved to now; None if
        nobody is signed in (after an expiry or revocation the session is cleared and
        ``state[NOTICE_KEY]`` says why).

        ``oidc_claims`` is ``st.user`` when OIDC is configured: an OIDC session must still
        be backed by the same logged-in identity (not one logged out or swapped since).
        """
        rec = state.get(SESSION_KEY)
        if not isinstance(rec, SignedIn):
            return None
        now = self._now()
        actor = self._recheck(rec)
        if rec.method == Method.OIDC and not _same_identity(rec, oidc_claims):
            actor = None
        if self.policy.is_expired(rec.last_seen, now, signed_in_at=rec.signed_in_at):
            self._end(state, rec, actor, "expired", EXPIRED)
            return None
        if actor is None:
            self._end(state, rec, None, "revoked", REVOKED)
            return None
        state[SESSION_KEY] = replace(rec, last_seen=now)
        return actor

    def _recheck(self, rec: SignedIn) -> Actor | None:
        if rec.method == Method.OIDC:
            actor = self.users.resolve_oidc(rec.oidc_iss, rec.oidc_sub)
        else:
            actor = self.users.current(rec.username)
        # Same person, same role: a role change ends the session (its menus and its claims
        # were granted under the old role).
        if actor is None or actor.username != rec.username or actor.role != rec.role:
            return None
        return actor

    def _end(self, state: MutableMapping[str, Any], rec: SignedIn, actor: Actor | None,
             reason: str, notice: str) -> None:
        # The trail names the session's user even if the account is gone or was demoted.
        who = actor
        if who is None and rec.role in ROLES:
            who = Actor(rec.username, rec.username, rec.role)
        if who is not None:
            self.users.record_logout(who, reason)
        # Everything goes: revealed-PII flags, filters, half-typed notes belong to the session.
        state.clear()
        state[NOTICE_KEY] = notice
        if rec.method == Method.OIDC:
            state[REAUTH_KEY] = True

    # ------------------------------------------------------------------ signing in / out

    def sign_in_password(self, state: MutableMapping[str, Any], username: str,
                         password: str) -> Actor | None:
        """Check the password (audited by ``UserService.authenticate``); start the session."""
        now = self._now()
        if self.throttle.blocked(username, now):
            self.users.record_login_failed(
                Method.PASSWORD.value, "throttled",
                {"username": normalise_username(username)[:128]})
            state[NOTICE_KEY] = THROTTLED
            return None
        actor = self.users.authenticate(username, password)
        if actor is None:
            self.throttle.failed(username, now)
            state[NOTICE_KEY] = WRONG
            return None
        self.throttle.succeeded(username)
        state.clear()
        state[SESSION_KEY] = SignedIn(actor.username, actor.role, Method.PASSWORD.value, now,
                                      now)
        return actor

    def sign_in_oidc(self, state: MutableMapping[str, Any],
                     claims: Mapping[str, Any]) -> Actor | None:
        """Map a logged-in OIDC identity (``st.user``) to its account and start the session.

        None when the identity has no enabled account (audited once per session), when this
        session already expired (``REAUTH_KEY``: sign out of the IdP session first), or when
        the identity token itself is older than the absolute session limit.
        """
        if state.get(REAUTH_KEY):
            return None
        iss, sub = claims.get("iss"), claims.get("sub")
        iss = iss if isinstance(iss, str) else None
        sub = sub if isinstance(sub, str) else None
        actor = self.users.resolve_oidc(iss, sub)
        if actor is None:
            if state.get(REFUSED_KEY) != (iss, sub):
                self.users.record_login_failed(Method.OIDC.value, "no enabled account",
                                               {"oidc_iss": iss, "oidc_sub": sub})
                state[REFUSED_KEY] = (iss, sub)
            state[NOTICE_KEY] = NOT_AUTHORISED
            return None
        now = self._now()
        started = _claim_time(claims, now)
        if self.policy.is_expired(now, now, signed_in_at=started):
            # A 30-day identity cookie from an old IdP login: not a fresh sign-in.
            state[REAUTH_KEY] = True
            state[NOTICE_KEY] = EXPIRED
            return None
        state[SESSION_KEY] = SignedIn(actor.username, actor.role, Method.OIDC.value, started,
                                      now, iss, sub)
        state.pop(NOTICE_KEY, None)
        self.users.record_login(actor, Method.OIDC.value)
        return actor

    def sign_out(self, state: MutableMapping[str, Any]) -> str | None:
        """End the session (audited ``logout``/``user``). Returns the method it used, so the
        dashboard knows to call ``st.logout()`` for OIDC."""
        rec = state.get(SESSION_KEY)
        if not isinstance(rec, SignedIn):
            state.clear()
            return None
        self._end(state, rec, self._recheck(rec), "user", SIGNED_OUT)
        return rec.method

    @staticmethod
    def notice(state: Mapping[str, Any]) -> str | None:
        value = state.get(NOTICE_KEY)
        return value if isinstance(value, str) else None
