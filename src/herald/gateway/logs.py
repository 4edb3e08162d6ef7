"""How the gateway's log lines look: ``log_format`` ``text`` (default) or ``json``.

Both formats carry the structured fields a caller passes with ``extra=`` (the connection
lines of ``session/connlog.py``: user, client, transport, code...). In text they follow the
message as ``key=value``; in JSON every line is one object with ``time``, ``level``,
``logger``, ``message`` and those fields, so a log shipper needs no parsing rules. A traceback
stays inside its line (``exc_info``), so every line of the stream is one JSON object.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Final

# Attributes every LogRecord has: anything else on a record came with ``extra=``.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


# A text field value with any of these (or anything unprintable) is JSON-quoted.
_NEEDS_QUOTES: Final = re.compile(r'[\s"=\\]')


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    # Set difference first: most lines have no fields, and a storm logs tens of thousands that do.
    names = record.__dict__.keys() - _STANDARD
    if not names:
        return {}
    return {key: value for key, value in record.__dict__.items() if key in names and not key.startswith("_")}


def _text_value(value: object) -> str:
    """A field value in a text line: quoted when it holds anything that would split the line."""
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    if not text or _NEEDS_QUOTES.search(text) or not text.isprintable():
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extra_fields(record)
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the fields
        pairs = " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        return f"{head} {pairs}{sep}{tail}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``pid`` too when several worker processes share the stream."""

    def __init__(self, *, with_pid: bool = False) -> None:
        super().__init__()
        self._with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._with_pid:
            entry["pid"] = record.process
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)  # a field never overwrites the four above
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def _iso_time(created: float) -> str:
    """UTC, millisecond precision: ``2026-12-02T07:10:03.125Z``."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def formatter(log_format: str, *, with_pid: bool) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(with_pid=with_pid)
    process = "[%(process)d]" if with_pid else ""
    return TextFormatter(f"%(asctime)s %(levelname)s %(name)s{process}: %(message)s")


def configure(level: str, log_format: str, *, with_pid: bool) -> None:
    """Log to standard error at ``level``; once per process (a forked worker keeps its parent's)."""
    root = logging.getLogger()
    if root.handlers:
        return
    # A reconnect storm writes tens of thousands of connection lines: skip what no format here
    # prints, the caller lookup (a stack walk per record) and the thread and multiprocessing
    # names (the logging HOWTO's "Optimization" switches). The process id stays: workers print it.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format, with_pid=with_pid))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Python warnings become log lines, so a JSON stream has nothing but JSON in it.
    logging.captureWarnings(True)
