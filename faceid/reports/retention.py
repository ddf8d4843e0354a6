"""Retention: purge images and personal data older than the configured policy.

Why a configured policy and not a constant (field notes): KYC rules keep customer-due-diligence
records for at least 5 years, while GDPR art. 5 / PIPL art. 28 want biometric data kept no longer
than needed. Which period applies is the operator's legal decision, so:

* **Default: keep forever** (both limits ``None``). Purging is irreversible; it must be an explicit
  choice, never something a fresh install does on its own. ``python -m faceid purge`` says so.
* ``FACEID_RETAIN_IMAGES_DAYS`` / ``FACEID_RETAIN_PII_DAYS`` (environment) or secrets.toml
  ``[retention] images_days`` / ``pii_days``; the environment wins; ``"forever"``/empty = None.
* If a PII limit is set, the image limit must be set and not longer: ID-card images show the
  same name, number, address and birthday, so purging the text while keeping the pictures would
  only look like minimisation.

What a purge removes, by ``verifications.stored_at`` age:

* images: ``images.data`` → NULL and ``purged_at``; ``verifications.images_purged_at``. The
  sha256/size/mime rows stay (provenance: the raw response refers to them).
* PII: ``verifications.idcard_name``/``idcard_number`` → NULL, the values quoted in
  ``parse_flags`` under ``idcard_info``/``biz_info``, ``pii_purged_at``; and the raw response body
  rewritten once (the write-once trigger allows exactly one update, which must set
  ``purged_at``) with every card-derived value replaced by ``"[purged]"`` — see
  ``purge_document``.
* inbox bodies kept because they failed to parse (they hold images and PII) once older than the
  shorter limit. Unprocessed bodies are left alone: they are a crash's leftovers awaiting
  ``store.write.process_pending`` and are the only copy of that case.

``id_number_hash`` is **kept**: it is a keyed HMAC (not reversible without ``FACEID_PII_KEY``)
whose only use is linking one ID number's cases — the fraud signal ("this card was used by
another face") that the KYC retention period exists for. Minimisation is served by dropping the
number itself; destroying or rotating the key severs even that link for good.

Decisions, notes and the audit trail are kept (append-only by trigger, and they are the KYC
record). Free-text notes may quote personal data; they are outside this purge.

The purge pages through verifications by id in batches (one transaction each), so 100k cases
never sit in memory, and it is idempotent: what is purged is marked, and marked rows are skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, update
from sqlmodel import Session, col, select

from faceid.access.actors import Actor
from faceid.access.permissions import Permission, require
from faceid.api.rawdoc import IMAGE_REF_PREFIX
from faceid.core.config import load_secrets_file
from faceid.core.errors import ConfigError
from faceid.core.timeutil import iso, utcnow
from faceid.store import audit, export_lines
from faceid.store.tables import Inbox, RawResponse, StoredImage, Verification

PURGED = "[purged]"
DEFAULT_BATCH = 500
_FOREVER = ("", "none", "forever", "never")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days to keep images and personal data after a case is stored; None keeps forever."""

    images_days: int | None = None
    pii_days: int | None = None

    def __post_init__(self) -> None:
        for name, days in (("images_days", self.images_days), ("pii_days", self.pii_days)):
            if days is not None and (isinstance(days, bool) or days < 1):
                # 0 would purge every case the moment it is stored — almost surely a typo.
                raise ConfigError(f"Retention {name} must be at least 1 (or unset: forever).")
        if self.pii_days is not None and (self.images_days is None
                                          or self.images_days > self.pii_days):
            raise ConfigError(
                "Retention: images must be purged no later than PII (ID-card images show the "
                "same personal data). Set FACEID_RETAIN_IMAGES_DAYS <= FACEID_RETAIN_PII_DAYS.")

    @property
    def keeps_everything(self) -> bool:
        return self.images_days is None and self.pii_days is None

    def describe(self) -> str:
        def days(d: int | None) -> str:
            return "forever" if d is None else f"{d} days"
        return f"images kept {days(self.images_days)}, personal data kept {days(self.pii_days)}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 secrets: Mapping[str, Any] | None = None) -> RetentionPolicy:
        env = os.environ if env is None else env
        secrets = load_secrets_file() if secrets is None else secrets
        return cls(_days(env, secrets, "FACEID_RETAIN_IMAGES_DAYS", "images_days"),
                   _days(env, secrets, "FACEID_RETAIN_PII_DAYS", "pii_days"))


def _days(env: Mapping[str, str], secrets: Mapping[str, Any], var: str, key: str) -> int | None:
    sect = secrets.get("retention")
    raw: Any = env.get(var)
    if raw in (None, "") and isinstance(sect, Mapping):
        raw = sect.get(key)
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in _FOREVER):
        return None
    try:
        if isinstance(raw, (bool, float)):  # 1.5 days or true are not a policy
            raise ValueError
        return int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{var} ([retention] {key}) must be a whole number of days or "
                          "'forever'.") from None


@dataclass(frozen=True, slots=True)
class PurgeReport:
    dry_run: bool
    policy: RetentionPolicy
    images_cutoff: datetime | None
    pii_cutoff: datetime | None
    cases_images: int = 0  # verifications whose images were purged
    images: int = 0  # image rows purged
    cases_pii: int = 0  # verifications whose personal data was purged
    raw_responses: int = 0  # raw bodies rewritten
    inbox_bodies: int = 0  # unparseable inbox bodies dropped

    @property
    def total(self) -> int:
        return self.cases_images + self.images + self.cases_pii + self.raw_responses + \
            self.inbox_bodies

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int)
                and not isinstance(v, bool)}

    def detail(self) -> dict[str, Any]:
        """The audit detail: policy, cutoffs and counts — never a name, number or biz_id."""
        return {"images_days": self.policy.images_days, "pii_days": self.policy.pii_days,
                "images_cutoff": iso(self.images_cutoff) or None,
                "pii_cutoff": iso(self.pii_cutoff) or None, **self.counts()}

    def describe(self) -> str:
        verb = "Would purge" if self.dry_run else "Purged"
        if self.policy.keeps_everything:
            return ("No retention limit is configured (FACEID_RETAIN_IMAGES_DAYS / "
                    "FACEID_RETAIN_PII_DAYS): everything is kept; nothing purged.")
        lines = [f"Policy: {self.policy.describe()}."]
        if self.images_cutoff:
            lines.append(f"{verb} images of {self.cases_images} cases stored before "
                         f"{iso(self.images_cutoff)} ({self.images} images).")
        if self.pii_cutoff:
            lines.append(f"{verb} personal data of {self.cases_pii} cases stored before "
                         f"{iso(self.pii_cutoff)} ({self.raw_responses} raw responses).")
        lines.append(f"{verb} {self.inbox_bodies} unparseable inbox bodies.")
        return "\n".join(lines)


# --------------------------------------------------------------------------- document redaction

#: idcard_info keys that describe the capture, not the person.
_INFO_KEEP = frozenset({"idcard_mode", "idcard_mode_user", "idcard_uneditable_field",
                        "idcard_uneditable_feild"})
#: inside front_side/back_side, and inside each ocr_*_quality entry: scores, not values.
_SIDE_KEEP = frozenset({"upload_times"})
_OCR_KEEP = frozenset({"legality"})
_QUALITY_KEEP = frozenset({"quality", "logic"})


def _scrub(value: Any) -> Any:
    """Every scalar replaced by PURGED, structure kept (so a reader still sees which keys were
    there); None and booleans carry no personal data and stay."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    return PURGED


def _keep_only(d: Any, keep: frozenset[str]) -> Any:
    if not isinstance(d, dict):
        return _scrub(d)
    return {k: (v if k in keep else _scrub(v)) for k, v in d.items()}


def purge_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a stored raw response with its personal data replaced by ``"[purged]"``.

    An allow-list, not a deny-list: inside ``idcard_info`` only capture metadata, upload
    counts, legality scores and quality/logic scores survive; every other value — names,
    numbers, addresses, birthdays, gender, ethnicity (special-category data), validity dates,
    issuing office, and any field FaceID adds later — is purged. ``biz_extra_data`` is the
    integrator's free text (it may hold anything about the customer) and is purged when
    non-empty. ``images`` keep their ``sha256:`` references; an undecodable payload kept
    verbatim by the store is purged (it could be a picture). Scores elsewhere are untouched.
    """
    out = dict(doc)
    info = out.get("idcard_info")
    if info is not None:
        if isinstance(info, dict):
            new: dict[str, Any] = {}
            for key, value in info.items():
                if key in _INFO_KEEP:
                    new[key] = value
                elif key in ("front_side", "back_side") and isinstance(value, dict):
                    side = _keep_only(value, _SIDE_KEEP | {"ocr_result"})
                    if "ocr_result" in side:
                        side["ocr_result"] = _keep_only(side["ocr_result"], _OCR_KEEP)
                    new[key] = side
                elif key.startswith("ocr_") and key.endswith("_quality") and \
                        isinstance(value, dict):
                    new[key] = {k: _keep_only(v, _QUALITY_KEEP) for k, v in value.items()}
                else:
                    new[key] = _scrub(value)
            out["idcard_info"] = new
        else:
            out["idcard_info"] = _scrub(info)
    biz = out.get("biz_info")
    if isinstance(biz, dict) and biz.get("biz_extra_data") not in (None, ""):
        out["biz_info"] = {**biz, "biz_extra_data": PURGED}
    for key in ("images", "multifaces_image"):
        if key in out:
            out[key] = _purge_image_refs(out[key])
    return out


def _purge_image_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _purge_image_refs(v) for k, v in value.items()}
    if isinstance(value, str) and value and not value.startswith(IMAGE_REF_PREFIX):
        return PURGED
    return value


def purge_body(body: str) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        # Not a JSON object: we cannot tell what is personal in it, so nothing of it stays.
        return json.dumps({"purged": PURGED})
    return json.dumps(purge_document(doc), ensure_ascii=False)


_PII_FLAG_PATHS = ("idcard_info", "biz_info")


def purge_flags(flags: list[str] | None) -> list[str] | None:
    """Parse flags read ``path: problem (got VALUE)``; VALUE under idcard_info/biz_info can be
    a name or number, so it is cut off (the path and the problem stay: they are not PII)."""
    if not flags:
        return flags
    out = []
    for flag in flags:
        if isinstance(flag, str) and flag.startswith(_PII_FLAG_PATHS) and " (got " in flag:
            flag = flag[:flag.index(" (got ")] + " (got [purged])"
        out.append(flag)
    return out


# --------------------------------------------------------------------------- the purge


def purge(engine: Engine, policy: RetentionPolicy, actor: Actor, *, now: datetime | None = None,
          dry_run: bool = False, batch_size: int = DEFAULT_BATCH) -> PurgeReport:
    """Apply ``policy`` to everything stored before its cutoffs; see the module docstring.

    Needs the ``purge`` permission. A real run records one ``purge`` audit event with the counts
    (also when it fails part-way, with the counts so far); a dry run changes nothing at all.
    """
    require(actor, Permission.PURGE)
    now = now or utcnow()
    img_cut = now - timedelta(days=policy.images_days) if policy.images_days else None
    pii_cut = now - timedelta(days=policy.pii_days) if policy.pii_days else None
    # Inbox bodies hold both images and PII: they go at the shorter of the two limits.
    inbox_cut = max((c for c in (img_cut, pii_cut) if c is not None), default=None)
    counts = dict.fromkeys(("cases_images", "images", "cases_pii", "raw_responses",
                            "inbox_bodies"), 0)

    def report() -> PurgeReport:
        return PurgeReport(dry_run, policy, img_cut, pii_cut, **counts)

    if dry_run:
        with engine.connect() as conn:
            _count(conn, img_cut, pii_cut, inbox_cut, counts)
        return report()
    try:
        if img_cut is not None:
            _purge_images(engine, img_cut, now, batch_size, counts)
        if pii_cut is not None:
            _purge_pii(engine, pii_cut, now, batch_size, counts)
        if inbox_cut is not None:
            _purge_inbox(engine, inbox_cut, batch_size, counts)
    except Exception as exc:
        _audit(engine, actor, {**report().detail(), "error": type(exc).__name__})
        raise
    result = report()
    _audit(engine, actor, result.detail())
    return result


def _audit(engine: Engine, actor: Actor, detail: dict[str, Any]) -> None:
    with Session(engine) as s:
        audit.record(s, actor.username, "purge", None, detail)
        s.commit()


def _images_due(cutoff: datetime) -> Any:
    return and_(col(Verification.stored_at) < cutoff, col(Verification.images_purged_at).is_(None))


def _pii_due(cutoff: datetime) -> Any:
    return and_(col(Verification.stored_at) < cutoff, col(Verification.pii_purged_at).is_(None))


def _inbox_due(cutoff: datetime) -> Any:
    return and_(col(Inbox.received_at) < cutoff, col(Inbox.processed_at).is_not(None),
                col(Inbox.body).is_not(None))


def _count(conn: Connection, img_cut: datetime | None, pii_cut: datetime | None,
           inbox_cut: datetime | None, counts: dict[str, int]) -> None:
    """What a real run would purge now, by the same conditions, with COUNT queries."""
    def n(stmt: Any) -> int:
        return int(conn.execute(stmt).scalar_one())

    if img_cut is not None:
        due = select(Verification.id).where(_images_due(img_cut))
        counts["cases_images"] = n(select(func.count()).select_from(due.subquery()))
        counts["images"] = n(select(func.count()).select_from(StoredImage).where(
            col(StoredImage.verification_id).in_(due), col(StoredImage.purged_at).is_(None)))
    if pii_cut is not None:
        due = select(Verification.id).where(_pii_due(pii_cut))
        counts["cases_pii"] = n(select(func.count()).select_from(due.subquery()))
        counts["raw_responses"] = n(select(func.count()).select_from(RawResponse).where(
            col(RawResponse.verification_id).in_(due), col(RawResponse.purged_at).is_(None)))
    if inbox_cut is not None:
        counts["inbox_bodies"] = n(select(func.count()).select_from(Inbox)
                                   .where(_inbox_due(inbox_cut)))


def _paged(engine: Engine, table: Any, where: Any, batch_size: int,
           work: Callable[[Connection, list[int]], None]) -> None:
    """Call ``work(conn, ids)`` for pages of due row ids, ascending, one transaction per page.

    Keyset paging (id > last) rather than OFFSET: each page is committed before the next is
    read, so a crash keeps the pages done, and memory stays at one page whatever the table
    size. (A plain loop, not a generator: a generator holding an open transaction would keep
    it open while an exception propagates, and the failure audit below would wait on it.)
    """
    last = 0
    while True:
        with engine.begin() as conn:
            # Locked up front, in id order (PostgreSQL; SQLite serialises writers anyway): the
            # UPDATEs below would otherwise lock rows in scan order, and could deadlock with
            # another writer locking in id order (export_lines.refresh_lines).
            ids = list(conn.execute(select(table.id).where(where, table.id > last)
                                    .order_by(table.id).limit(batch_size)
                                    .with_for_update()).scalars())
            if not ids:
                return
            work(conn, ids)
        last = ids[-1]


def _purge_images(engine: Engine, cutoff: datetime, now: datetime, batch_size: int,
                  counts: dict[str, int]) -> None:
    def work(conn: Connection, ids: list[int]) -> None:
        counts["images"] += conn.execute(
            update(StoredImage)
            .where(col(StoredImage.verification_id).in_(ids), col(StoredImage.purged_at).is_(None))
            .values(data=None, purged_at=now)).rowcount
        counts["cases_images"] += conn.execute(
            update(Verification)
            .where(col(Verification.id).in_(ids), col(Verification.images_purged_at).is_(None))
            .values(images_purged_at=now)).rowcount

    _paged(engine, Verification, _images_due(cutoff), batch_size, work)


def _purge_pii(engine: Engine, cutoff: datetime, now: datetime, batch_size: int,
               counts: dict[str, int]) -> None:
    def work(conn: Connection, ids: list[int]) -> None:
        raws = conn.execute(select(RawResponse.id, RawResponse.body).where(
            col(RawResponse.verification_id).in_(ids), col(RawResponse.purged_at).is_(None)))
        for raw_id, body in raws.all():
            # The one update raw_responses allows: it must set purged_at (trigger-enforced).
            counts["raw_responses"] += conn.execute(
                update(RawResponse)
                .where(col(RawResponse.id) == raw_id, col(RawResponse.purged_at).is_(None))
                .values(body=purge_body(body), purged_at=now)).rowcount
        flagged = conn.execute(select(Verification.id, Verification.parse_flags).where(
            col(Verification.id).in_(ids), col(Verification.parse_flags).is_not(None)))
        for vid, flags in flagged.all():
            cleaned = purge_flags(flags)
            if cleaned != flags:
                conn.execute(update(Verification).where(col(Verification.id) == vid)
                             .values(parse_flags=cleaned))
        counts["cases_pii"] += conn.execute(
            update(Verification)
            .where(col(Verification.id).in_(ids), col(Verification.pii_purged_at).is_(None))
            .values(idcard_name=None, idcard_number=None, pii_purged_at=now)).rowcount
        # The update's trigger dropped these cases' export lines (they showed masked names).
        export_lines.keep_lines_fresh(conn, ids)

    _paged(engine, Verification, _pii_due(cutoff), batch_size, work)


def _purge_inbox(engine: Engine, cutoff: datetime, batch_size: int,
                 counts: dict[str, int]) -> None:
    def work(conn: Connection, ids: list[int]) -> None:
        counts["inbox_bodies"] += conn.execute(
            update(Inbox).where(col(Inbox.id).in_(ids)).values(body=None)).rowcount

    _paged(engine, Inbox, _inbox_due(cutoff), batch_size, work)
