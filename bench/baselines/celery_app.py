"""A Celery 5 app on the same Redis, with the same no-op (bench-only; `celery` is in the `bench` extra).

Workers run as `celery -A bench.baselines.celery_app worker` with the broker in BENCH_CELERY_BROKER.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

app = Celery("bench", broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)

_client: redis.Redis | None = None


@app.task(name="bench.noop")
def noop(counter: str) -> None:
    """The no-op, plus one INCR so the bench can tell when all are done."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(app.conf.broker_url)
    _client.incr(counter)
