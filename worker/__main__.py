"""`python -m worker` (what `jobplatform worker` becomes): run one worker process in the foreground."""

from __future__ import annotations

from backend.core.config import get_settings
from backend.core.logging import configure_logging
from worker.settings import run_worker

if __name__ == "__main__":
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    run_worker(settings)
