"""Local accounts and OIDC identities (``tables.User``), turned into ``Actor`` on sign-in.

* Passwords are hashed with argon2id (argon2-cffi's ``PasswordHasher``, RFC 9106 low-memory
  profile by default). The clear password is never stored, logged, audited or put in an
  exception; a hash made with older parameters is replaced on the next successful sign-in
  (``check_needs_rehash``), so raising the cost needs no password reset.
* ``authenticate`` verifies against a dummy hash when the user does not exist (or has no
  password), so the time taken does not tell an attacker which usernames exist.
* OIDC users are keyed on issuer + subject (field notes: never on e-mail, which the IdP may let
  a user change or reuse). ``resolve_oidc`` only maps an identity the admin registered; it never
  creates accounts (no self-enrolment into a role).
* Every change is audit-recorded in the same transaction as the change itself, with the acting
  admin as actor: ``user.add``, ``user.disable``, ``user.enable``, ``user.role``,
  ``user.passwd``, ``user.rehash``; sign-ins as ``login`` / ``login.failed``; session ends as
  ``logout`` with the reason (``faceid.accounts.auth`` calls ``record_logout``).
* ``SessionPolicy`` (``faceid.accounts.sessions``) is the idle/absolute expiry rule the
  dashboard applies to a signed-in session (pure: the caller passes the times).
"""

from __future__ import annotations

import getpass
import os
import re
import secrets as _secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from faceid.access.actors import DEMO_PREFIX, Actor
from faceid.access.permissions import Permission, Role, parse_role, require
from faceid.core.errors import (  # noqa: F401 - the user errors are re-exported from here
    FaceIDError,
    LastAdmin,
    PasswordRejected,
    UnknownUser,
    UserError,
    UserExists,
)
from faceid.core.timeutil import utcnow
from faceid.store import audit
from faceid.store.tables import User

#: ASVS 5.0 6.2.1 asks for at least 8 characters and recommends 15; 12 is our floor for
#: admin-issued passwords. The ceiling is generous (6.2.9: allow at least 64) but bounded so a
#: megabyte "password" cannot be used to make the server hash forever.
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
#: Lower-case, no spaces or colons: a username ends up in audit rows, CSV exports and the
#: "cli:" actor prefix, so it must not be confusable or contain separators.
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,127}$")
ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class UserInfo:
    """What may be shown about an account: never the hash."""

    username: str
    display_name: str | None
    role: str
    auth: str  # "password" | "oidc" | "none"
    disabled: bool
    created_at: datetime
    oidc_iss: str | None = None


def normalise_username(username: str) -> str:
    return (username or "").strip().lower()


def check_username(username: str) -> str:
    name = normalise_username(username)
    if not USERNAME_RE.fullmatch(name):
        raise UserError("A username is 1-128 characters: lower-case letters, digits and . _ @ -, "
                        "starting with a letter or digit.")
    if name.startswith(DEMO_PREFIX):
        # Actor.is_demo trusts the prefix; a real account must never be mistaken for a demo one.
        raise UserError(f"Usernames starting with {DEMO_PREFIX!r} are reserved for demo users.")
    return name


def check_password(password: str, username: str) -> None:
    """Length rules only (ASVS 6.2.5: no composition rules). Never echoes the password."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"A password may have at most {MAX_PASSWORD_LENGTH} characters.")
    if len(username) >= 3 and username.casefold() in password.casefold():
        raise PasswordRejected("A password must not contain the username.")


def _clean_display_name(value: str | None) -> str | None:
    if value is None:
        return None
    # Control characters would let a display name forge lines in logs or CSV exports.
    cleaned = "".join(ch for ch in value if ch.isprintable()).strip()
    return cleaned[:256] or None


def _info(u: User) -> UserInfo:
    auth = "password" if u.password_hash else ("oidc" if u.oidc_sub else "none")
    return UserInfo(u.username, u.display_name, u.role, auth, u.disabled, u.created_at,
                    u.oidc_iss)


def _actor(u: User) -> Actor | None:
    try:
        return Actor(u.username, u.display_name or u.username, u.role)
    except ValueError:
        # A role outside the four (edited in the database by hand): grant nothing.
        return None


# One dummy hash per parameter set, made on first use: hashing costs ~50 ms and 64 MiB, so it
# is not done at import time or per service instance.
_DUMMY: dict[tuple[Any, ...], str] = {}


def _dummy_hash(hasher: PasswordHasher) -> str:
    key = (hasher.time_cost, hasher.memory_cost, hasher.parallelism, hasher.hash_len,
           hasher.salt_len, hasher.type)
    if key not in _DUMMY:
        _DUMMY[key] = hasher.hash(_secrets.token_urlsafe(32))
    return _DUMMY[key]


class UserService:
    """User administration and sign-in against one engine.

    ``hasher`` is injectable so tests can use cheap parameters; production uses argon2-cffi's
    defaults (argon2id, t=3, m=64 MiB, p=4), which move with the library — and
    ``check_needs_rehash`` then upgrades stored hashes as people sign in.
    """

    def __init__(self, engine: Engine, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self.hasher = hasher or PasswordHasher()

    # ------------------------------------------------------------------ administration

    def add(self, actor: Actor, username: str, role: str | Role, *,
            display_name: str | None = None, password: str | None = None,
            oidc_iss: str | None = None, oidc_sub: str | None = None) -> UserInfo:
        """Create an account that signs in either with a password or with one OIDC identity.

        Exactly one method: an OIDC user with a local password as well would have a second,
        weaker door that bypasses the IdP's MFA and off-boarding.
        """
        require(actor, Permission.MANAGE_USERS)
        name = check_username(username)
        r = parse_role(role)
        oidc = bool(oidc_iss or oidc_sub)
        if oidc and not (oidc_iss and oidc_sub):
            raise UserError("An OIDC user needs both the issuer and the subject.")
        if oidc == (password is not None):
            raise UserError("Give a user either a password or an OIDC identity (one of them).")
        pw_hash = None
        if password is not None:
            check_password(password, name)
            pw_hash = self.hasher.hash(password)
        with Session(self.engine) as s:
            if s.exec(select(User.id).where(User.username == name)).first() is not None:
                raise UserExists(f"User {name!r} already exists.")
            if oidc and s.exec(select(User.id).where(User.oidc_iss == oidc_iss,
                                                     User.oidc_sub == oidc_sub)).first():
                raise UserExists("That OIDC identity (issuer + subject) is already linked "
                                 "to another user.")
            user = User(username=name, display_name=_clean_display_name(display_name),
                        role=r.value, password_hash=pw_hash, oidc_iss=oidc_iss or None,
                        oidc_sub=oidc_sub or None, disabled=False, created_at=utcnow())
            s.add(user)
            try:
                s.flush()
            except IntegrityError:
                # Someone added the same username between our check and insert.
                s.rollback()
                raise UserExists(f"User {name!r} already exists.") from None
            detail: dict[str, Any] = {"username": name, "role": r.value,
                                      "auth": "oidc" if oidc else "password"}
            if oidc:
                detail.update(oidc_iss=oidc_iss, oidc_sub=oidc_sub)
            audit.record(s, actor.username, "user.add", None, detail)
            s.commit()
            s.refresh(user)
            return _info(user)

    def disable(self, actor: Actor, username: str) -> bool:
        """Refuse sign-in from now on. Returns False if the user was already disabled."""
        return self._set_disabled(actor, username, True)

    def enable(self, actor: Actor, username: str) -> bool:
        return self._set_disabled(actor, username, False)

    def _set_disabled(self, actor: Actor, username: str, disabled: bool) -> bool:
        require(actor, Permission.MANAGE_USERS)
        with Session(self.engine) as s:
            user = self._get(s, username)
            if user.disabled == disabled:
                return False
            if disabled and user.role == Role.ADMIN:
                self._keep_an_admin(s, user)
            user.disabled = disabled
            s.add(user)
            audit.record(s, actor.username, "user.disable" if disabled else "user.enable", None,
                         {"username": user.username})
            s.commit()
            return True

    def set_role(self, actor: Actor, username: str, role: str | Role) -> bool:
        require(actor, Permission.MANAGE_USERS)
        r = parse_role(role)
        with Session(self.engine) as s:
            user = self._get(s, username)
            if user.role == r.value:
                return False
            if user.role == Role.ADMIN and not user.disabled:
                self._keep_an_admin(s, user)
            old, user.role = user.role, r.value
            s.add(user)
            audit.record(s, actor.username, "user.role", None,
                         {"username": user.username, "from": old, "to": r.value})
            s.commit()
            return True

    def set_password(self, actor: Actor, username: str, password: str) -> None:
        """An admin resets anyone's password; anyone may set their own.

        (A self-service screen must check the current password with ``authenticate`` first.)
        """
        name = normalise_username(username)
        if name != actor.username:
            require(actor, Permission.MANAGE_USERS)
        check_password(password, name)
        with Session(self.engine) as s:
            user = self._get(s, name)
            if user.oidc_sub and not user.password_hash:
                raise UserError(f"{user.username} signs in with OIDC and has no local password.")
            user.password_hash = self.hasher.hash(password)
            s.add(user)
            audit.record(s, actor.username, "user.passwd", None, {"username": user.username})
            s.commit()

    def list_users(self, actor: Actor) -> list[UserInfo]:
        require(actor, Permission.MANAGE_USERS)
        with Session(self.engine) as s:
            return [_info(u) for u in s.exec(select(User).order_by(col(User.username))).all()]

    # ------------------------------------------------------------------ sign-in

    def authenticate(self, username: str, password: str) -> Actor | None:
        """The Actor for a correct username + password of an enabled account, else None.

        Every path runs exactly one argon2 verification, so a wrong username costs the same as
        a wrong password. Every attempt is audited (``login`` / ``login.failed``); an unknown
        username is *not* written to the trail (it is often a password typed in the wrong box).
        """
        name = normalise_username(username)
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            password = ""  # still verified against the dummy below: same time, always fails
        with Session(self.engine) as s:
            user = (s.exec(select(User).where(User.username == name)).first()
                    if USERNAME_RE.fullmatch(name) else None)
            stored = user.password_hash if user is not None else None
            ok = self._verify(stored or _dummy_hash(self.hasher), password)
            actor: Actor | None = None
            if user is None:
                reason = "unknown user"
            elif stored is None:
                reason = "no local password"
            elif not ok:
                reason = "wrong password"
            elif user.disabled:
                reason = "disabled"
            else:
                actor = _actor(user)
                reason = "invalid role" if actor is None else ""
            if user is None or stored is None or actor is None:
                detail: dict[str, Any] = {"reason": reason}
                if user is not None:
                    detail["username"] = user.username
                audit.record(s, ANONYMOUS, "login.failed", None, detail)
                s.commit()
                return None
            if self.hasher.check_needs_rehash(stored):
                user.password_hash = self.hasher.hash(password)
                s.add(user)
                audit.record(s, user.username, "user.rehash", None, {"username": user.username})
            audit.record(s, user.username, "login", None, {"method": "password"})
            s.commit()
            return actor

    def resolve_oidc(self, iss: str | None, sub: str | None) -> Actor | None:
        """The Actor registered for this issuer + subject (exact match), else None.

        Called on every rerun by the dashboard, so it does not audit; the dashboard records
        one ``login`` per session with ``record_login``. Disabled users resolve to None, so a
        disable takes effect at the next rerun even though the IdP cookie lives 30 days.
        """
        if not iss or not sub:
            return None
        with Session(self.engine) as s:
            users = s.exec(select(User).where(User.oidc_iss == iss, User.oidc_sub == sub)
                           .limit(2)).all()
            # Two accounts on one identity cannot be told apart: refuse both (fail closed).
            if len(users) != 1 or users[0].disabled:
                return None
            return _actor(users[0])

    def current(self, username: str) -> Actor | None:
        """The Actor for an enabled account right now: re-check it on each request so a
        disable or role change applies to sessions already signed in."""
        name = normalise_username(username)
        with Session(self.engine) as s:
            user = s.exec(select(User).where(User.username == name)).first()
            return _actor(user) if user is not None and not user.disabled else None

    def record_login(self, actor: Actor, method: str = "oidc") -> None:
        with Session(self.engine) as s:
            audit.record(s, actor.username, "login", None, {"method": method})
            s.commit()

    def record_login_failed(self, method: str, reason: str,
                            detail: Mapping[str, Any] | None = None) -> None:
        """A refused sign-in that did not go through ``authenticate`` (an OIDC identity with
        no enabled account, a throttled attempt). Recorded as ``anonymous``: nobody is signed
        in. ``detail`` must not hold a password or a token (the callers pass iss/sub only)."""
        with Session(self.engine) as s:
            audit.record(s, ANONYMOUS, "login.failed", None,
                         {"method": method, "reason": reason, **(detail or {})})
            s.commit()

    def record_logout(self, actor: Actor, reason: str = "user") -> None:
        """End of a session: ``user`` (sign-out button), ``expired`` (idle/absolute limit),
        ``revoked`` (disabled, deleted or role changed while signed in)."""
        with Session(self.engine) as s:
            audit.record(s, actor.username, "logout", None, {"reason": reason})
            s.commit()

    # ------------------------------------------------------------------ helpers

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _get(s: Session, username: str) -> User:
        name = normalise_username(username)
        user = s.exec(select(User).where(User.username == name)).first()
        if user is None:
            raise UnknownUser(f"No user {name!r}.")
        return user

    @staticmethod
    def _keep_an_admin(s: Session, user: User) -> None:
        # FOR UPDATE (ignored on SQLite, where BEGIN IMMEDIATE already serialises writers)
        # stops two concurrent demotions on PostgreSQL from each seeing the other admin.
        admins = s.exec(select(User.id).where(User.role == Role.ADMIN.value,
                                              col(User.disabled).is_(False))
                        .with_for_update()).all()
        if len(admins) <= 1 and user.id in admins:
            raise LastAdmin(f"{user.username} is the last enabled admin.")


def cli_actor() -> Actor:
    """The actor for ``python -m faceid`` admin verbs: the OS user, prefixed ``cli:``.

    It is an admin because whoever can run the CLI against the database can already read and
    write it directly; what matters is that the audit trail says which OS account did it.
    """
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers) and no LOGNAME/USER
        who = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return Actor(f"cli:{who}", f"{who} (command line)", Role.ADMIN.value)
