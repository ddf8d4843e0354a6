"""Who holds a lease and by which clock it runs out: the database's clock as SQL
(``db_now``) and the identity of a process (``default_owner``), with the checks that let a
process of the same machine take over the leases of one that is gone (``holder_is_gone``).

Used by the fetch queue (``faceid.store.fetchqueue``) and by the importer, whose runs name
themselves the same way so that another run can tell a live batch from a dead one's.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
from typing import Any

from sqlalchemy import Float, cast, func


@functools.cache
def db_now(dialect: str) -> Any:
    """The database's clock as epoch seconds, as SQL (so every process uses the same clock).
    Built once per dialect: it is in nearly every statement of the queue."""
    if dialect == "postgresql":
        # clock_timestamp(), not now(): now() is frozen at the start of the transaction.
        return cast(func.extract("epoch", func.clock_timestamp()), Float)
    return (func.julianday("now") - 2440587.5) * 86400.0


def this_machine() -> str:
    """Host name and PID namespace: two processes with the same value see each other's pids
    (containers sharing a host name but not a PID namespace do not)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()[:64]}/{namespace}"


def default_owner() -> str:
    """Who holds a lease: machine, pid and a random tag (a pid can be reused after a
    restart)."""
    return f"{this_machine()}:{os.getpid()}:{secrets.token_hex(3)}"


def _local_pid(owner: str | None) -> int | None:
    """The pid in ``owner`` (``machine:pid:tag``) if it names a process of this machine."""
    machine, _, tag = (owner or "").rpartition(":")
    machine, _, pid_text = machine.rpartition(":")
    if machine != this_machine() or not pid_text.isdigit() or not tag:
        return None
    return int(pid_text)


def is_this_process(owner: str | None) -> bool:
    """Whether ``owner`` names this process (any tag)."""
    return _local_pid(owner) == os.getpid()


def holder_is_gone(owner: str | None) -> bool:
    """Whether ``owner`` is a process of this machine that no longer exists (killed with
    ``kill -9``, crashed): its leases need not run out before its work is taken over. Any
    doubt (another machine, a pid that exists, one we may not signal) answers False."""
    pid = _local_pid(owner)
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


__all__ = ["db_now", "default_owner", "holder_is_gone", "is_this_process", "this_machine"]
