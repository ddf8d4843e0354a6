"""Wiring: builds the real collaborators once (the dashboard caches the Desk with
``st.cache_resource``; the CLI builds one per run). Nothing here imports streamlit."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from faceid.api import redact
from faceid.api.client import FaceIDClient
from faceid.core.config import DEMO_API_KEY, DEMO_API_SECRET, Settings, load_settings
from faceid.store import schema
from faceid.store.db import make_engine

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from faceid.accounts.users import UserService
    from faceid.api.simulator import SimServer
    from faceid.reports.insights import InsightsService
    from faceid.review.service import ReviewService
    from faceid.store.fetching import FetchService
    from faceid.store.worker import Worker


@dataclass
class Desk:
    settings: Settings
    engine: Engine
    #: The in-process simulator serving demo mode (None in live mode).
    simulator: SimServer | None = None
    _closers: list = field(default_factory=list, repr=False)

    @property
    def demo(self) -> bool:
        return self.settings.demo

    @cached_property
    def client(self) -> FaceIDClient:
        s = self.settings
        if s.demo:
            if self.simulator is None:
                from faceid.api.simulator import SimulatorState, start_in_thread

                state = SimulatorState(recent=True)
                # Cases waiting to be fetched, so the demo can show the fetch flow.
                state.add_fresh(8)
                self.simulator = start_in_thread(state)
                self._closers.append(self.simulator.stop)
            client = FaceIDClient(DEMO_API_KEY, DEMO_API_SECRET, self.simulator.base_url,
                                  timeout_s=s.timeout_s, max_concurrency=s.max_concurrency)
        else:
            assert s.api_key and s.api_secret
            client = FaceIDClient(s.api_key, s.api_secret, s.base_url, timeout_s=s.timeout_s,
                                  max_concurrency=s.max_concurrency)
        self._closers.append(client.close)
        return client

    @cached_property
    def fetcher(self) -> FetchService:
        from faceid.store.fetching import FetchService

        return FetchService(self.engine, lambda: self.client, self.settings)

    @cached_property
    def worker(self) -> Worker:
        from faceid.store.worker import Worker

        return Worker(self.fetcher, threads=self.settings.desk_workers, name="desk-worker")

    def start_worker(self) -> bool:
        """Host a fetch worker in this process when configured to (demo mode by default, so
        ``make run`` needs no second terminal; live, the notify receiver or ``worker``
        processes run the queue). The desk's own "Fetch" clicks never need it: a click claims
        its job and runs it in the session's thread."""
        threads = self.settings.desk_workers
        if threads is None:
            threads = self.settings.max_concurrency if self.demo else 0
        if threads <= 0:
            return False
        assert self.client  # built here, once, not raced by the worker's threads
        worker = self.worker
        worker.threads = threads
        worker.start()
        self._closers.append(worker.stop)
        return True

    @cached_property
    def review(self) -> ReviewService:
        from faceid.review.service import ReviewService

        return ReviewService(self.engine, self.fetcher, self.settings)

    @cached_property
    def insights(self) -> InsightsService:
        from faceid.reports.insights import InsightsService

        return InsightsService(self.engine)

    @cached_property
    def users(self) -> UserService:
        from faceid.accounts.users import UserService

        return UserService(self.engine)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()


def build_desk(settings: Settings | None = None, *, engine: Engine | None = None,
               migrate: bool = True) -> Desk:
    settings = settings or load_settings()
    redact.register_secret(settings.api_secret)
    redact.install()
    engine = engine or make_engine(settings.database_url)
    if migrate:
        schema.upgrade(engine)
        fill_export_lines_in_background(engine)
    return Desk(settings, engine)


def fill_export_lines_in_background(engine: Engine) -> threading.Thread:
    """Render the export lines a bulk load or a release with another export format left
    missing, without holding up the start (``db upgrade`` does the same in the foreground).
    Safe beside reviewers' writes: ``refresh_lines`` locks the rows it renders, and every
    batch is its own short transaction. Until it is done an export renders what is missing."""
    from faceid.store import export_lines

    def run() -> None:
        try:
            rendered = export_lines.fill_lines(engine)
        except Exception as exc:  # a convenience: the export stays correct without it
            log.warning("export lines not rendered in the background (%s)", type(exc).__name__)
            return
        if rendered:
            log.info("export lines rendered in the background: %d", rendered)

    thread = threading.Thread(target=run, name="export-lines", daemon=True)
    thread.start()
    return thread
