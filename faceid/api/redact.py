"""Keep the api_secret out of every log line.

FaceID takes the api_secret in the query string, and httpx logs every request URL at INFO
(field notes). Three layers, because any one alone has a gap:
1. the ``httpx``/``httpcore`` loggers are raised to WARNING, so URLs are not logged at all;
2. a filter on those loggers and on every root handler rewrites ``api_secret=...`` and any
   registered secret value to ``***`` in the message and its arguments;
3. our own code never formats a request URL into a message or an exception.
"""

from __future__ import annotations

import logging
import re
import threading

_QUERY_SECRET = re.compile(r"(api_secret(?:=|%3D|'\s*:\s*'|\"\s*:\s*\"))[^&\s'\"]*",
                           re.IGNORECASE)
_secrets: set[str] = set()
_lock = threading.Lock()
MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is scrubbed wherever it appears, not only after ``=``."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Rewrite a record's message so no secret survives; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            # Pre-render the traceback through the same scrubber.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = redact(text), None
        return True


_FILTER = RedactingFilter()
_NOISY = ("httpx", "httpcore")


def install(root_handlers: bool = True) -> None:
    """Idempotently install the redaction layers (called by the client, CLI and dashboard)."""
    for name in _NOISY:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    if root_handlers:
        for handler in logging.getLogger().handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
