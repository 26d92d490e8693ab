"""Domain errors: services raise these; only `backend/api` turns them into HTTP responses."""

from __future__ import annotations


class PlatformError(Exception):
    """Something went wrong in the job platform."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class RetryLater(PlatformError):
    """Not now; retry after `retry_after_s` seconds"""

    def __init__(self, message: str | None, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BatchNotFound(PlatformError):
    """Batch not found"""


class JobNotFound(PlatformError):
    """Job not found"""


class LinkExpired(PlatformError):
    """This download link has expired; ask for a new one"""


class ScheduleNotFound(PlatformError):
    """Schedule not found"""


class KeyNotFound(PlatformError):
    """API key not found"""


class UnknownJobType(PlatformError):
    """No job type has this name"""


class JobStateConflict(PlatformError):
    """The job's current status does not allow this operation"""


class JobStateChanging(PlatformError):
    """The job is changing status right now; retry shortly"""


class TooManyStreams(PlatformError):
    """Too many open event streams for this API key; close one or retry later"""


class QuotaExceeded(RetryLater):
    """A per-key limit is reached; retry later"""


class FieldError(PlatformError):
    """A request field is not acceptable (answered like a validation error, naming the field)"""

    def __init__(self, message: str, loc: tuple[str | int, ...], code: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.code = code


class ResultNotReady(PlatformError):
    """The job has not produced a file yet"""


class ResultGone(PlatformError):
    """The job's file is no longer available"""


class IdempotencyKeyInvalid(PlatformError):
    """Idempotency-Key must be 1-255 printable ASCII characters"""


class IdempotencyKeyMissing(PlatformError):
    """Idempotency-Key header is required"""


class IdempotencyKeyInFlight(PlatformError):
    """Idempotency-Key is in use by another request; retry shortly"""


class IdempotencyKeyReused(PlatformError):
    """Idempotency-Key was already used with a different request (method, path or body)"""


class AuthThrottled(RetryLater):
    """Too many failed authentications from this address; retry later"""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(None, retry_after_s)


class JobFailure(PlatformError):
    """The job failed; its message is written for the client (a handler raises this on purpose)"""


class PermanentJobError(JobFailure):
    """The job cannot succeed however often it is retried"""


class DatabaseNotMigrated(PlatformError):
    """The database schema is not up to date: run `jobplatform migrate` (alembic upgrade head)"""
