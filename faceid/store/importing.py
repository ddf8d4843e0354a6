"""Import saved get_result responses (files or folders) into the store.

Accepted, per document:
- a get_result response as FaceID sent it (what ``fetch`` would have stored);
- a notify_url callback saved as JSON ``{"data": "<json string>", "sign": "..."}`` or as the
  form-encoded body ``data=...&sign=...``: the ``data`` string is unwrapped and stored. The
  ``sign`` is not checked here: it proves FaceID sent the callback to our endpoint, and a file on
  disk is trusted as far as the operator importing it (the audit trail names that operator and
  the file). Live callbacks are verified by ``faceid.notify``.

Files: any file named on the command line is read whatever its extension; folders are walked
recursively (sorted, symlinks not followed) for ``*.json``, ``*.jsonl`` and ``*.form``. A
``.jsonl`` file holds one document per line (refusals are reported as ``PATH:LINE: reason``).
Files are read one at a time, and JSONL line by line, into batches bounded by count and bytes,
so a large folder never sits in memory.

Per batch (decision 24): each document is decoded (JSON, callback unwrapped) and its biz_id
read; one query drops those already stored *before* anything is written (no inbox row, no
audit entry), so importing the same folder twice changes nothing and costs little more than
reading it. The rest go to ``store.ingest_many``: their bodies are committed to the inbox in
one transaction before the full parse (images, JPEG checks), then stored in one more. A crash
loses nothing committed: the next import first finishes what the inbox holds, then skips what
is stored.

Reading and decoding the files is ``faceid.store.import_files``; this module batches and stores.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from typing import Any

from sqlalchemy import Engine

from faceid.api.parse import parse_document
from faceid.core.errors import DocumentError
from faceid.core.timeutil import utcnow
from faceid.store import leases
from faceid.store import write as store
from faceid.store.import_files import Document, Refusal, _documents, decode

log = logging.getLogger(__name__)

#: A batch is stored in one transaction once it holds this many documents or bytes of bodies,
#: whichever comes first. Past ~100 documents a bigger batch no longer pays (bench/README.md),
#: and the byte bound keeps memory flat when the files are large.
BATCH_DOCS = 500
BATCH_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class ImportReport:
    imported: int = 0
    already_had: int = 0
    #: Bodies an interrupted import had committed to the inbox, stored at the start of this one.
    resumed: int = 0
    #: Imported documents with fields that did not fit the page (bad image, odd value...).
    flagged: int = 0
    refused: list[Refusal] = field(default_factory=list)
    files: int = 0
    elapsed_s: float = 0.0

    @property
    def documents(self) -> int:
        return self.imported + self.already_had + len(self.refused)

    @property
    def ok(self) -> bool:
        return not self.refused

    @property
    def message(self) -> str:
        text = (f"{self.files} file(s), {self.documents} document(s): {self.imported} imported, "
                f"{self.already_had} already stored, {len(self.refused)} refused")
        if self.flagged:
            text += f"; {self.flagged} imported with flagged fields (shown on the case)"
        if self.resumed:
            text += f"; {self.resumed} finished from an interrupted import"
        rate = f" ({self.files / self.elapsed_s:.0f} files/s)" if self.elapsed_s > 0 else ""
        return text + f" in {self.elapsed_s:.1f} s{rate}."


def import_paths(engine: Engine, paths: Iterable[str | os.PathLike[str]], *, hash_key: bytes,
                 actor: str, progress: Callable[[ImportReport], None] | None = None,
                 batch_docs: int = BATCH_DOCS, batch_bytes: int = BATCH_BYTES,
                 workers: int | None = None) -> ImportReport:
    """Import every document under ``paths``; a refused document never stops the others.

    Bodies an interrupted import committed but did not store are finished first. Then the
    paths are read lazily, a batch at a time (at most ``batch_docs`` documents or
    ``batch_bytes`` of bodies): one batch is stored while the next is read, so at most two
    are in memory whatever the folder holds. ``workers`` processes parse the batches once
    the import is large enough to pay for starting them (default: one when the machine has
    more than one core; 0: parse in this process). ``progress`` gets the report after each
    batch.
    """
    started = time.monotonic()
    report = ImportReport()
    run = leases.default_owner()
    _LIVE_RUNS.add(run)
    try:
        report.resumed = sum(1 for r in store.process_pending(
            engine, hash_key=hash_key, source="import", actor=actor, left_behind=_left_behind)
            if r.created)
        if workers is None:
            workers = 1 if (os.cpu_count() or 1) > 1 else 0
        with _Storer(engine, hash_key, actor, report, workers, run) as storer:
            for batch, full in _batches(_documents(paths, report), report, batch_docs,
                                        batch_bytes):
                storer.submit(batch, full=full)
                report.elapsed_s = time.monotonic() - started
                if progress is not None:
                    progress(report)
    finally:
        _LIVE_RUNS.discard(run)
    report.elapsed_s = time.monotonic() - started
    if progress is not None:
        progress(report)
    return report


#: The import runs of this process still going: their inbox rows are theirs to finish.
_LIVE_RUNS: set[str] = set()
#: An inbox row of another machine's import still unstored after this long was left behind
#: by a run that died: a live run stores each batch seconds after committing it.
LEFT_BEHIND_AFTER = timedelta(minutes=10)


def _left_behind(receiver: str | None, received_at: datetime) -> bool:
    """Whether no live import will store this inbox row itself, so this run should.

    Without this, a run starting beside another would "resume" the other's batch in flight
    (stored once all the same, but reported as finished from an interrupted import)."""
    if receiver is None or leases.holder_is_gone(receiver):
        return True  # written before receivers were kept, or its process is gone
    if receiver in _LIVE_RUNS:
        return False
    if leases.is_this_process(receiver):
        return True  # a run of this process that stopped (an error, SystemExit)
    received = received_at if received_at.tzinfo else received_at.replace(tzinfo=UTC)
    return received < utcnow() - LEFT_BEHIND_AFTER


def _batches(documents: Iterator[Document], report: ImportReport, batch_docs: int,
             batch_bytes: int) -> Iterator[tuple[list[_Candidate], bool]]:
    """(batch, full): full when a bound closed it, not the end of the documents."""
    batch: list[_Candidate] = []
    size = 0
    for label, origin, body in documents:
        if isinstance(body, Refusal):
            report.refused.append(body)
            continue
        candidate = _candidate(label, origin, body, report)
        if candidate is None:
            continue
        batch.append(candidate)
        size += len(candidate.body)
        if len(batch) >= batch_docs or size >= batch_bytes:
            yield batch, True
            batch, size = [], 0
    if batch:
        yield batch, False


class _Storer:
    """Stores batches in a background thread while the caller reads the next ones.

    The thread takes one batch at a time, in order: it drops what is stored, commits the rest
    to the inbox and hands it to the parsing processes (when started), then stores the
    batch before it while they parse. Reading files (Python), parsing (other processes) and
    writing (mostly SQLite/PostgreSQL, which release the GIL) then overlap; at most three
    batches are in memory (one read, one parsed, one written).
    """

    def __init__(self, engine: Engine, hash_key: bytes, actor: str, report: ImportReport,
                 workers: int, run: str) -> None:
        self._engine, self._hash_key, self._actor, self._report = engine, hash_key, actor, report
        self._run = run
        self._workers = workers
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faceid-import")
        self._pool: ProcessPoolExecutor | None = None
        self._warmup: list[Future[int]] = []
        self._busy: Future[None] | None = None
        # Touched only by the storing thread: the batch committed to the inbox, being parsed.
        self._inflight: tuple[list[_Candidate], store.Ingesting] | None = None

    def submit(self, batch: list[_Candidate], *, full: bool) -> None:
        self.wait()
        self._busy = self._thread.submit(self._step, batch, full)

    def _ready_pool(self, full: bool) -> Executor | None:
        """The pool once its processes are up; None before, and for good if they could not
        start (the batches are then parsed here: slower, never lost)."""
        if full and self._workers and self._pool is None:
            # Only for a full batch with something to parse: a small import would wait longer
            # for the processes to start (spawn: a fresh interpreter; fork is unsafe beside
            # threads and DB connections) than it takes, and a re-import parses nothing.
            # Batches are parsed here until the processes are up.
            self._pool = ProcessPoolExecutor(self._workers, mp_context=get_context("spawn"))
            self._warmup = [self._pool.submit(int) for _ in range(self._workers)]
        if self._pool is None or not all(f.done() for f in self._warmup):
            return None
        if any(f.exception() is not None for f in self._warmup):
            log.warning("parsing processes could not start; parsing in this process")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool, self._workers = None, 0
            return None
        return self._pool

    def wait(self) -> None:
        busy, self._busy = self._busy, None
        if busy is not None:
            busy.result()  # a database error of the batch surfaces here, in the caller

    def _step(self, batch: list[_Candidate], full: bool) -> None:
        started = self._start(batch, full)
        self._finish()
        self._inflight = started

    def _start(self, batch: list[_Candidate], full: bool
               ) -> tuple[list[_Candidate], store.Ingesting] | None:
        """Skip what is stored (one query, before anything is written), commit the rest to
        the inbox and start parsing it."""
        report = self._report
        stored = store.stored_biz_ids(self._engine, [c.biz_id for c in batch])
        todo: list[_Candidate] = []
        for c in batch:
            if c.biz_id in stored:
                report.already_had += 1
            else:
                stored.add(c.biz_id)  # the same biz_id again in this batch: stored once
                todo.append(c)
        if not todo:
            return None
        pool = self._ready_pool(full)
        bodies = [store.Body(c.body, "import", c.origin, doc=None if pool else c.doc,
                             receiver=self._run) for c in todo]
        for c in todo:
            c.doc = None  # the store has it now (or the parsing process decodes it again)
        return todo, store.start_ingest(self._engine, bodies, hash_key=self._hash_key,
                                        executor=pool)

    def _finish(self) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        todo, ingesting = inflight
        report = self._report
        results = store.finish_ingest(self._engine, ingesting, actor=self._actor)
        for c, result in zip(todo, results, strict=True):
            if result.error is not None:
                report.refused.append(Refusal(c.label, result.error))
            elif not result.created:
                # Stored since the check: by a batch of this run still in flight (the same
                # biz_id in two files) or by a racing importer.
                report.already_had += 1
            else:
                report.imported += 1
                if result.parse_flag_count:
                    report.flagged += 1

    def __enter__(self) -> _Storer:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.wait()
                self._thread.submit(self._finish).result()
        finally:
            # On an error the batches in flight stop where they are: each transaction commits
            # whole or not at all, and the next import finishes what the inbox holds.
            self._thread.shutdown(wait=True)
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass(slots=True)
class _Candidate:
    """A document that decoded and names a biz_id: worth a look at the store."""

    label: str
    origin: str
    body: bytes
    doc: dict[str, Any]
    biz_id: str


def _candidate(label: str, origin: str, raw: bytes, report: ImportReport) -> _Candidate | None:
    try:
        body, doc = decode(raw)
        return _Candidate(label, origin, body, doc, _biz_id(doc))
    except DocumentError as exc:
        report.refused.append(Refusal(label, str(exc)))
        return None


def _biz_id(doc: dict[str, Any]) -> str:
    biz = doc.get("biz_info")
    biz_id = biz.get("biz_id") if isinstance(biz, dict) else None
    if isinstance(biz_id, str) and biz_id.strip():
        return biz_id
    # Not a result: the parser's own check raises with its canonical, plain reason (cheaply:
    # it refuses before parsing anything else).
    parse_document(doc)
    raise DocumentError("biz_info.biz_id is missing or empty.")  # pragma: no cover


__all__ = ["ImportReport", "import_paths"]
