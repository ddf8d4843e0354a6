"""Database tables (SQLModel). Base classes hold the fields; ``table=True`` classes add keys.

Write-once and append-only tables (``raw_responses``, ``decisions``, ``audit_events``) are
protected by database triggers (see ``faceid.store.triggers``), not only by code.
Times are timezone-aware UTC ``datetime`` (SQLModel's ``UTCDateTime`` refuses naive ones;
on SQLite they are stored as UTC without an offset).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint, func
from sqlmodel import Field, SQLModel


def _json_col() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


# --------------------------------------------------------------------------- verifications


class VerificationBase(SQLModel):
    biz_id: str = Field(max_length=256, unique=True, index=True)
    biz_no: str | None = Field(default=None, max_length=256, index=True)
    request_id: str | None = Field(default=None, max_length=256)
    status: str | None = Field(default=None, max_length=64, index=True)
    fail_reason: str | None = Field(default=None, max_length=64)
    procedure_type: str | None = Field(default=None, max_length=64, index=True)
    still_type: str | None = Field(default=None, max_length=64)
    #: PASS / FAIL / None (no liveness returned)
    liveness_result: str | None = Field(default=None, max_length=32, index=True)
    faceid_confidence: float | None = None
    #: Strictest threshold result_faceid passes ("1e-3".."1e-6"), "none" if below 1e-3.
    faceid_band: str | None = Field(default=None, max_length=16, index=True)
    idcard_photo_confidence: float | None = None
    datasource_confidence: float | None = None
    verify_error: str | None = Field(default=None, max_length=128)
    #: Comma-separated genuineness signals over threshold ("mask,screen_replay").
    genuineness_exceeded: str | None = Field(default=None, max_length=256)
    face_replaced: int | None = None
    id_attacked: int | None = None
    id_photo_monochrome: int | None = None
    multifaces: bool = False
    selfie_inconsistent: str | None = Field(default=None, max_length=8)
    selfie_metadata_inconsistent: str | None = Field(default=None, max_length=8)
    #: Comma-separated risk flags, derived at store time (see faceid.risk).
    risk_flags: str = Field(default="", max_length=512)
    risk_count: int = Field(default=0, index=True)
    idcard_name: str | None = Field(default=None, max_length=256)
    idcard_number: str | None = Field(default=None, max_length=64)
    #: HMAC-SHA256 of the normalised ID number: links one person's cases without the number.
    id_number_hash: str | None = Field(default=None, max_length=64, index=True)
    parse_flag_count: int = 0
    source: str = Field(default="api", max_length=16)  # api | import | notify
    verified_at: datetime | None = Field(default=None, index=True)
    stored_at: datetime = Field(index=True)
    #: Review state: pending | approved | rejected | escalated | reverify
    decision_state: str = Field(default="pending", max_length=32, index=True)
    decided_by: str | None = Field(default=None, max_length=128)
    decided_at: datetime | None = None
    assignee: str | None = Field(default=None, max_length=128, index=True)
    claimed_at: datetime | None = None
    #: Optimistic lock: bumped by every claim/release/decision.
    version: int = 1
    images_purged_at: datetime | None = None
    pii_purged_at: datetime | None = None


class Verification(VerificationBase, table=True):
    __tablename__ = "verifications"
    __table_args__ = (
        Index("ix_verifications_queue", "decision_state", "stored_at"),
        Index("ix_verifications_status_stored", "status", "stored_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    parse_flags: list[str] | None = _json_col()
    comparisons: list[dict[str, Any]] | None = _json_col()


def case_time() -> Any:
    """When a case happened, as SQL: FaceID's verify time, else when the desk stored it (a
    result without verify_time still has an age). The queue, the audit pages and linking all
    date cases by this one rule."""
    return func.coalesce(Verification.__table__.c.verified_at,
                         Verification.__table__.c.stored_at)


class RawResponse(SQLModel, table=True):
    """The response as received, images replaced by ``sha256:<hex>``. Write-once."""

    __tablename__ = "raw_responses"
    id: int | None = Field(default=None, primary_key=True)
    verification_id: int = Field(foreign_key="verifications.id", unique=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    #: sha256 of the complete original body (images included), for provenance.
    original_sha256: str = Field(max_length=64)
    original_size: int
    received_at: datetime
    #: Set once, by the retention purge, when PII in ``body`` is redacted (the only update the
    #: write-once trigger lets through).
    purged_at: datetime | None = None


class StoredImage(SQLModel, table=True):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("verification_id", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    verification_id: int = Field(foreign_key="verifications.id", index=True)
    kind: str = Field(max_length=32)
    sha256: str | None = Field(default=None, max_length=64)
    size: int = 0
    width: int | None = None
    height: int | None = None
    mime: str | None = Field(default=None, max_length=64)
    #: Why the image is unusable (bad base64, not a JPEG); data is then NULL.
    error: str | None = Field(default=None, max_length=256)
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    purged_at: datetime | None = None


class ExportLine(SQLModel, table=True):
    """One verification's masked CSV export line, rendered when the case was written.

    A cache, never the truth: triggers (``faceid.store.triggers``) delete the line whenever a column
    it shows changes or a decision is added, and a line whose ``renderer`` is not the running
    code's fingerprint is ignored. ``faceid.reports.export`` renders what is missing on the fly.
    """

    __tablename__ = "export_lines"
    verification_id: int = Field(foreign_key="verifications.id", primary_key=True,
                                 sa_column_kwargs={"autoincrement": False})
    #: Fingerprint of the code that rendered the line (``faceid.store.export_lines.renderer``).
    renderer: str = Field(max_length=32)
    #: The CSV record with its ``\r\n``, masked and formula-neutralised.
    line: str = Field(sa_column=Column(Text, nullable=False))


# --------------------------------------------------------------------------- fetching


class FetchAttempt(SQLModel, table=True):
    """The ledger: one row per get_result attempt, inserted before the request is sent.

    ``outcome`` stays NULL while the call is in flight; a NULL left by a crash counts as a
    spent read (we cannot know it did not reach FaceID).
    """

    __tablename__ = "fetch_attempts"
    id: int | None = Field(default=None, primary_key=True)
    biz_id: str = Field(max_length=256, index=True)
    attempt: int = 1
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = Field(default=None, max_length=64)
    http_status: int | None = None
    actor: str | None = Field(default=None, max_length=128)


class FetchJob(SQLModel, table=True):
    """The durable fetch queue: one row per biz_id anyone asked to fetch.

    Only the process holding a job's lease (``lease_owner`` until ``lease_until``) may call
    FaceID for that biz_id; a lease that is not renewed expires and the job can be claimed
    again (see ``faceid.store.fetchqueue``). Queue times are seconds since the epoch on the
    *database's* clock, so processes on machines with skewed clocks agree on who holds what.
    """

    __tablename__ = "fetch_jobs"
    __table_args__ = (Index("ix_fetch_jobs_claim", "state", "not_before"),)
    id: int | None = Field(default=None, primary_key=True)
    biz_id: str = Field(max_length=256, unique=True)
    #: queued | running | done | failed
    state: str = Field(max_length=16)
    #: Read again although stored (a person's explicit refetch).
    refetch: bool = False
    requested_by: str | None = Field(default=None, max_length=128)
    requested_at: float
    #: Runs started so far, and how many a request allows before the job fails for good.
    tries: int = 0
    max_tries: int = 1
    #: A retry waits until then (a callback's transient failure).
    not_before: float | None = None
    lease_owner: str | None = Field(default=None, max_length=128)
    lease_until: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: The last run's outcome (``faceid.store.fetch_outcomes.FetchOutcome``): status, code, message.
    last_status: str | None = Field(default=None, max_length=32)
    last_code: str | None = Field(default=None, max_length=64)
    last_http_status: int | None = None
    last_message: str | None = Field(default=None, max_length=1024)
    verification_id: int | None = None


class FetchSlot(SQLModel, table=True):
    """One of the deployment-wide FaceID request slots (``FACEID_MAX_CONCURRENCY`` rows in
    use): a request is sent only by a process holding a slot's lease, so all processes on all
    machines together never have more calls in flight than there are slots."""

    __tablename__ = "fetch_slots"
    slot: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    holder: str | None = Field(default=None, max_length=128)
    biz_id: str | None = Field(default=None, max_length=256)
    acquired_at: float | None = None
    lease_until: float | None = None


class Inbox(SQLModel, table=True):
    """Bodies as received (API answer, import file, callback) before they are parsed.

    Committed on receipt, so a crash between receiving and storing loses nothing; cleared
    (``body`` set NULL) once the verification is stored. A body that cannot be parsed stays,
    with ``error``, for a person to look at.
    """

    __tablename__ = "inbox"
    id: int | None = Field(default=None, primary_key=True)
    biz_id: str | None = Field(default=None, max_length=256, index=True)
    source: str = Field(max_length=16)  # api | import | notify
    origin: str | None = Field(default=None, max_length=1024)  # file path, peer address
    received_at: datetime
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    body_sha256: str = Field(max_length=64, index=True)
    processed_at: datetime | None = None
    error: str | None = Field(default=None, max_length=1024)
    #: The process (``leases.default_owner()`` form) that received the body, when it may
    #: leave it for a later run to finish: an import resumes only rows whose receiver is gone,
    #: never those of an import still running elsewhere.
    receiver: str | None = Field(default=None, max_length=128)


# --------------------------------------------------------------------------- review


class Decision(SQLModel, table=True):
    """Append-only; the case's state is its latest decision."""

    __tablename__ = "decisions"
    id: int | None = Field(default=None, primary_key=True)
    verification_id: int = Field(foreign_key="verifications.id", index=True)
    biz_id: str = Field(max_length=256)
    actor: str = Field(max_length=128)
    outcome: str = Field(max_length=32)  # approve | reject | escalate | reverify
    reason: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    decided_at: datetime
    #: The verification version the reviewer was looking at.
    based_on_version: int


class Note(SQLModel, table=True):
    __tablename__ = "notes"
    id: int | None = Field(default=None, primary_key=True)
    verification_id: int = Field(foreign_key="verifications.id", index=True)
    actor: str = Field(max_length=128)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained trail; also the case timeline."""

    __tablename__ = "audit_events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str = Field(max_length=128)
    action: str = Field(max_length=64, index=True)
    biz_id: str | None = Field(default=None, max_length=256, index=True)
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64, unique=True)


class User(SQLModel, table=True):
    __tablename__ = "users"
    # One account per OIDC identity, enforced by the database, not only by code.
    __table_args__ = (UniqueConstraint("oidc_iss", "oidc_sub"),)
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=128, unique=True, index=True)
    display_name: str | None = Field(default=None, max_length=256)
    role: str = Field(max_length=32)  # reviewer | senior | auditor | admin
    password_hash: str | None = Field(default=None, max_length=512)
    #: OIDC identity (issuer + subject), never the e-mail.
    oidc_iss: str | None = Field(default=None, max_length=512)
    oidc_sub: str | None = Field(default=None, max_length=256)
    disabled: bool = False
    created_at: datetime
