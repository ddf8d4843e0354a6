"""Every service operation, as every role, against ``faceid.access.permissions.GRANTS``.

The menus hide pages; this checks the layer below them: ``ReviewService``, a page's bound
``InsightsService``, ``faceid.reports.export.export_csv``, ``UserService`` and the retention purge
each allow exactly what the table grants and refuse the rest with ``PermissionDenied`` (or, for
the export module, its ``ExportRefused``). A guard test fails when a public method is added to
either service without being added here.
"""

from __future__ import annotations

import inspect
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, update
from sqlmodel import Session

from faceid.access.actors import Actor
from faceid.access.permissions import Permission, PermissionDenied, Role, allowed
from faceid.accounts.users import UserService
from faceid.api.simulator import generate_batch
from faceid.core.config import Settings
from faceid.reports import export
from faceid.reports.export import ExportRefused
from faceid.reports.insights import InsightsService
from faceid.reports.retention import RetentionPolicy, purge
from faceid.review.service import ReviewService
from faceid.store import schema
from faceid.store import write as store
from faceid.store.db import memory_engine
from faceid.store.tables import Verification
from tests.fakes import FakeFetcher

KEY = b"roles-test-key"
P = Permission
HELPER = Actor("helper.reviewer", "Helper", "reviewer")
HELPER_SENIOR = Actor("helper.senior", "Helper Senior", "senior")
_DOCS: list[dict[str, Any]] = []


def docs() -> list[dict[str, Any]]:
    if not _DOCS:
        _DOCS.extend(generate_batch(12, seed=21, status="OK"))
    return _DOCS


Op = Callable[[], Any]


def review_ops(engine: Engine, svc: ReviewService, a: Actor,
               ids: list[str]) -> list[tuple[str, Permission, Op]]:
    """(name, permission the table should require, call) for every ReviewService operation.
    Each call gets its own case, prepared by helper users so only the role decides."""
    c = iter(ids)
    nxt = lambda: next(c)  # noqa: E731

    def claimed_by(actor: Actor) -> str:
        biz = nxt()
        svc.claim(biz, actor, 1)
        return biz

    def escalated_by(actor: Actor) -> str:
        biz = claimed_by(actor)
        svc.decide(biz, actor, "escalate", "spoof_suspected", "please check", 2)
        return biz

    def claim() -> Any:
        return svc.claim(nxt(), a, 1)

    def release_own() -> Any:
        biz = claimed_by(a) if a.can(P.CLAIM) else claimed_by(HELPER)
        return svc.release(biz, a, 2)

    def release_others() -> Any:
        return svc.release(claimed_by(HELPER), a, 2)

    def decide() -> Any:
        biz = claimed_by(a) if a.can(P.CLAIM) else claimed_by(HELPER)
        return svc.decide(biz, a, "approve", None, None, 2)

    def second_review_claim() -> Any:
        return svc.claim(escalated_by(HELPER), a, 3)

    def second_review_decide() -> Any:
        # The claim is put on the case directly (as if taken before a role change): deciding
        # must check the second-review rule again by itself.
        biz = escalated_by(HELPER)
        with Session(engine) as s:
            s.execute(update(Verification).where(Verification.biz_id == biz)
                      .values(assignee=a.username))
            s.commit()
        return svc.decide(biz, a, "reject", "spoof_suspected", "confirmed", 3)

    def second_review_of_a_reject() -> Any:
        svc.second_review_rejects = True
        try:
            biz = claimed_by(HELPER)
            svc.decide(biz, HELPER, "reject", "face_mismatch", "other person", 2)
            return svc.claim(biz, a, 3)
        finally:
            svc.second_review_rejects = False

    first = ids[-1]
    return [
        ("queue", P.VIEW_CASE, lambda: svc.queue(actor=a)),
        ("counts", P.VIEW_CASE, lambda: svc.counts(a)),
        ("open_case", P.VIEW_CASE, lambda: svc.open_case(first, a)),
        ("lookup", P.VIEW_CASE, lambda: svc.lookup(first, a)),
        ("fetch_queue", P.VIEW_CASE, lambda: svc.fetch_queue(a)),
        ("reveal_pii", P.REVEAL_PII, lambda: svc.reveal_pii(first, a)),
        ("claim", P.CLAIM, claim),
        ("release (own claim)", P.CLAIM, release_own),
        ("release (another's claim)", P.SECOND_REVIEW, release_others),
        ("decide", P.DECIDE, decide),
        ("claim for second review", P.SECOND_REVIEW, second_review_claim),
        ("decide a second review", P.SECOND_REVIEW, second_review_decide),
        ("second review of a reject", P.SECOND_REVIEW, second_review_of_a_reject),
        ("add_note", P.DECIDE, lambda: svc.add_note(first, a, "a note")),
        ("next_case", P.CLAIM, lambda: svc.next_case(a)),
        ("fetch", P.CLAIM, lambda: svc.fetch(f"1760000000,fetched-by-{a.username}", a)),
    ]


def insights_ops(engine: Engine, a: Actor,
                 ids: list[str]) -> list[tuple[str, Permission, Op]]:
    svc = InsightsService(engine).for_actor(a)
    return [
        ("failure_summary", P.VIEW_CASE, svc.failure_summary),
        ("failure_details", P.VIEW_CASE, svc.failure_details),
        ("failures_by_day", P.VIEW_CASE, svc.failures_by_day),
        ("failed_cases", P.VIEW_CASE, svc.failed_cases),
        ("compare", P.VIEW_CASE, lambda: svc.compare(ids[:2])),
        ("best_frames", P.VIEW_CASE, lambda: svc.best_frames(ids[:2])),
        ("linked_cases", P.VIEW_CASE, lambda: svc.linked_cases(ids[0])),
        ("case_options", P.VIEW_CASE, lambda: svc.case_options(ids[0][:4], keep=ids[:1])),
        ("pass_rate", P.EXPORT, svc.pass_rate),
        ("decisions_by_reviewer", P.EXPORT, svc.decisions_by_reviewer),
        ("decision_latency", P.EXPORT, svc.decision_latency),
        ("backlog", P.EXPORT, svc.backlog),
        ("export_csv", P.EXPORT, lambda: svc.export_csv(io.BytesIO(), None, a)),
        ("export_bytes", P.EXPORT, lambda: svc.export_bytes(None, a)),
        ("export_count", P.EXPORT, lambda: svc.export_count(None, a)),
        ("export_bytes unmasked", P.EXPORT_UNMASKED,
         lambda: svc.export_bytes(None, a, unmasked=True)),
    ]


def admin_ops(engine: Engine, a: Actor) -> list[tuple[str, Permission, Op]]:
    users = UserService(engine, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    return [
        ("users.add", P.MANAGE_USERS,
         lambda: users.add(a, f"new-{a.role}", "reviewer", password="long enough password")),
        ("users.list_users", P.MANAGE_USERS, lambda: users.list_users(a)),
        ("retention.purge", P.PURGE,
         lambda: purge(engine, RetentionPolicy(images_days=3650), a, dry_run=True)),
        ("export.export_csv unmasked", P.EXPORT_UNMASKED,
         lambda: export.export_csv(engine, io.BytesIO(), None, a, unmasked=True)),
    ]


def outcome(fn: Op) -> bool:
    """True if the call was allowed, False if refused for the role; anything else fails."""
    try:
        fn()
    except (PermissionDenied, ExportRefused):
        return False
    return True


@pytest.fixture
def seeded(engine: Engine) -> list[str]:
    return [store.ingest(engine, json.dumps(d).encode(), source="import", hash_key=KEY).biz_id
            for d in docs()]


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_every_operation_as_every_role(role: str, engine: Engine, seeded: list[str]) -> None:
    a = Actor(f"someone.{role}", role.title(), role)
    svc = ReviewService(engine, FakeFetcher(engine, hash_key=KEY, seed=5), Settings(),
                        second_review_rejects=False)
    ops = (review_ops(engine, svc, a, seeded) + insights_ops(engine, a, seeded)
           + admin_ops(engine, a))
    wrong = [(name, perm.value, allowed(role, perm)) for name, perm, fn in ops
             if outcome(fn) != allowed(role, perm)]
    assert not wrong, f"{role}: (operation, permission, expected allowed) {wrong}"


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_masked_export_through_the_export_module(role: str, engine: Engine,
                                                 seeded: list[str]) -> None:
    a = Actor(f"someone.{role}", role.title(), role)
    got = outcome(lambda: export.export_csv(engine, io.BytesIO(), None, a))
    assert got == allowed(role, P.EXPORT)


def test_four_eyes_for_every_role(engine: Engine, seeded: list[str]) -> None:
    # Nobody second-reviews their own escalation, whatever their role.
    svc = ReviewService(engine, None, Settings())
    for n, role in enumerate(r.value for r in Role):
        a = Actor(f"self.{role}", role, role)
        if not a.can(P.DECIDE):
            continue
        biz = seeded[n]
        svc.claim(biz, a, 1)
        svc.decide(biz, a, "escalate", "other", "second opinion please", 2)
        assert not outcome(lambda b=biz, x=a: svc.claim(b, x, 3)), role


def test_unsigned_and_unbound_callers() -> None:
    # Nobody signed in: every bound insight and every review operation is refused.
    eng = memory_engine()
    schema.create_all(eng)
    nobody = InsightsService(eng).for_actor(None)
    for name in ("failure_summary", "pass_rate", "backlog", "failed_cases"):
        with pytest.raises(PermissionDenied):
            getattr(nobody, name)()
    with pytest.raises(PermissionDenied):
        ReviewService(eng, None, Settings()).queue(actor=None)  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):  # a page cannot export under someone else's name
        InsightsService(eng).for_actor(Actor("a", "A", "auditor")).export_bytes(
            None, Actor("b", "B", "admin"))


def test_may_export_unmasked_follows_the_table() -> None:
    svc = InsightsService.__new__(InsightsService)
    for role in Role:
        a = Actor("x", "X", role.value)
        assert svc.may_export_unmasked(a) == allowed(role, P.EXPORT_UNMASKED)


def _public(cls: type) -> set[str]:
    return {n for n, f in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


def test_every_public_service_method_is_covered() -> None:
    # A new service method must be added to the operation lists above (or here, with why).
    review = {"queue", "counts", "open_case", "lookup", "reveal_pii", "claim", "release",
              "decide", "add_note", "next_case", "fetch", "fetch_queue"}
    insights = {"failure_summary", "failure_details", "failures_by_day", "failed_cases",
                "compare", "best_frames", "linked_cases", "case_options", "pass_rate",
                "decisions_by_reviewer", "decision_latency", "backlog", "export_csv",
                "export_bytes", "export_count",
                # Not operations: the unmasked-offer question and the binding itself.
                "may_export_unmasked", "for_actor"}
    assert _public(ReviewService) == review
    assert _public(InsightsService) == insights
