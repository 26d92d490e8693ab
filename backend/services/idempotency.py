"""Idempotency-Key rules: the request fingerprint (the header itself is parsed in `backend/api`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


def canonical_json(body: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace: equal documents, equal text."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(method: str, path: str, body: Any) -> str:
    """sha256 over method, path and the canonical JSON of the body."""
    material = f"{method.upper()}\n{path}\n{canonical_json(body)}"
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class IdempotencyRequest:
    """A request's idempotency identity."""

    key: str
    fingerprint: str
