"""Who is acting: the one identity type every service call takes.

Sign-in (``faceid.accounts.auth``: OIDC by issuer + subject, or a local password account from
``tables.User``) builds an ``Actor``; demo mode signs in one of the clearly labelled demo users
below. What an actor may do is decided by its role in ``faceid.access.permissions.GRANTS`` only: the
helpers here ask that table, they hold no role lists of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from faceid.access.permissions import Permission, Role, allowed

#: What each role is for (shown to admins and in docs). The grants themselves live in
#: ``faceid.access.permissions.GRANTS``.
ROLES: dict[str, str] = {
    Role.REVIEWER.value: "Reviews pending cases: claim, decide, add notes, reveal personal data "
    "on one case (audited).",
    Role.SENIOR.value: "Reviewer who also does the second review (four eyes) of escalated "
    "cases — and of rejects when FACEID_SECOND_REVIEW_REJECTS=1 — never of their own "
    "decision; can release another reviewer's claim; sees reports and exports (masked).",
    Role.AUDITOR.value: "Read-only: sees cases, decisions, the timeline and reports, exports "
    "masked CSV; cannot claim, decide, note, fetch or reveal personal data.",
    Role.ADMIN.value: "Everything, plus user administration, retention purges and unmasked "
    "exports.",
}

DEMO_PREFIX = "demo."


@dataclass(frozen=True, slots=True)
class Actor:
    """A signed-in person. ``username`` is what the audit trail records."""

    username: str
    display_name: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")
        if not self.username:
            raise ValueError("an actor needs a username")

    @property
    def is_demo(self) -> bool:
        return self.username.startswith(DEMO_PREFIX)

    def can(self, permission: Permission | str) -> bool:
        """Whether this actor's role is granted ``permission`` (for showing/hiding controls;
        the services check again with ``faceid.access.permissions.require``)."""
        return allowed(self.role, permission)

    @property
    def can_decide(self) -> bool:
        return self.can(Permission.DECIDE)

    @property
    def is_senior(self) -> bool:
        """Senior in the review workflow: may do second reviews and break others' claims."""
        return self.can(Permission.SECOND_REVIEW)

    @property
    def label(self) -> str:
        return f"{self.display_name} ({self.role})"


#: Demo users. Two reviewers so a claim conflict can be tried by switching between them; a
#: senior for second reviews; an auditor (read-only); an admin (unmasked export).
DEMO_ACTORS: tuple[Actor, ...] = (
    Actor("demo.reviewer", "Demo Reviewer", "reviewer"),
    Actor("demo.reviewer2", "Demo Reviewer 2", "reviewer"),
    Actor("demo.senior", "Demo Senior", "senior"),
    Actor("demo.auditor", "Demo Auditor", "auditor"),
    Actor("demo.admin", "Demo Admin", "admin"),
)


def demo_actor(username: str | None = None) -> Actor:
    """The demo actor called ``username`` (default: the first reviewer)."""
    for actor in DEMO_ACTORS:
        if actor.username == username:
            return actor
    return DEMO_ACTORS[0]
