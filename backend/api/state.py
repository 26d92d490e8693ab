"""Process-wide resources of the API, built once in the lifespan and kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass

from backend.adapters.ratelimit import RateLimiter
from backend.resources import Resources
from backend.services.auth import Authenticator


@dataclass(frozen=True)
class AppState:
    """Everything a request may need: the shared clients and the API's own services."""

    resources: Resources
    authenticator: Authenticator
    rate_limiter: RateLimiter | None = None
