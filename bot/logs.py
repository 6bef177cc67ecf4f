"""Structured logs: one JSON object per line, with conversation and event ids.

Call :func:`configure` once at start, before anything logs (loggers are cached on first use). Logs go
to standard error, or to a file when one is given (the playground keeps them out of the conversation).
Values that look like credentials are masked by a processor, so a token passed into a log call by
mistake never reaches the log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

_SECRET_KEYS = re.compile(r"token|secret|password|api_key|authorization", re.I)
_SECRET_VALUES = re.compile(r"\b(xox[abposr]-[\w-]+|xapp-[\w-]+|sk-[\w-]{8,})")
_opened: TextIO | None = None
"""The log file :func:`configure` opened, closed when it is configured again."""


def _mask_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key):
            event[key] = "**********"
        elif isinstance(value, str):
            event[key] = _SECRET_VALUES.sub("**********", value)
    return event


def configure(level: str = "info", *, file: Path | None = None) -> None:
    """Send structlog's and the standard library's logs (and Python's warnings) at ``level`` and above
    to standard error, or, with ``file``, appended to that file only."""
    global _opened
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    previous, _opened = _opened, None
    stream: TextIO = sys.stderr
    if file is not None:
        stream = _opened = file.open("a", encoding="utf-8", buffering=1)  # line-buffered: readable while running
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s" if file is None else
                                           "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    # warnings.warn(...) from libraries: into the same place, not the terminal (hooked again, in case
    # something replaced warnings.showwarning since the last call)
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    if previous is not None:
        previous.close()
