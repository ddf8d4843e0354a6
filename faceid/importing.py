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
Files are read one at a time, and JSONL line by line, so a large folder never sits in memory.

Idempotent by biz_id: a document whose biz_id is already stored is skipped *before* anything is
written (no inbox row, no audit entry), so importing the same folder twice changes nothing.
Unlike the API path, parsing comes before ``store.receive`` here: the file itself is the
durable copy, so a crash mid-import loses nothing and a rerun finishes the job.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Engine
from sqlmodel import Session, select

from faceid import store
from faceid.errors import DocumentError
from faceid.model import loads_document, parse_document
from faceid.tables import Verification

FOLDER_SUFFIXES = frozenset({".json", ".jsonl", ".form"})
#: A get_result with every image is a few MB; anything far larger is not one.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Refusal:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(slots=True)
class ImportReport:
    imported: int = 0
    already_had: int = 0
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
        return text + f" in {self.elapsed_s:.1f} s."


def import_paths(engine: Engine, paths: Iterable[str | os.PathLike[str]], *, hash_key: bytes,
                 actor: str) -> ImportReport:
    """Import every document under ``paths``; a refused document never stops the others."""
    started = time.monotonic()
    report = ImportReport()
    for label, origin, body in _documents(paths, report):
        if isinstance(body, Refusal):
            report.refused.append(body)
            continue
        _import_one(engine, label, origin, body, hash_key, actor, report)
    report.elapsed_s = time.monotonic() - started
    return report


def _import_one(engine: Engine, label: str, origin: str, raw: bytes, hash_key: bytes,
                actor: str, report: ImportReport) -> None:
    try:
        body, doc = decode(raw)
        biz_id = _biz_id(doc)
    except DocumentError as exc:
        report.refused.append(Refusal(label, str(exc)))
        return
    if _is_stored(engine, biz_id):
        report.already_had += 1
        return
    result = store.ingest(engine, body, source="import", hash_key=hash_key, origin=origin,
                          actor=actor)
    if result.error is not None:  # pragma: no cover - the checks above mirror the parser's
        report.refused.append(Refusal(label, result.error))
    elif not result.created:
        report.already_had += 1  # the same biz_id earlier in this very run, or a racing writer
    else:
        report.imported += 1
        if _flag_count(engine, result.verification_id):
            report.flagged += 1


def decode(raw: bytes) -> tuple[bytes, dict[str, Any]]:
    """(body to store, decoded document): the file itself, or a saved callback's ``data``.

    Raises ``DocumentError`` with a plain reason (truncated JSON, not an object...).
    """
    stripped = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        doc = loads_document(raw)
        if "data" in doc and "biz_info" not in doc and "error_message" not in doc:
            body = _callback_data(doc.get("data"))
            return body, loads_document(body)
        return raw, doc
    if stripped.startswith((b"data=", b"sign=")) or b"&data=" in stripped[:4096]:
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError:
            raise DocumentError("A form-encoded callback that is not UTF-8 text.") from None
        try:
            fields = parse_qs(text.strip(), keep_blank_values=True, max_num_fields=50)
        except ValueError:
            raise DocumentError("A form-encoded callback with too many fields.") from None
        values = fields.get("data") or []
        if len(values) != 1:
            raise DocumentError("A form-encoded callback needs exactly one data= field.")
        body = _callback_data(values[0])
        return body, loads_document(body)
    return raw, loads_document(raw)  # refuses, saying what is wrong


def unwrap(raw: bytes) -> bytes:
    """The get_result JSON inside ``raw`` (see ``decode``)."""
    return decode(raw)[0]


def _callback_data(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, dict):
        return json.dumps(data, ensure_ascii=False).encode("utf-8")
    raise DocumentError("A saved callback whose data field is not a JSON string.")


def _biz_id(doc: dict[str, Any]) -> str:
    biz = doc.get("biz_info")
    biz_id = biz.get("biz_id") if isinstance(biz, dict) else None
    if isinstance(biz_id, str) and biz_id.strip():
        return biz_id
    # Not a result: the parser's own check raises with its canonical, plain reason (cheaply:
    # it refuses before parsing anything else).
    parse_document(doc)
    raise DocumentError("biz_info.biz_id is missing or empty.")  # pragma: no cover


def _is_stored(engine: Engine, biz_id: str) -> bool:
    with Session(engine) as s:
        return s.exec(select(Verification.id).where(Verification.biz_id == biz_id)).first() \
            is not None


def _flag_count(engine: Engine, verification_id: int | None) -> int:
    if verification_id is None:
        return 0
    with Session(engine) as s:  # one column, not the whole row with its JSON
        return s.exec(select(Verification.parse_flag_count)
                      .where(Verification.id == verification_id)).first() or 0


# --------------------------------------------------------------------------- walking


Document = tuple[str, str, bytes | Refusal]


def _documents(paths: Iterable[str | os.PathLike[str]], report: ImportReport) -> Iterator[Document]:
    """(label for messages, origin kept in the inbox, body or refusal), one at a time."""
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for file in _walk(path):
                report.files += 1
                yield from _read(file)
        elif path.is_file():
            report.files += 1
            yield from _read(path)
        else:
            yield str(path), str(path), Refusal(str(path), "no such file or folder")


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in FOLDER_SUFFIXES:
                yield Path(root) / name


def _read(path: Path) -> Iterator[Document]:
    label = str(path)
    try:
        size = path.stat().st_size
        if path.suffix.lower() == ".jsonl":
            yield from _read_lines(path)
            return
        if size > MAX_DOCUMENT_BYTES:
            yield label, label, Refusal(label, f"larger than {MAX_DOCUMENT_BYTES >> 20} MiB")
            return
        body = path.read_bytes()
    except OSError as exc:
        yield label, label, Refusal(label, f"cannot be read ({exc.strerror or 'I/O error'})")
        return
    yield label, label, body


def _read_lines(path: Path) -> Iterator[Document]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            label = f"{path}:{number}"
            if not line.strip():
                continue
            if len(line) > MAX_DOCUMENT_BYTES:
                yield label, label, Refusal(label, "line too long")
                continue
            yield label, label, line


__all__ = ["FOLDER_SUFFIXES", "ImportReport", "Refusal", "decode", "import_paths", "unwrap"]
