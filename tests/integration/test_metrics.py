"""`/metrics` across processes: a real `jobplatform api --workers 2` and two real worker processes share
one PROMETHEUS_MULTIPROC_DIR; every count the page shows must equal what the test did, exactly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from backend.adapters.webhook_http import WebhookPoster
from backend.core.embedded import free_port
from backend.core.metrics import REGISTRY
from backend.db.pool import asyncpg_dsn
from backend.launcher import ChildProcess, platform_command
from backend.repo.jobs import LIVE_COUNTS, OLDEST_DUE_WAIT
from backend.repo.stats import StatsRepository
from backend.services.webhooks import WebhookSender
from tests.utils.receiver import receiving
from tests.utils.stack import ROOT, serve_api, settings_env

Labels = tuple[tuple[str, str], ...]
TERMINAL = {"completed", "failed", "cancelled"}


def scrape(text: str) -> dict[str, dict[Labels, float]]:
    """Every sample of a Prometheus page: name -> sorted labels -> value."""
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def series(samples: dict[str, dict[Labels, float]], name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """One metric's non-zero values keyed by the given labels' values."""
    return {
        tuple(dict(labels)[k] for k in keys): value
        for labels, value in samples.get(name, {}).items()
        if value
    }


class Api:
    """An HTTP client that tallies every answer it got by (method, route template, status)."""

    def __init__(self, base: str, key: str) -> None:
        # No keep-alive: each request is a new connection, which either API process may accept.
        limits = httpx.Limits(max_keepalive_connections=0)
        self.http = httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, limits=limits, timeout=30)
        self.sent: Counter[tuple[str, str, str]] = Counter()

    async def call(self, method: str, route: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, **kwargs)
        self.sent[(method, route, str(response.status_code))] += 1
        return response

    async def submit(self, type_: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = {"type": type_, "payload": payload, **extra}
        response = await self.call("POST", "/jobs", "/jobs", json=body)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    async def metrics(self) -> dict[str, dict[Labels, float]]:
        response = await self.call("GET", "/metrics", "/metrics")
        assert response.status_code == 200
        return scrape(response.text)

    async def wait_ended(self, job_id: str, timeout: float = 30) -> dict[str, Any]:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = (await self.call("GET", "/jobs/{job_id}", f"/jobs/{job_id}")).json()
            if job["status"] in TERMINAL:
                return job
            await asyncio.sleep(0.1)
        raise AssertionError(f"job {job_id} did not end: {job}")


Samples = dict[str, dict[Labels, float]]


async def until(api: Api, check: Callable[[Samples], bool], timeout: float = 30) -> None:  # noqa: ASYNC109
    """Scrape until `check` holds (the stats duty folds job ends every second here)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await api.metrics()
        if check(samples) or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.3)


EXPECTED_ENDS = {
    ("square_sum", "completed"): 8,
    ("square_sum", "cancelled"): 1,  # the child of the failed job, cancelled by the database's trigger
    ("sleep", "completed"): 2,
    ("sleep", "retried"): 3,
    ("sleep", "failed"): 1,
    ("sleep", "cancelled"): 1,  # cancelled by the API while it waited
}


async def run_jobs(api: Api, ok_url: str, flaky_url: str) -> list[str]:
    """Jobs that end every way there is: completed, retried then completed, failed, cancelled (by a
    client, and by a parent's failure); two of them tell a webhook."""
    sums = [api.submit("square_sum", {"data": [1, 2, i]}) for i in range(6)]
    jobs = await asyncio.gather(
        *sums,
        api.submit("square_sum", {"data": [1]}, webhook_url=ok_url),
        api.submit("square_sum", {"data": [2]}, webhook_url=flaky_url),
        api.submit("sleep", {"seconds": 0, "fail_first": 1}),
        api.submit("sleep", {"seconds": 0, "fail_first": 1}),
        api.submit("sleep", {"seconds": 0}, scheduled_at="2999-01-01T00:00:00Z"),
    )
    failing = await api.submit("sleep", {"seconds": 0, "fail_first": 5}, max_attempts=2)
    child = await api.submit("square_sum", {"data": [3]}, depends_on=[failing["id"]])
    later = jobs[-1]["id"]
    cancel = await api.call("POST", "/jobs/{job_id}/cancel", f"/jobs/{later}/cancel")
    assert cancel.status_code == 202, cancel.text
    ids = [j["id"] for j in (*jobs, failing, child)]
    ended = {job_id: (await api.wait_ended(job_id))["status"] for job_id in ids}
    assert ended[failing["id"]] == "failed" and ended[child["id"]] == "cancelled", ended
    return ids


async def both_api_processes_answered(api: Api, folder: Path) -> None:
    """Requests until each of the two API processes has answered some (a histogram file each: only API
    processes observe one). The kernel hands a new connection to either."""
    for _ in range(400):
        if len(await asyncio.to_thread(lambda: list(folder.glob("histogram_*.db")))) >= 2:
            return
        await api.call("GET", "/health", "/health")
    raise AssertionError("one API process answered every request")


async def test_counts_add_up_across_api_and_worker_processes(isolated: Any, tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    overrides = {"prometheus_multiproc_dir": folder, "stats_interval_seconds": 1}
    async with (
        isolated(workers=2, **overrides) as stack,
        receiving(lambda n: 204) as ok,
        receiving(lambda n: 500 if n == 0 else 204) as flaky,
        serve_api(stack.settings, tmp_path / "api.log", workers=2) as base,
    ):
        api = Api(base, await stack.new_key())
        await run_jobs(api, ok.url, flaky.url)
        await ok.wait_requests(1)
        await flaky.wait_requests(2)
        await both_api_processes_answered(api, folder)

        def settled(s: Samples) -> bool:
            ends = series(s, "jobplatform_jobs_finished_total", "type", "outcome")
            attempts = series(s, "jobplatform_webhook_deliveries_total", "outcome")
            return ends == EXPECTED_ENDS and sum(attempts.values()) >= 3

        await until(api, settled)
        samples = await api.metrics()
        assert series(samples, "jobplatform_jobs_finished_total", "type", "outcome") == EXPECTED_ENDS
        # Jobs that ran at all: their wait and run times are observed once, when they end.
        for measure in ("wait", "run"):
            counts = series(samples, f"jobplatform_job_{measure}_seconds_count", "type")
            assert counts == {("square_sum",): 8, ("sleep",): 3}, (measure, counts)
            inf = series(samples, f"jobplatform_job_{measure}_seconds_bucket", "type", "le")
            assert inf[("sleep", "+Inf")] == 3
        # Cumulative buckets, as Prometheus has them.
        run = series(samples, "jobplatform_job_run_seconds_bucket", "type", "le")
        sleep_buckets = sorted((float(le), n) for (t, le), n in run.items() if t == "sleep")
        assert [n for _, n in sleep_buckets] == sorted(n for _, n in sleep_buckets)
        webhooks = series(samples, "jobplatform_webhook_deliveries_total", "outcome")
        assert webhooks == {("delivered",): 2, ("failed",): 1}
        # Every answer either API process gave, counted once: this scrape is counted after it answers, and
        # serve_api's readiness probe got one 200 from /health before the test began.
        expected = Counter(api.sent)
        expected[("GET", "/metrics", "200")] -= 1
        expected[("GET", "/health", "200")] += 1
        http = series(samples, "jobplatform_http_requests_total", "method", "route", "status")
        assert http == {k: float(v) for k, v in expected.items() if v}
        durations = series(samples, "jobplatform_http_request_duration_seconds_count", "method", "route")
        assert durations[("POST", "/jobs")] == 13

        # A worker killed, an API replaced: what they counted stays (counters never go down).
        stack.workers[0].kill()
        sent_before = Counter(api.sent)
    async with serve_api(stack.settings, tmp_path / "api2.log") as base:
        again = Api(base, "unused")
        samples = await again.metrics()
    assert series(samples, "jobplatform_webhook_deliveries_total", "outcome") == webhooks
    http = series(samples, "jobplatform_http_requests_total", "method", "route", "status")
    assert http[("POST", "/jobs", "201")] == sent_before[("POST", "/jobs", "201")] == 13
    assert http[("GET", "/metrics", "200")] == sent_before[("GET", "/metrics", "200")]

    # A host with workers only serves its folder with `jobplatform metrics`: the same process counts.
    port = free_port()
    env = {**settings_env(stack.settings), "HOST": "127.0.0.1"}
    exporter = ChildProcess(platform_command("metrics", "--port", str(port)), env=env, cwd=ROOT).start()
    try:
        page = await scrape_when_up(f"http://127.0.0.1:{port}/metrics")
    finally:
        assert await exporter.terminate_async(10) == 0
    assert series(page, "jobplatform_webhook_deliveries_total", "outcome") == webhooks
    assert "jobplatform_jobs_finished_total" not in page  # fleet-wide series come from the API only


async def scrape_when_up(url: str) -> dict[str, dict[Labels, float]]:
    async with httpx.AsyncClient() as http:
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                return scrape((await http.get(url)).raise_for_status().text)
            await asyncio.sleep(0.1)
    raise AssertionError(f"nothing serves {url}")


async def test_refused_webhook_attempts_are_counted(isolated: Any) -> None:
    """A destination the sender may not reach (loopback, with WEBHOOK_ALLOW_PRIVATE off) counts as
    refused, in the process that tried."""
    async with isolated(workers=0) as stack, await stack.client() as client:
        job = (
            await client.post(
                "/jobs",
                json={
                    "type": "sleep",
                    "payload": {"seconds": 0},
                    "scheduled_at": "2999-01-01T00:00:00Z",
                    "webhook_url": "http://127.0.0.1:9/hook",
                },
            )
        ).json()
        assert (await client.post(f"/jobs/{job['id']}/cancel")).status_code == 202
        refused = {"outcome": "refused"}
        before = REGISTRY.get_sample_value("jobplatform_webhook_deliveries_total", refused)
        assert before is not None
        strict = stack.settings.model_copy(update={"webhook_allow_private": False})
        assert stack.app is not None
        sender = WebhookSender(strict, stack.app.state.platform.resources.pool)
        try:
            assert isinstance(sender.poster, WebhookPoster)
            assert await sender.send_due() == 1
        finally:
            await sender.aclose()
        assert REGISTRY.get_sample_value("jobplatform_webhook_deliveries_total", refused) == before + 1
        page = scrape((await client.get("/metrics")).text)
        assert page["jobplatform_webhook_deliveries_total"][(("outcome", "refused"),)] == before + 1


async def _plan(conn: asyncpg.Connection, sql: str) -> list[dict[str, Any]]:
    """Every node of the statement's plan."""
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}")
    nodes, todo = [], [json.loads(raw)[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo += node.get("Plans", [])
    return nodes


async def test_gauge_queries_read_live_jobs_only(isolated: Any) -> None:
    """The gauges' statements are served by the partial indexes of waiting and running jobs: with 100,000
    ended jobs in the table, no plan reads the table itself."""
    async with isolated(workers=0) as stack:
        await stack.new_key("owner")
        conn = await asyncpg.connect(asyncpg_dsn(stack.settings.require_database_url()))
        try:
            await conn.execute(
                """
                INSERT INTO jobs (id, owner_id, type, payload, status, finished_at)
                SELECT gen_random_uuid(), (SELECT id FROM api_keys LIMIT 1), 'sleep', '{}',
                       CASE WHEN i % 10000 = 0 THEN 'pending' ELSE 'completed' END, now()
                FROM generate_series(1, 100000) AS i
                """
            )
            await conn.execute("ANALYZE jobs")
            for sql in (LIVE_COUNTS, OLDEST_DUE_WAIT):
                scans = [n for n in await _plan(conn, sql) if n.get("Relation Name") == "jobs"]
                assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), (sql, scans)
                assert all(n.get("Index Name", "").startswith("ix_jobs_") for n in scans), scans
        finally:
            await conn.close()


async def test_the_fold_puts_each_time_in_its_le_bucket_and_counts_every_outcome(isolated: Any) -> None:
    """A value equal to a bound is in that bound's bucket (Prometheus' `le`: less or equal); past the last
    bound, +Inf. Creations are not ends; retries are counted but not timed."""
    async with isolated(workers=0) as stack:
        await stack.new_key("owner")
        conn = await asyncpg.connect(asyncpg_dsn(stack.settings.require_database_url()))
        try:
            await conn.execute(
                """
                INSERT INTO stats_events (at, owner_id, type, kind, wait_s, run_s)
                SELECT now(), (SELECT id FROM api_keys LIMIT 1), 'sleep', kind, wait_s, run_s
                FROM (VALUES (0, NULL, NULL), (1, 0.005, 0.0), (1, 0.0051, 7200.0), (2, -1.0, 7200.5),
                             (3, NULL, NULL), (4, NULL, NULL), (4, NULL, NULL))
                    AS e(kind, wait_s, run_s)
                """
            )
            await refresh_stats_now(conn)
            totals = {(r["outcome"], r["n"]) for r in await conn.fetch("SELECT * FROM metrics_job_totals")}
            seconds = {
                (r["measure"], r["le"], r["n"], r["sum_s"])
                for r in await conn.fetch("SELECT * FROM metrics_job_seconds")
            }
        finally:
            await conn.close()
    assert totals == {("completed", 2), ("failed", 1), ("cancelled", 1), ("retried", 2)}
    assert seconds == {
        (0, 0.005, 2, 0.005),  # -1 s (clock skew) counts as 0
        (0, 0.01, 1, 0.0051),
        (1, 0.005, 1, 0.0),
        (1, 7200.0, 1, 7200.0),
        (1, float("inf"), 1, 7200.5),
    }


async def refresh_stats_now(conn: asyncpg.Connection) -> None:
    """One fold of the stats events on this connection, as the worker's duty runs it."""
    async with conn.transaction():
        await StatsRepository(conn).fold_events(1000)


async def test_a_job_born_cancelled_is_counted(isolated: Any) -> None:
    """A child submitted after its parent was cancelled is inserted cancelled: its end counts too."""
    async with isolated(workers=0) as stack, await stack.client() as client:
        later = {"type": "sleep", "payload": {"seconds": 0}, "scheduled_at": "2999-01-01T00:00:00Z"}
        parent = (await client.post("/jobs", json=later)).json()
        assert (await client.post(f"/jobs/{parent['id']}/cancel")).status_code == 202
        child = {"type": "square_sum", "payload": {"data": [1]}, "depends_on": [parent["id"]]}
        response = await client.post("/jobs", json=child)
        assert response.status_code == 201 and response.json()["status"] == "cancelled"
        conn = await asyncpg.connect(asyncpg_dsn(stack.settings.require_database_url()))
        try:
            await refresh_stats_now(conn)
            totals = {
                (r["type"], r["outcome"], r["n"])
                for r in await conn.fetch("SELECT * FROM metrics_job_totals")
            }
        finally:
            await conn.close()
    assert totals == {("sleep", "cancelled", 1), ("square_sum", "cancelled", 1)}
