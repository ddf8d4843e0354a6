"""Who may do what: the one role → permission table every service checks with ``require``.

The table is deliberately explicit (no role inherits another implicitly): a reader — or an
auditor — can see every grant in one place, and ``tests/test_users.py`` pins the whole matrix,
so widening a role is a visible, reviewed change.

Reasons behind the less obvious cells:

* ``auditor`` checks the *process* (cases, decisions, timeline, chain) and never sees
  identities: no ``reveal_pii``, no unmasked export (same rule as
  ``faceid.access.pii.REVEAL_ROLES``).
* ``export`` (masked) is a bulk read: seniors, auditors and admins, not every reviewer — a
  reviewer works one case at a time and has no need to carry the queue away.
* ``export_unmasked`` is bulk PII: admin only (OWASP ASVS 14.2.6, data minimisation).
* ``second_review`` is the four-eyes check (ASVS 2.3.5): senior or admin, and never of a
  decision the same person made — see ``may_second_review``.
* ``purge`` and ``manage_users`` change what everyone else can see or do: admin only.

Every service checks here (``ReviewService``, ``InsightsService``, ``UserService``, the retention
purge); ``faceid.access.actors`` (``Actor.can``/``can_decide``/``is_senior``),
``faceid.access.pii.can_reveal`` and the dashboard's role-based menus
(``faceid.accounts.auth.PAGE_PERMISSIONS``) all derive from ``GRANTS``, so this table is the one
source of truth. Operations without a permission of their
own reuse the nearest one, and say so where they are checked:

* a note on a case and a fetch from FaceID (spends a read) are work on cases: ``decide`` /
  ``claim`` (the auditor stays strictly read-only);
* breaking another reviewer's claim is supervision: ``second_review``;
* the reports page (reviewer statistics, backlog) is a bulk view of the desk: ``export``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, TypeVar

from faceid.core.errors import FaceIDError, InvalidRole, PermissionDenied  # noqa: F401 - re-exported


class Subject(Protocol):
    """What the checks below read of whoever acts (``faceid.access.actors.Actor`` is one). A
    protocol rather than an import: ``actors`` derives its role helpers from this table, so
    importing ``Actor`` here, even only for annotations, would make the two modules a cycle."""

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


#: The actor type a check was given is the type it returns (an ``Actor`` stays an ``Actor``).
ActorT = TypeVar("ActorT", bound=Subject)


class Role(StrEnum):
    """The four roles. Values equal the strings stored in ``users.role`` and ``Actor.role``."""

    REVIEWER = "reviewer"
    SENIOR = "senior"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Permission(StrEnum):
    VIEW_CASE = "view_case"
    REVEAL_PII = "reveal_pii"
    CLAIM = "claim"
    DECIDE = "decide"
    SECOND_REVIEW = "second_review"
    EXPORT = "export"
    EXPORT_UNMASKED = "export_unmasked"
    MANAGE_USERS = "manage_users"
    PURGE = "purge"
    VERIFY_AUDIT = "verify_audit"


R, S, A, D = Role.REVIEWER, Role.SENIOR, Role.AUDITOR, Role.ADMIN

#: permission -> roles granted it. Anything not listed here is denied (fail closed).
GRANTS: dict[Permission, frozenset[Role]] = {
    Permission.VIEW_CASE: frozenset({R, S, A, D}),
    Permission.REVEAL_PII: frozenset({R, S, D}),
    Permission.CLAIM: frozenset({R, S, D}),
    Permission.DECIDE: frozenset({R, S, D}),
    Permission.SECOND_REVIEW: frozenset({S, D}),
    Permission.EXPORT: frozenset({S, A, D}),
    Permission.EXPORT_UNMASKED: frozenset({D}),
    Permission.MANAGE_USERS: frozenset({D}),
    Permission.PURGE: frozenset({D}),
    Permission.VERIFY_AUDIT: frozenset({A, D}),
}


def parse_role(value: str | Role) -> Role:
    """The Role called ``value`` (case and surrounding spaces ignored), else ``InvalidRole``."""
    try:
        return Role(str(value).strip().lower())
    except ValueError:
        raise InvalidRole(f"Unknown role {str(value)!r}: use one of "
                          f"{', '.join(r.value for r in Role)}.") from None


def _permission(permission: Permission | str) -> Permission:
    try:
        return Permission(permission)
    except ValueError:
        # A misspelt permission is a programming error; raising (not returning False) keeps
        # it from silently becoming "allowed" or "denied" everywhere it is used.
        raise ValueError(f"unknown permission {permission!r}") from None


def allowed(role: str | Role | None, permission: Permission | str) -> bool:
    """Whether ``role`` is granted ``permission``. Unknown roles are granted nothing."""
    perm = _permission(permission)
    try:
        r = Role(role) if role is not None else None
    except ValueError:
        return False
    return r is not None and r in GRANTS[perm]


def permissions_of(role: str | Role) -> frozenset[Permission]:
    return frozenset(p for p in Permission if allowed(role, p))


def require(actor: ActorT | None, permission: Permission | str) -> ActorT:
    """Return ``actor`` if its role grants ``permission``; raise ``PermissionDenied`` if not.

    ``None`` (nobody signed in) is denied everything.
    """
    perm = _permission(permission)
    if actor is None:
        raise PermissionDenied(f"Sign in to {perm.value.replace('_', ' ')}.",
                               permission=perm.value)
    if not allowed(actor.role, perm):
        raise PermissionDenied(
            f"The {actor.role} role may not {perm.value.replace('_', ' ')}.",
            permission=perm.value, role=actor.role)
    return actor


def _same_person(a: str, b: str) -> bool:
    # Usernames are stored lower-case (faceid.accounts.users); casefold anyway so a differently
    # cased spelling from another source (an import, a demo actor) cannot pass as someone else.
    return a.strip().casefold() == b.strip().casefold()


def may_second_review(actor: Subject | None, first_decided_by: str | None) -> bool:
    """Four-eyes rule: a senior/admin may second-review a decision made by *someone else*.

    ``first_decided_by`` is the username recorded on the decision under review; without one
    there is nothing to second-review, so the answer is no.
    """
    if actor is None or not first_decided_by:
        return False
    return allowed(actor.role, Permission.SECOND_REVIEW) and not _same_person(
        actor.username, first_decided_by)


def require_second_review(actor: ActorT | None, first_decided_by: str | None) -> ActorT:
    actor = require(actor, Permission.SECOND_REVIEW)
    if not first_decided_by:
        raise PermissionDenied("There is no first decision to review.",
                               permission=Permission.SECOND_REVIEW.value, role=actor.role)
    if _same_person(actor.username, first_decided_by):
        raise PermissionDenied("A decision must be second-reviewed by someone else.",
                               permission=Permission.SECOND_REVIEW.value, role=actor.role)
    return actor
