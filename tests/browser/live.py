"""The desk in live mode for browser tests: FaceID credentials set, FaceID itself a simulator
running in this process (nothing leaves the machine), ``FACEID_PII_KEY`` set as live mode
needs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from faceid.api.simulator import SimulatorState, generate_result, start_in_thread


@contextlib.contextmanager
def live_env(db: Path, *, api_secret: str, pii_key: str) -> Iterator[dict[str, str]]:
    """The environment for ``run_streamlit``; the simulator stops on exit."""
    sim = start_in_thread(SimulatorState(api_key="live-key", api_secret=api_secret,
                                         recent=True))
    sim.state.add(generate_result(5, anchor=int(time.time()), status="OK"))
    try:
        yield {"DATABASE_URL": f"sqlite:///{db}", "FACEID_API_KEY": "live-key",
               "FACEID_API_SECRET": api_secret, "FACEID_BASE_URL": sim.base_url,
               "FACEID_PII_KEY": pii_key}
    finally:
        sim.stop()
