"""Importing saved results: files, folders, JSONL, saved callbacks; refusals reported per
file; a second import changes nothing."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from faceid import store
from faceid.importing import decode, import_paths
from faceid.notify import signature
from faceid.simulator import generate_result
from faceid.tables import AuditEvent, FetchAttempt, Inbox, RawResponse, StoredImage, Verification

KEY = b"test-pii-key"
TABLES = (Verification, RawResponse, StoredImage, Inbox, AuditEvent, FetchAttempt)


def counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        return {t.__tablename__: int(s.exec(select(func.count()).select_from(t)).one())
                for t in TABLES}


def doc(seed: int, **kw) -> dict:
    return generate_result(seed, status="OK", **kw)


def dump(d: dict) -> str:
    return json.dumps(d, ensure_ascii=False)


def biz(d: dict) -> str:
    return d["biz_info"]["biz_id"]


@pytest.fixture
def folder(tmp_path: Path, page_failure: bytes) -> dict:
    """A folder with every kind of good and bad document; returns what is where."""
    root = tmp_path / "saved"
    (root / "2026" / "11").mkdir(parents=True)
    plain, wrapped, form, l1, l2, flagged = (doc(i) for i in range(1, 7))
    (root / "plain.json").write_text(dump(plain), encoding="utf-8")
    (root / "2026" / "callback.json").write_text(
        dump({"data": dump(wrapped), "sign": signature("s", dump(wrapped))}), encoding="utf-8")
    (root / "2026" / "11" / "callback.form").write_text(
        urlencode({"data": dump(form), "sign": "abc"}), encoding="utf-8")
    (root / "batch.jsonl").write_text(f"{dump(l1)}\n\n{{broken\n{dump(l2)}\n", encoding="utf-8")
    key = next(iter(flagged["images"]))
    flagged["images"][key] = "data:image/jpeg;base64,@@@@"
    (root / "2026" / "bad-image.json").write_text(dump(flagged), encoding="utf-8")
    bad = {
        "truncated.json": dump(doc(7))[:500],
        "array.json": "[1, 2, 3]",
        "envelope.json": page_failure.decode(),
        "no-biz-id.json": dump({"status": "OK", "biz_info": {"biz_no": "x"}}),
        "2026/11/empty.json": "",
    }
    for name, text in bad.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "README.txt").write_text("not a result; not picked up from a folder")
    good = [plain, wrapped, form, l1, l2, flagged]
    return {"root": root, "good": [biz(d) for d in good], "bad": bad,
            "flagged": biz(flagged), "wrapped": wrapped}


def test_folder_import_stores_good_and_reports_each_bad(engine, folder) -> None:
    report = import_paths(engine, [folder["root"]], hash_key=KEY, actor="ops")
    assert report.imported == 6 and report.already_had == 0 and report.flagged == 1
    assert report.files == 10  # README.txt is not picked up from a folder
    refused = {r.path: r.reason for r in report.refused}
    root = folder["root"]
    assert set(refused) == {str(root / n) for n in folder["bad"]} | {f"{root / 'batch.jsonl'}:3"}
    assert "Not valid JSON" in refused[str(root / "truncated.json")]
    assert "array" in refused[str(root / "array.json")]
    assert "error response" in refused[str(root / "envelope.json")]
    assert "biz_id" in refused[str(root / "no-biz-id.json")]
    assert "empty" in refused[str(root / "2026/11/empty.json")]
    assert all(str(r) == f"{r.path}: {r.reason}" for r in report.refused)
    assert store.stored_biz_ids(engine, folder["good"]) == set(folder["good"])
    with Session(engine) as s:
        sources = set(s.exec(select(Verification.source)).all())
        actors = {e.actor for e in s.exec(select(AuditEvent))}
    assert sources == {"import"} and actors == {"ops"}
    assert "6 imported" in report.message and "refused" in report.message


def test_bad_image_is_stored_and_flagged_not_refused(engine, folder) -> None:
    import_paths(engine, [folder["root"]], hash_key=KEY, actor="ops")
    with Session(engine) as s:
        v = s.exec(select(Verification).where(Verification.biz_id == folder["flagged"])).one()
        images = s.exec(select(StoredImage).where(StoredImage.verification_id == v.id)).all()
    assert v.parse_flag_count >= 1
    assert [i.error for i in images if i.error] == ["the base64 text is malformed"]


def test_callback_data_is_unwrapped_exactly(engine, folder) -> None:
    import_paths(engine, [folder["root"]], hash_key=KEY, actor="ops")
    wrapped = folder["wrapped"]
    with Session(engine) as s:
        raw = s.exec(select(RawResponse).join(Verification)
                     .where(Verification.biz_id == biz(wrapped))).one()
    assert raw.original_sha256 == hashlib.sha256(dump(wrapped).encode()).hexdigest()


def test_second_import_changes_nothing(engine, folder) -> None:
    import_paths(engine, [folder["root"]], hash_key=KEY, actor="ops")
    before = counts(engine)
    report = import_paths(engine, [folder["root"]], hash_key=KEY, actor="ops")
    assert counts(engine) == before
    assert report.imported == 0 and report.already_had == 6 and len(report.refused) == 6
    assert before["verifications"] == 6 and before["audit_events"] == 6


def test_a_file_named_explicitly_is_read_whatever_its_name(engine, tmp_path) -> None:
    d = doc(20)
    path = tmp_path / "result.txt"
    path.write_text(dump(d), encoding="utf-8")
    missing = tmp_path / "nope.json"
    report = import_paths(engine, [path, missing], hash_key=KEY, actor="ops")
    assert report.imported == 1
    assert [str(r) for r in report.refused] == [f"{missing}: no such file or folder"]


def test_same_biz_id_twice_in_one_run_is_stored_once(engine, tmp_path) -> None:
    d = doc(21)
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(dump(d), encoding="utf-8")
    report = import_paths(engine, [tmp_path], hash_key=KEY, actor="ops")
    assert (report.imported, report.already_had) == (1, 1)
    assert counts(engine)["inbox"] == 1


@pytest.mark.parametrize("raw", [
    b"data=%7B%22a%22%3A1%7D&sign=x&data=%7B%7D",  # two data fields
    b'{"data": 5, "sign": "x"}',
    b"\xff\xfe garbage",
])
def test_malformed_wrappers_are_refused_with_a_reason(raw: bytes) -> None:
    from faceid.errors import DocumentError

    with pytest.raises(DocumentError):
        decode(raw)


def test_large_folder_is_streamed_not_loaded(tmp_path) -> None:
    """Peak Python memory does not grow with the folder: files are read one at a time."""
    from faceid import schema
    from faceid.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path}/desk.db")
    schema.create_all(engine)

    def make_folder(name: str, first: int, n: int) -> tuple[Path, int]:
        folder, total = tmp_path / name, 0
        folder.mkdir()
        for i in range(first, first + n):
            d = doc(i, procedure_type="selfie")
            d["padding"] = "x" * 100_000  # unknown keys are kept: each file is ~0.1 MB
            text = dump(d)
            total += len(text)
            (folder / f"{i:04}.json").write_text(text, encoding="utf-8")
        return folder, total

    def peak_of(folder: Path) -> int:
        tracemalloc.start()
        try:
            report = import_paths(engine, [folder], hash_key=KEY, actor="ops")
            return tracemalloc.get_traced_memory()[1] if report.ok else -1
        finally:
            tracemalloc.stop()

    small, _ = make_folder("small", 300, 15)
    big, big_total = make_folder("big", 400, 90)
    small_peak, big_peak = peak_of(small), peak_of(big)
    engine.dispose()
    assert store.stored_biz_ids(engine, [biz(doc(400))]) == {biz(doc(400))}
    assert 0 < big_peak < small_peak * 1.5 and big_peak < big_total / 3, \
        (small_peak, big_peak, big_total)
