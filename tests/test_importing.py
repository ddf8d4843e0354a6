"""Importing saved results: files, folders, JSONL, saved callbacks; refusals reported per
file; a second import changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from faceid.api.simulator import generate_result
from faceid.store import audit, export_lines
from faceid.store import write as store
from faceid.store.db import make_engine
from faceid.store.import_files import decode
from faceid.store.importing import import_paths
from faceid.store.notify import signature
from faceid.store.tables import (
    AuditEvent,
    ExportLine,
    FetchAttempt,
    Inbox,
    RawResponse,
    StoredImage,
    Verification,
)
from tests.conftest import ROOT, empty_engine, pg_url_or_skip

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
    from faceid.core.errors import DocumentError

    with pytest.raises(DocumentError):
        decode(raw)


def test_large_folder_is_streamed_not_loaded(tmp_path) -> None:
    """Peak Python memory does not grow with the folder: files are read one at a time."""
    from faceid.store import schema
    from faceid.store.db import make_engine

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
            # Batches of ~2 files (the default holds 8 MiB, more than these folders): memory
            # must stay at a few batches, not grow with the folder. Parsed here (workers=0):
            # tracemalloc does not see other processes.
            report = import_paths(engine, [folder], hash_key=KEY, actor="ops",
                                  batch_bytes=256 * 1024, workers=0)
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


# --------------------------------------------------------------------------- batched store path


def collide(d: dict) -> dict:
    """A result the parser accepts but the database cannot store: an extra image key that
    names the same kind as ``multifaces_image`` (two rows, one (case, kind) key)."""
    jpeg = next(v for v in doc(11, procedure_type="selfie")["images"].values() if v)
    d["images"] = dict(d.get("images") or {}, image_multifaces=jpeg)
    d["multifaces_image"] = jpeg
    return d


def chain_ok(engine: Engine, expected: int) -> None:
    with Session(engine) as s:
        report = audit.verify_chain(s)
    assert report.ok and report.checked == expected, report.describe()


def test_a_bad_document_inside_a_batch_costs_only_itself(engine, tmp_path) -> None:
    """One batch (one transaction) holds good documents, one the parser refuses and one the
    database refuses: the good ones are stored, each bad one is reported and kept in the
    inbox with its reason. (Before batching, the database refusal recursed until Python
    gave up and the whole import died.)"""
    docs = [doc(i, procedure_type="selfie") for i in range(30, 36)]
    bad = collide(doc(36, procedure_type="selfie"))
    for i, d in enumerate(docs[:3] + [bad] + docs[3:]):
        (tmp_path / f"{i:02}.json").write_text(dump(d), encoding="utf-8")
    (tmp_path / "05-not-a-result.json").write_text('{"status": "OK", "biz_info": 5}')
    report = import_paths(engine, [tmp_path], hash_key=KEY, actor="ops", batch_docs=100)
    assert report.imported == 6 and report.already_had == 0
    refused = {Path(r.path).name: r.reason for r in report.refused}
    assert refused == {"03.json": "could not be stored (IntegrityError)",
                       "05-not-a-result.json": "No biz_info object: this is not a get_result "
                                               "response."}
    assert store.stored_biz_ids(engine, [biz(d) for d in docs + [bad]]) == \
        {biz(d) for d in docs}
    with Session(engine) as s:
        kept = s.exec(select(Inbox).where(Inbox.error.is_not(None))).one()
        assert kept.body is not None and kept.processed_at is not None  # a person can look
    chain_ok(engine, 6)
    assert counts(engine)["audit_events"] == 6


def test_store_batch_reports_each_body_in_order(engine, hash_key) -> None:
    good = [doc(40), doc(41)]
    bodies = [dump(good[0]).encode(), b'{"status": "OK"', dump(collide(doc(42))).encode(),
              dump(good[1]).encode(), dump(good[0]).encode()]
    results = store.ingest_many(engine, [store.Body(b, "import") for b in bodies],
                                hash_key=hash_key, actor="ops")
    assert [(r.biz_id, r.created) for r in results] == [
        (biz(good[0]), True), (None, False), (biz(doc(42)), False), (biz(good[1]), True),
        (biz(good[0]), False)]
    assert "truncated" in results[1].error and "IntegrityError" in results[2].error
    assert results[4].verification_id == results[0].verification_id  # the same case
    assert store.process_pending(engine, hash_key=hash_key) == []
    # Processing again changes nothing and reports what was done.
    again = store.process_many(engine, [r.inbox_id for r in results], hash_key=hash_key)
    assert [r.error for r in again] == [r.error for r in results]
    assert not any(r.created for r in again)
    chain_ok(engine, 2)


def test_a_rival_writer_of_the_same_biz_id_costs_only_that_document(engine, hash_key,
                                                                    monkeypatch) -> None:
    """The check for stored biz_ids and the insert are not atomic against a writer that does
    not take the chain lock: its commit lands in between, the batch insert fails on the
    unique biz_id, and each document is then stored alone. The rival's case stands."""
    rival, other = doc(50), doc(51)
    store.ingest(engine, dump(rival).encode(), source="api", hash_key=hash_key)
    real = store._existing
    calls = []

    def blind_first(conn, biz_ids):  # the first check misses the rival's row
        calls.append(1)
        return {} if len(calls) == 1 else real(conn, biz_ids)

    monkeypatch.setattr(store, "_existing", blind_first)
    results = store.ingest_many(engine, [store.Body(dump(d).encode(), "import")
                                         for d in (rival, other)], hash_key=hash_key)
    assert [(r.created, r.error) for r in results] == [(False, None), (True, None)]
    assert results[0].verification_id is not None
    with Session(engine) as s:
        assert s.exec(select(Verification.source).where(Verification.biz_id == biz(rival))
                      ).one() == "api"
    chain_ok(engine, 2)


def test_concurrent_importers_store_each_case_once(mt_engine, tmp_path) -> None:
    docs = [doc(i) for i in range(60, 100)]
    for d in docs:
        (tmp_path / f"{biz(d)[-12:]}.json").write_text(dump(d), encoding="utf-8")
    reports: list = []

    def run() -> None:
        reports.append(import_paths(mt_engine, [tmp_path], hash_key=KEY, actor="ops",
                                    batch_docs=7, workers=0))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(reports) == 2 and all(r.ok for r in reports), [r.message for r in reports]
    assert sum(r.imported for r in reports) == 40
    assert all(r.imported + r.already_had == 40 for r in reports)
    assert counts(mt_engine)["verifications"] == 40
    chain_ok(mt_engine, 40)


def test_an_import_never_resumes_the_batch_another_live_import_has_in_flight(engine,
                                                                            tmp_path) -> None:
    """Bodies another import (here: a live run of another machine) committed to the inbox a
    moment ago are its own to store: this run leaves them, and stores its own documents."""
    theirs = [doc(i) for i in range(130, 133)]
    elsewhere = "other-host/1:4242:abc123"
    store.receive_many(engine, [store.Body(dump(d).encode(), "import", receiver=elsewhere)
                                for d in theirs])
    mine = doc(133)
    (tmp_path / "mine.json").write_text(dump(mine), encoding="utf-8")
    report = import_paths(engine, [tmp_path], hash_key=KEY, actor="ops", workers=0)
    assert (report.resumed, report.imported) == (0, 1)
    with Session(engine) as s:
        left = s.exec(select(Inbox.receiver).where(Inbox.processed_at.is_(None))).all()
    assert left == [elsewhere] * 3


def test_which_inbox_rows_an_import_treats_as_left_behind(monkeypatch) -> None:
    from datetime import timedelta

    from faceid.core.timeutil import utcnow
    from faceid.store import importing, leases

    now = utcnow()
    here = leases.this_machine()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    live_run, ended_run = leases.default_owner(), leases.default_owner()
    monkeypatch.setattr(importing, "_LIVE_RUNS", {live_run})
    young, old = now, now - importing.LEFT_BEHIND_AFTER - timedelta(seconds=1)
    assert importing._left_behind(None, young)  # written before receivers were kept
    assert importing._left_behind(f"{here}:{dead}:aa", young)  # its process is gone
    assert not importing._left_behind(live_run, old)  # a run of ours still going
    assert importing._left_behind(ended_run, young)  # a run of ours that stopped
    assert not importing._left_behind("other/1:77:aa", young)  # elsewhere, maybe running
    assert importing._left_behind("other/1:77:aa", old.replace(tzinfo=None))  # long stuck


def test_every_imported_case_has_its_export_line(engine, folder) -> None:
    import_paths(engine, [folder["root"]], hash_key=KEY, actor="ops", batch_docs=2)
    with engine.connect() as conn:
        ids = list(conn.execute(select(Verification.id)).scalars())
        lines = dict(conn.execute(select(ExportLine.verification_id, ExportLine.line)
                                  .where(ExportLine.renderer == export_lines.renderer())).all())
        assert len(ids) == 6 and lines == export_lines.render_lines(conn, ids)


def test_the_import_reads_its_paths_lazily(engine, tmp_path, monkeypatch) -> None:
    """Memory stays flat because nothing is read ahead of the batch being stored: the store
    is called long before the list of paths is exhausted."""
    paths = []
    for i in range(12):
        path = tmp_path / f"{i:02}.json"
        path.write_text(dump(doc(200 + i)), encoding="utf-8")
        paths.append(path)
    handed_out: list[int] = []

    def lazily():
        for path in paths:
            handed_out.append(1)
            yield path

    seen: list[int] = []
    real = store.start_ingest

    def spy(*args, **kw):
        seen.append(len(handed_out))
        return real(*args, **kw)

    monkeypatch.setattr(store, "start_ingest", spy)
    report = import_paths(engine, lazily(), hash_key=KEY, actor="ops", batch_docs=2)
    assert report.imported == 12 and len(seen) == 6
    # At most the batch being stored, the one read meanwhile and the one being read.
    assert seen[0] <= 6, seen


def test_a_crash_between_inbox_and_store_is_finished_by_the_next_import(engine, tmp_path,
                                                                         monkeypatch) -> None:
    """The process dies after a batch's bodies were committed to the inbox but before the
    batch was stored: nothing is lost, and importing the same folder again stores them
    (first, from the inbox) and everything else, once."""
    docs = [doc(i) for i in range(300, 320)]
    for i, d in enumerate(docs):
        (tmp_path / f"{i:02}.json").write_text(dump(d), encoding="utf-8")
    real, calls = store._write, []

    def dies_on_second_batch(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise SystemExit("killed between the inbox commit and the store commit")
        return real(*args, **kw)

    monkeypatch.setattr(store, "_write", dies_on_second_batch)
    with pytest.raises(SystemExit):
        import_paths(engine, [tmp_path], hash_key=KEY, actor="ops", batch_docs=5, workers=0)
    monkeypatch.setattr(store, "_write", real)
    with Session(engine) as s:
        pending = s.exec(select(Inbox).where(Inbox.processed_at.is_(None))).all()
    assert pending and all(row.body for row in pending)  # committed before it was parsed
    stored_before = counts(engine)["verifications"]
    assert 0 < stored_before < 20
    report = import_paths(engine, [tmp_path], hash_key=KEY, actor="ops", batch_docs=5)
    assert report.ok and report.resumed == len(pending)
    assert report.imported + report.resumed + stored_before == 20
    assert store.stored_biz_ids(engine, [biz(d) for d in docs]) == {biz(d) for d in docs}
    assert store.process_pending(engine, hash_key=KEY) == []
    chain_ok(engine, 20)


# --------------------------------------------------------------------------- CLI, both databases


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for ``python -m faceid`` (which migrates it itself)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/desk.db"
    engine = empty_engine("postgres", tmp_path)
    engine.dispose()
    return pg_url_or_skip()


def cli_env(db: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FACEID_") and k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=db)
    return env


def faceid_cli(cwd: Path, db: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faceid", *args], cwd=cwd, env=cli_env(db),
                          capture_output=True, text=True, timeout=240)


def write_saved(folder: Path, n: int, first: int = 1000) -> list[str]:
    """``n`` saved results (a few distinct ones under new biz_ids: generating is slow)."""
    folder.mkdir()
    base = [generate_result(i) for i in range(first, first + 20)]
    ids = []
    for i in range(n):
        d = dict(base[i % len(base)])
        d["biz_info"] = dict(d["biz_info"], biz_id=f"{1_790_000_000 + i},import-{i:05}")
        ids.append(biz(d))
        (folder / f"{i:05}.json").write_text(dump(d), encoding="utf-8")
    return ids


def assert_intact(engine: Engine, ids: list[str]) -> int:
    """Every stored case is whole (raw response, images, one audit entry, export line), the
    chain verifies, and no received body lost its payload. Returns how many are stored."""
    v = Verification.__table__
    with engine.connect() as conn:
        cases = dict(conn.execute(select(v.c.id, v.c.biz_id)).all())
        raw = set(conn.execute(select(RawResponse.verification_id)).scalars())
        with_images = set(conn.execute(select(StoredImage.verification_id)).scalars())
        audited = list(conn.execute(select(AuditEvent.biz_id)).scalars())
        lined = set(conn.execute(select(ExportLine.verification_id)).scalars())
        lost = conn.execute(select(func.count()).select_from(Inbox).where(
            Inbox.body.is_(None), Inbox.processed_at.is_(None))).scalar()
    assert set(cases.values()) <= set(ids)
    assert raw == set(cases) and lined == set(cases) and with_images <= set(cases)
    assert sorted(audited) == sorted(cases.values())  # one entry per case, no more
    assert lost == 0
    chain_ok(engine, len(cases))
    return len(cases)


def test_import_cli_then_audit_verify(db_url, tmp_path) -> None:
    ids = write_saved(tmp_path / "saved", 40)
    result = faceid_cli(tmp_path, db_url, "import", "saved")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "40 imported" in result.stdout and "import: 100%" in result.stderr  # the bar
    verify = faceid_cli(tmp_path, db_url, "audit", "verify")
    assert verify.returncode == 0 and "intact: 40 entries" in verify.stdout, verify.stdout
    engine = make_engine(db_url)
    try:
        assert assert_intact(engine, ids) == 40
    finally:
        engine.dispose()


def test_sigkill_mid_import_loses_nothing_and_rerun_completes(db_url, tmp_path) -> None:
    """A real ``kill -9`` while batches are being stored (parsing processes running), then
    the same command again: every case stored once, whole, chain intact."""
    n = 2500
    ids = write_saved(tmp_path / "saved", n)
    proc = subprocess.Popen([sys.executable, "-m", "faceid", "import", "saved"], cwd=tmp_path,
                            env=cli_env(db_url), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    engine = make_engine(db_url)
    try:
        deadline = time.monotonic() + 120
        while _stored_count(engine) < 1:
            assert proc.poll() is None, "the import finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)  # the importer and its parsing processes
        assert proc.wait(10) == -signal.SIGKILL
        stored = assert_intact(engine, ids)
        assert 0 < stored < n

        rerun = faceid_cli(tmp_path, db_url, "import", "saved")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert assert_intact(engine, ids) == n
        assert store.process_pending(engine, hash_key=KEY) == []
        verify = faceid_cli(tmp_path, db_url, "audit", "verify")
        assert verify.returncode == 0 and f"intact: {n} entries" in verify.stdout
    finally:
        engine.dispose()


def _stored_count(engine: Engine) -> int:
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(Verification)).scalar() or 0
    except Exception:  # the importer has not created the schema yet
        return 0
