"""JSON-lines input for the command-line tools: every line yields a parsed object or a clear error."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


@contextmanager
def open_input(name: str) -> Iterator[IO[str]]:
    """``-`` is standard input; anything else a UTF-8 file."""
    if name == "-":
        yield sys.stdin
    else:
        with Path(name).open(encoding="utf-8") as fh:
            yield fh


def read_models(stream: IO[str], model: type[M]) -> Iterator[tuple[int, M | None, str | None, Any]]:
    """Yield ``(line_number, row, error, raw_id)``; exactly one of ``row`` and ``error`` is set.

    Blank lines are skipped. ``raw_id`` is the line's ``id`` when one could be read, so that an error
    can still be matched to its input.
    """
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"line {number}: not valid JSON: {exc.msg} (column {exc.colno})", None
            continue
        raw_id = data.get("id") if isinstance(data, dict) else None
        try:
            yield number, model.model_validate(data), None, raw_id
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'line'}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            yield number, None, f"line {number}: {problems}", raw_id
