"""Process-wide resources of the API, built once in the lifespan and kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.adapters.ratelimit import RateLimiter
from backend.resources import Resources
from backend.services.auth import Authenticator
from backend.services.jobs import JobService
from backend.services.quotas import QuotaGuard
from backend.services.sessions import SessionService
from backend.services.stats import ViewCache
from backend.services.watch import JobWatcher


@dataclass(frozen=True)
class AppState:
    """Everything a request may need: the shared clients and the API's own services."""

    resources: Resources
    authenticator: Authenticator
    watcher: JobWatcher
    quotas: QuotaGuard
    rate_limiter: RateLimiter
    sessions: SessionService
    jobs: JobService  # one per process: concurrent submissions share its group commit
    stats_views: ViewCache = field(default_factory=ViewCache)
