"""Rules every part of ``ReviewService`` applies: how long a claim holds, how long a reveal
lasts, what a biz_id may be, and the permission check that raises the review's ``NotAllowed``."""

from __future__ import annotations

from datetime import datetime, timedelta

from faceid.access.actors import Actor
from faceid.access.permissions import Permission, PermissionDenied, require
from faceid.core.errors import NotAllowed, ReviewError
from faceid.core.timeutil import as_utc
from faceid.store.tables import Verification

BIZ_ID_MAX = 256
#: A claim older than this may be taken over by someone else (people go home).
CLAIM_TIMEOUT = timedelta(hours=8)
#: How long one audited reveal keeps a case's personal data visible to that actor.
REVEAL_WINDOW = timedelta(minutes=15)


def _clean_biz_id(biz_id: str) -> str:
    biz_id = (biz_id or "").strip()
    if not biz_id:
        raise ReviewError("Enter a biz_id.")
    if len(biz_id) > BIZ_ID_MAX or any(ord(c) < 32 for c in biz_id):
        raise ReviewError("That is not a valid biz_id (too long or contains control "
                          "characters).")
    return biz_id


def _claim_expired(v: Verification, now: datetime) -> bool:
    at = as_utc(v.claimed_at)
    return at is not None and now - at > CLAIM_TIMEOUT


def _require(actor: Actor | None, permission: Permission) -> Actor:
    """``permissions.require``, raising the review's ``NotAllowed`` (a ``PermissionDenied``)."""
    try:
        return require(actor, permission)
    except PermissionDenied as exc:
        raise NotAllowed(str(exc), permission=exc.permission, role=exc.role) from None
