"""Who is acting: the one identity type every service call takes.

Real sign-in (OIDC / local accounts, ``tables.User``) comes later; it will build an ``Actor``
and nothing downstream changes. Until then demo mode signs in one of the clearly labelled demo
users below, and live mode refuses to start the desk (fail closed, see ``dashboard.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: What each role may do. ``auditor`` reads everything but changes nothing on a case.
ROLES: dict[str, str] = {
    "reviewer": "Reviews pending cases: claim, decide, add notes.",
    "senior": "Reviewer who also handles escalated cases, overrides final decisions and can "
    "release another reviewer's claim.",
    "auditor": "Read-only: sees cases, decisions and the timeline; cannot claim or decide.",
    "admin": "Everything a senior can do.",
}

#: Roles allowed to claim and decide at all.
DECIDING_ROLES = frozenset({"reviewer", "senior", "admin"})
#: Roles allowed to work escalated cases, re-open final ones and break other people's claims.
SENIOR_ROLES = frozenset({"senior", "admin"})

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

    @property
    def can_decide(self) -> bool:
        return self.role in DECIDING_ROLES

    @property
    def is_senior(self) -> bool:
        return self.role in SENIOR_ROLES

    @property
    def label(self) -> str:
        return f"{self.display_name} ({self.role})"


#: Demo users. Two reviewers so a claim conflict can be tried by switching between them.
DEMO_ACTORS: tuple[Actor, ...] = (
    Actor("demo.reviewer", "Demo Reviewer", "reviewer"),
    Actor("demo.reviewer2", "Demo Reviewer 2", "reviewer"),
    Actor("demo.senior", "Demo Senior", "senior"),
    Actor("demo.auditor", "Demo Auditor", "auditor"),
)


def demo_actor(username: str | None = None) -> Actor:
    """The demo actor called ``username`` (default: the first reviewer)."""
    for actor in DEMO_ACTORS:
        if actor.username == username:
            return actor
    return DEMO_ACTORS[0]
