"""Structured logging: JSON lines or a console format, fields passed through `extra=` or bound to the
task that logs (`log_context`: the request's `request_id` and `trace_id`, a run's `job_id`)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

# Replaced, never mutated: a task sees the fields bound by the code that is running it, and no other's.
_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar("log_context", default=MappingProxyType({}))


class log_context:  # lower case: used like a function, `with log_context(job_id=...)`
    """Every record logged in this block (in this task, and in tasks it starts) carries these fields;
    None values are left out. A class, not a generator: it runs around every HTTP request."""

    __slots__ = ("fields", "token")

    def __init__(self, **fields: str | None) -> None:
        self.fields = fields

    def __enter__(self) -> None:
        bound = {**_CONTEXT.get(), **{k: v for k, v in self.fields.items() if v is not None}}
        self.token = _CONTEXT.set(bound)

    def __exit__(self, *exc: object) -> None:
        _CONTEXT.reset(self.token)


def bound_fields() -> Mapping[str, str]:
    """The fields `log_context` has bound here."""
    return _CONTEXT.get()


class ContextFilter(logging.Filter):
    """Adds the bound fields to each record (a field passed in `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _CONTEXT.get().items():
            if name not in record.__dict__:
                record.__dict__[name] = value
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the record's `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class ConsoleFormatter(logging.Formatter):
    """Human-readable line with `key=value` extras appended."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _RESERVED)
        return f"{base} {extras}" if extras else base


def configure_logging(level: str, fmt: str) -> None:
    """Install one stderr handler with the chosen format on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ConsoleFormatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level.upper() != "DEBUG":
        # arq logs every job start and finish at INFO: noise (and CPU) at thousands of jobs a second.
        logging.getLogger("arq.worker").setLevel(logging.WARNING)
