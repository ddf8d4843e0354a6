"""Accounts, sign-in, OIDC mapping, the permission matrix and session expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from faceid.access import actors
from faceid.access.actors import Actor
from faceid.access.permissions import (
    GRANTS,
    InvalidRole,
    Permission,
    PermissionDenied,
    Role,
    allowed,
    may_second_review,
    parse_role,
    permissions_of,
    require,
    require_second_review,
)
from faceid.accounts.sessions import SessionPolicy
from faceid.accounts.users import (
    LastAdmin,
    PasswordRejected,
    UnknownUser,
    UserError,
    UserExists,
    UserService,
    cli_actor,
)
from faceid.core.errors import ConfigError, FaceIDError
from faceid.store import audit
from faceid.store.tables import AuditEvent, User

PASSWORD = "correct horse battery staple"
ADMIN = Actor("root.admin", "Root Admin", "admin")
ISS = "https://idp.example.com"


def cheap_hasher() -> PasswordHasher:
    # Production parameters cost 64 MiB per hash; the behaviour under test does not depend on them.
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def users(engine: Engine) -> UserService:
    return UserService(engine, cheap_hasher())


def audit_rows(engine: Engine) -> list[AuditEvent]:
    with Session(engine) as s:
        return list(s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all())


def user_row(engine: Engine, username: str) -> User:
    with Session(engine) as s:
        row = s.exec(select(User).where(User.username == username)).one()
        s.expunge(row)
        return row


# --------------------------------------------------------------------------- passwords


def test_default_hasher_is_argon2id_with_library_parameters(engine: Engine) -> None:
    hasher = UserService(engine).hasher
    assert hasher.type is Type.ID
    assert hasher.memory_cost >= 65536 and hasher.time_cost >= 3  # RFC 9106 low-memory profile


def test_password_is_hashed_and_never_stored_or_audited_in_clear(
        engine: Engine, users: UserService) -> None:
    users.add(ADMIN, "Alice", "reviewer", display_name="Alice A.", password=PASSWORD)
    row = user_row(engine, "alice")  # usernames are stored lower-case
    assert row.password_hash is not None and row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    dumped = " ".join(str(v) for v in row.model_dump().values())
    assert PASSWORD not in dumped
    users.set_password(ADMIN, "alice", PASSWORD + " 2")
    users.authenticate("alice", PASSWORD + " 2")
    users.authenticate("alice", "a wrong password!")
    new_hash = user_row(engine, "alice").password_hash
    assert new_hash and new_hash != row.password_hash
    for event in audit_rows(engine):
        text_ = f"{event.actor} {event.action} {event.detail}"
        assert "horse" not in text_ and "wrong password!" not in text_
        assert "$argon2" not in text_


def test_password_rules(users: UserService) -> None:
    with pytest.raises(PasswordRejected):
        users.add(ADMIN, "bob", "reviewer", password="short")
    with pytest.raises(PasswordRejected):
        users.add(ADMIN, "bobby", "reviewer", password="bobby-is-my-password")
    with pytest.raises(PasswordRejected):
        users.add(ADMIN, "bob", "reviewer", password="x" * 257)
    with pytest.raises(PasswordRejected) as exc:
        users.add(ADMIN, "bob", "reviewer", password="tiny")
    assert "tiny" not in str(exc.value)


def test_usernames_are_validated(users: UserService) -> None:
    for bad in ("", "has space", "cli:root", "demo.reviewer", "-dash", "a" * 129):
        with pytest.raises(UserError):
            users.add(ADMIN, bad, "reviewer", password=PASSWORD)
    users.add(ADMIN, "carol", "reviewer", password=PASSWORD)
    with pytest.raises(UserExists):
        users.add(ADMIN, " CAROL ", "senior", password=PASSWORD)


# --------------------------------------------------------------------------- sign-in


def test_authenticate_ok_wrong_disabled_unknown(engine: Engine, users: UserService) -> None:
    users.add(ADMIN, "alice", "senior", display_name="Alice", password=PASSWORD)
    actor = users.authenticate("Alice", PASSWORD)
    assert actor == Actor("alice", "Alice", "senior")
    assert users.authenticate("alice", PASSWORD + "x") is None
    assert users.authenticate("nobody", PASSWORD) is None
    assert users.authenticate("alice", "") is None
    users.disable(ADMIN, "alice")
    assert users.authenticate("alice", PASSWORD) is None
    assert users.current("alice") is None  # a signed-in session loses access at once
    users.enable(ADMIN, "alice")
    assert users.authenticate("alice", PASSWORD) == actor
    assert users.current("alice") == actor

    events = [(e.actor, e.action, e.detail) for e in audit_rows(engine)
              if e.action.startswith("login")]
    assert [a for _, a, _ in events] == ["login", "login.failed", "login.failed",
                                         "login.failed", "login.failed", "login"]
    assert '"reason": "wrong password"' in events[1][2]
    assert "nobody" not in events[2][2]  # unknown usernames are not written to the trail
    assert '"reason": "disabled"' in events[4][2]
    assert events[0][0] == "alice" and events[1][0] == "anonymous"


def test_unknown_user_costs_one_verification_like_a_wrong_password(engine: Engine) -> None:
    calls: list[str] = []

    class Counting(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
            calls.append("verify")
            return super().verify(hash, password)

    users = UserService(engine, Counting(time_cost=1, memory_cost=8, parallelism=1))
    users.add(ADMIN, "alice", "reviewer", password=PASSWORD)
    for name in ("alice", "nobody", "not a valid name!"):
        calls.clear()
        assert users.authenticate(name, "wrong-wrong-wrong") is None
        assert calls == ["verify"], name


def test_hash_is_upgraded_when_parameters_change(engine: Engine) -> None:
    weak = UserService(engine, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    weak.add(ADMIN, "alice", "reviewer", password=PASSWORD)
    old = user_row(engine, "alice").password_hash
    assert old and "m=8,t=1,p=1" in old
    stronger = UserService(engine, PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    assert stronger.authenticate("alice", PASSWORD) is not None
    new = user_row(engine, "alice").password_hash
    assert new and "m=16,t=2,p=1" in new
    assert stronger.authenticate("alice", PASSWORD) is not None
    assert [e.action for e in audit_rows(engine)].count("user.rehash") == 1
    # A failed attempt never rewrites the hash.
    assert stronger.authenticate("alice", "nope-nope-nope") is None
    assert user_row(engine, "alice").password_hash == new


# --------------------------------------------------------------------------- OIDC


def test_oidc_users_are_keyed_by_issuer_and_subject(users: UserService) -> None:
    # Two accounts for people who share an e-mail address (or one reused by the IdP): the
    # subject, not the address, tells them apart.
    users.add(ADMIN, "ann.smith", "reviewer", display_name="ann@example.com",
              oidc_iss=ISS, oidc_sub="sub-1")
    users.add(ADMIN, "ann.smith2", "auditor", display_name="ann@example.com",
              oidc_iss=ISS, oidc_sub="sub-2")
    assert users.resolve_oidc(ISS, "sub-1") == Actor("ann.smith", "ann@example.com", "reviewer")
    assert users.resolve_oidc(ISS, "sub-2") == Actor("ann.smith2", "ann@example.com", "auditor")
    assert users.resolve_oidc("https://other-idp.example.com", "sub-1") is None
    assert users.resolve_oidc(ISS, "ann@example.com") is None
    assert users.resolve_oidc(ISS, None) is None
    assert users.resolve_oidc(ISS + "/", "sub-1") is None  # issuers compare exactly
    with pytest.raises(UserExists):
        users.add(ADMIN, "someone.else", "admin", oidc_iss=ISS, oidc_sub="sub-1")
    users.disable(ADMIN, "ann.smith")
    assert users.resolve_oidc(ISS, "sub-1") is None


def test_oidc_users_have_no_local_password(users: UserService) -> None:
    with pytest.raises(UserError):
        users.add(ADMIN, "dan", "reviewer", password=PASSWORD, oidc_iss=ISS, oidc_sub="s")
    with pytest.raises(UserError):
        users.add(ADMIN, "dan", "reviewer", oidc_iss=ISS)  # subject missing
    with pytest.raises(UserError):
        users.add(ADMIN, "dan", "reviewer")  # no way to sign in
    users.add(ADMIN, "dan", "reviewer", oidc_iss=ISS, oidc_sub="s")
    assert users.authenticate("dan", "") is None
    with pytest.raises(UserError):
        users.set_password(ADMIN, "dan", PASSWORD)


# --------------------------------------------------------------------------- administration


def test_roles_are_validated(users: UserService) -> None:
    assert {r.value for r in Role} == set(actors.ROLES)
    assert parse_role(" Senior ") is Role.SENIOR
    with pytest.raises(InvalidRole):
        users.add(ADMIN, "eve", "superuser", password=PASSWORD)
    users.add(ADMIN, "eve", "reviewer", password=PASSWORD)
    with pytest.raises(InvalidRole):
        users.set_role(ADMIN, "eve", "root")
    assert users.set_role(ADMIN, "eve", "senior") is True
    assert users.set_role(ADMIN, "eve", "senior") is False
    assert users.authenticate("eve", PASSWORD) == Actor("eve", "eve", "senior")


def test_a_role_edited_by_hand_in_the_database_grants_nothing(
        engine: Engine, users: UserService) -> None:
    users.add(ADMIN, "mallory", "reviewer", password=PASSWORD)
    with engine.begin() as conn:
        conn.execute(text("UPDATE users SET role = 'superadmin' WHERE username = 'mallory'"))
    assert users.authenticate("mallory", PASSWORD) is None
    assert users.current("mallory") is None


def test_only_admins_manage_users(engine: Engine, users: UserService) -> None:
    users.add(ADMIN, "alice", "reviewer", password=PASSWORD)
    before = len(audit_rows(engine))
    for role in ("reviewer", "senior", "auditor"):
        someone = Actor(f"x.{role}", "X", role)
        with pytest.raises(PermissionDenied):
            users.add(someone, "newbie", "admin", password=PASSWORD)
        with pytest.raises(PermissionDenied):
            users.disable(someone, "alice")
        with pytest.raises(PermissionDenied):
            users.set_role(someone, "alice", "admin")
        with pytest.raises(PermissionDenied):
            users.set_password(someone, "alice", PASSWORD + "!")
        with pytest.raises(PermissionDenied):
            users.list_users(someone)
    assert len(audit_rows(engine)) == before
    # Anyone may set their own password.
    alice = users.authenticate("alice", PASSWORD)
    assert alice is not None
    users.set_password(alice, "alice", "a brand new passphrase")
    assert users.authenticate("alice", "a brand new passphrase") == alice


def test_last_enabled_admin_cannot_be_disabled_or_demoted(users: UserService) -> None:
    users.add(ADMIN, "boss", "admin", password=PASSWORD)
    with pytest.raises(LastAdmin):
        users.disable(ADMIN, "boss")
    with pytest.raises(LastAdmin):
        users.set_role(ADMIN, "boss", "reviewer")
    users.add(ADMIN, "boss2", "admin", password=PASSWORD)
    assert users.disable(ADMIN, "boss") is True
    with pytest.raises(LastAdmin):
        users.set_role(ADMIN, "boss2", "auditor")
    with pytest.raises(UnknownUser):
        users.disable(ADMIN, "ghost")


def test_every_change_is_audited_with_the_acting_admin(engine: Engine,
                                                       users: UserService) -> None:
    users.add(ADMIN, "alice", "reviewer", password=PASSWORD)
    users.disable(ADMIN, "alice")
    assert users.disable(ADMIN, "alice") is False  # no change, no event
    users.enable(ADMIN, "alice")
    users.set_role(ADMIN, "alice", "senior")
    users.set_password(ADMIN, "alice", PASSWORD + "?")
    users.add(ADMIN, "olga", "auditor", oidc_iss=ISS, oidc_sub="sub-9")
    events = audit_rows(engine)
    assert [(e.actor, e.action) for e in events] == [
        ("root.admin", "user.add"), ("root.admin", "user.disable"),
        ("root.admin", "user.enable"), ("root.admin", "user.role"),
        ("root.admin", "user.passwd"), ("root.admin", "user.add")]
    assert '"to": "senior"' in (events[3].detail or "")
    assert '"oidc_sub": "sub-9"' in (events[5].detail or "")
    with Session(engine) as s:
        assert audit.verify_chain(s).ok
    listed = users.list_users(ADMIN)
    assert [(u.username, u.role, u.auth, u.disabled) for u in listed] == [
        ("alice", "senior", "password", False), ("olga", "auditor", "oidc", False)]
    assert not any(hasattr(u, "password_hash") for u in listed)


def test_cli_actor_is_the_os_user_as_admin() -> None:
    actor = cli_actor()
    assert actor.username.startswith("cli:") and len(actor.username) > 4
    assert actor.role == "admin"


# --------------------------------------------------------------------------- permissions

P = Permission
#: The whole matrix, written out: a change to GRANTS must change this table too.
EXPECTED: dict[str, set[Permission]] = {
    "reviewer": {P.VIEW_CASE, P.REVEAL_PII, P.CLAIM, P.DECIDE},
    "senior": {P.VIEW_CASE, P.REVEAL_PII, P.CLAIM, P.DECIDE, P.SECOND_REVIEW, P.EXPORT},
    "auditor": {P.VIEW_CASE, P.EXPORT, P.VERIFY_AUDIT},
    "admin": set(Permission),
}


def test_permission_names_are_the_documented_ones() -> None:
    assert {p.value for p in Permission} == {
        "view_case", "reveal_pii", "claim", "decide", "second_review", "export",
        "export_unmasked", "manage_users", "purge", "verify_audit"}
    assert set(GRANTS) == set(Permission)


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_require_matches_the_matrix_for_every_permission(role: str) -> None:
    actor = Actor(f"someone.{role}", "Someone", role)
    for permission in Permission:
        if permission in EXPECTED[role]:
            assert require(actor, permission) is actor
            assert require(actor, permission.value) is actor  # plain strings work too
            assert allowed(role, permission)
        else:
            with pytest.raises(PermissionDenied) as exc:
                require(actor, permission)
            assert isinstance(exc.value, FaceIDError)
            assert exc.value.permission == permission.value and exc.value.role == role
            assert not allowed(role, permission)
    assert permissions_of(role) == EXPECTED[role]


def test_require_fails_closed() -> None:
    with pytest.raises(PermissionDenied):
        require(None, Permission.VIEW_CASE)
    assert not allowed("superuser", Permission.VIEW_CASE)
    assert not allowed(None, Permission.VIEW_CASE)
    with pytest.raises(ValueError):
        require(ADMIN, "delete_everything")


def test_pii_reveal_grants_agree_with_the_masking_module() -> None:
    from faceid.access import pii

    for role in Role:
        assert allowed(role, Permission.REVEAL_PII) == pii.can_reveal(role.value)


def test_second_review_is_senior_and_never_of_ones_own_decision() -> None:
    senior = Actor("sam", "Sam", "senior")
    admin = Actor("ada", "Ada", "admin")
    reviewer = Actor("rob", "Rob", "reviewer")
    auditor = Actor("aud", "Aud", "auditor")
    assert may_second_review(senior, "rob")
    assert may_second_review(admin, "sam")
    assert not may_second_review(senior, "sam")
    assert not may_second_review(senior, " SAM ")
    assert not may_second_review(admin, "ada")
    assert not may_second_review(reviewer, "sam")
    assert not may_second_review(auditor, "sam")
    assert not may_second_review(senior, None)
    assert not may_second_review(None, "rob")
    assert require_second_review(senior, "rob") is senior
    for actor, first in ((senior, "sam"), (reviewer, "sam"), (senior, None)):
        with pytest.raises(PermissionDenied):
            require_second_review(actor, first)


# --------------------------------------------------------------------------- sessions

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_session_idle_and_absolute_expiry() -> None:
    policy = SessionPolicy(idle_minutes=15, absolute_hours=8)
    assert not policy.is_expired(T0, T0)
    assert not policy.is_expired(T0, T0 + timedelta(minutes=14, seconds=59))
    assert policy.is_expired(T0, T0 + timedelta(minutes=15))
    assert policy.is_expired(None, T0)  # never seen: sign in again
    assert policy.is_expired(T0 + timedelta(minutes=5), T0)  # from the future: not trusted
    assert not policy.is_expired(T0 + timedelta(seconds=30), T0)  # small clock jitter is fine
    # Active all along, but past the absolute lifetime.
    late = T0 + timedelta(hours=8)
    assert policy.is_expired(late - timedelta(minutes=1), late, signed_in_at=T0)
    assert not policy.is_expired(late - timedelta(minutes=1), late - timedelta(seconds=1),
                                 signed_in_at=T0)
    # Naive datetimes are taken as UTC, as the rest of the desk does.
    assert not policy.is_expired(T0.replace(tzinfo=None), T0 + timedelta(minutes=1))


def test_session_policy_from_env_and_secrets() -> None:
    assert SessionPolicy.from_env({}, {}) == SessionPolicy(30, 12)
    assert SessionPolicy.from_env({"FACEID_SESSION_IDLE_MINUTES": "10"},
                                  {"session": {"idle_minutes": 5, "max_hours": 4}}) == \
        SessionPolicy(10, 4)
    with pytest.raises(ConfigError):
        SessionPolicy.from_env({"FACEID_SESSION_IDLE_MINUTES": "soon"}, {})
    with pytest.raises(ConfigError):
        SessionPolicy(0)
