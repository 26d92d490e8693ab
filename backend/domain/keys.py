"""API key schemas for the admin API: what an admin sends (`KeyCreate`) and sees (`KeyPublic`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.adapters.ratelimit import RateLimit
from backend.domain.enums import KeyRole


class KeySettings(BaseModel):
    """A key's role and its own limits (unset: the platform's settings)."""

    role: KeyRole = Field(default=KeyRole.CLIENT, description="`admin` also sees every tenant and the keys.")
    max_running: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Jobs running at once; unset: MAX_RUNNING_JOBS_PER_KEY."
    )
    rate_limit: str | None = Field(
        default=None,
        max_length=32,
        description="Requests per window, e.g. `100/minute` (second, minute, hour); unset: RATE_LIMIT.",
        json_schema_extra={"pattern": "^[0-9]+/(second|minute|hour)$"},
    )


class KeyCreate(KeySettings):
    """A new key, as an admin asks for it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=100, pattern="^[^\\u0000]*$", description="A label for people."
    )

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_form(cls, value: str | None) -> str | None:
        if value is not None:
            RateLimit.parse(value)
        return value


class KeyPublic(KeySettings):
    """A key as the admin API shows it: never its secret nor its hash."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    """A key just created: the only response that carries its secret."""

    secret: str = Field(description="The API key itself: shown once, store it now.")
