"""Webhooks, the pure part: event and delivery views, the Standard Webhooks signature, back-off, and which
destination addresses are private."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # 192 bits (the spec asks for 24 to 64)
TIMEOUT_S = 5.0  # one attempt, connection to last byte
ROTATION_OVERLAP = timedelta(hours=24)  # after a rotation, the old secret signs too for this long


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """What one POST of a delivery came to, to record."""

    delivery_id: uuid.UUID
    attempts: int  # the claim's count: fences the record
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
    retry_in_s: float  # when not delivered: the back-off before the next attempt

    @property
    def delivered(self) -> bool:
        """A 2xx answer."""
        return answered_2xx(self.status_code)


def answered_2xx(status_code: int | None) -> bool:
    """Whether the receiver took the delivery: any 2xx ends the retries."""
    return status_code is not None and 200 <= status_code < 300


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and the base64 of random bytes (Standard Webhooks' form)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def webhook_id(delivery_id: uuid.UUID) -> str:
    """The `webhook-id` of a delivery: the same on every attempt and redelivery (receivers dedupe on it)."""
    return f"msg_{delivery_id.hex}"


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: for each secret, `v1,` and the base64 HMAC-SHA256 of
    `{id}.{timestamp}.{body}` keyed by the base64-decoded part of the secret after `whsec_`; several are
    space-separated (the spec's way to rotate a secret without a moment when receivers reject deliveries)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    keys = (base64.b64decode(secret.removeprefix(SECRET_PREFIX)) for secret in secrets)
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys
    )


def backoff_s(attempts: int, schedule: Sequence[float]) -> float:
    """The wait after the `attempts`-th failed attempt (1-based); the schedule's last step repeats."""
    return float(schedule[min(attempts, len(schedule)) - 1])


def refused_address(address: str) -> bool:
    """True for an address a webhook may not reach unless private destinations are allowed: private,
    loopback, link-local, multicast, reserved, unspecified (IPv4-mapped IPv6 judged as the IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def event_body(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> bytes:
    """The POSTed JSON: `{"type", "timestamp", "data": <job view>}` (compact, UTF-8)."""
    event = {"type": event_type, "timestamp": occurred_at.isoformat(), "data": data}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookSecretView(BaseModel):
    """This API key's signing secret: verify deliveries with it (Standard Webhooks libraries take it)."""

    secret: str = Field(description="`whsec_` and base64 bytes")
    previous_valid_until: datetime | None = Field(
        default=None,
        description="Until then, deliveries are also signed with the secret this one replaced (the header "
        "carries both signatures), so receivers can switch to the new secret at their own pace",
    )


class AttemptView(BaseModel):
    """One POST of a delivery."""

    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status; null after a network error")
    error: str | None
    duration_ms: int


class DeliveryView(BaseModel):
    """One webhook event of a job and every attempt to deliver it."""

    webhook_id: str = Field(description="The `webhook-id` header: the same on every attempt")
    type: str
    timestamp: datetime = Field(description="When the job ended (the event's `timestamp`)")
    status: str = Field(description="pending, delivered, or failed (gave up after 24 h)")
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    attempts: list[AttemptView]
