"""Idempotency-Key rules: the request fingerprint (the header itself is parsed in `backend/api`).

The fingerprint covers the validated body, not the raw JSON: equal requests (key order, whitespace,
defaults spelled out or not) match, and a body that does not validate is a 422 before any fingerprint,
so its text (lone surrogates, deep nesting) never reaches the hashing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


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


@dataclass(frozen=True)
class IdempotencyKey:
    """An Idempotency-Key with the method and path it came with; the body joins once it is validated."""

    key: str
    method: str
    path: str

    def request(self, body: BaseModel) -> IdempotencyRequest:
        """This request's identity: the key, and a fingerprint over the validated body."""
        return IdempotencyRequest(self.key, fingerprint(self.method, self.path, body.model_dump(mode="json")))
