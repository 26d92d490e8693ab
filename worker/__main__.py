"""`python -m worker` (what `jobplatform worker` becomes): run one worker process in the foreground."""

from __future__ import annotations

from backend.core.config import get_settings
from backend.core.logging import configure_logging
from backend.launcher import export_metrics_dir


def main() -> None:
    """Run a worker with the settings of the environment (and `.env`)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.prometheus_multiproc_dir is not None:
        export_metrics_dir(settings.prometheus_multiproc_dir)
    # Imported only now: prometheus-client reads PROMETHEUS_MULTIPROC_DIR once, when it is first imported.
    from worker.settings import run_worker

    run_worker(settings)


if __name__ == "__main__":
    main()
