"""The Grafana dashboard that ships in deploy/grafana asks only for what `/metrics` exposes: every metric
its queries name, and every label they match on or group by."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.utils.stack import ROOT, Stack

DASHBOARD = ROOT / "deploy" / "grafana" / "jobplatform.json"
METRIC = re.compile(r"\bjobplatform_[a-z0-9_]+\b")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression: the panels' targets and the template variables' queries."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            yield query["query"]


def labels_used(expr: str) -> set[str]:
    """Label names an expression groups by or matches on (a label_values() argument too)."""
    used = {name.strip() for group in GROUPING.findall(expr) for name in group.split(",") if name.strip()}
    used |= {name for selector in SELECTOR.findall(expr) for name in MATCHER.findall(selector)}
    used |= set(re.findall(r"label_values\(\s*[a-z0-9_]+\s*,\s*([a-z_]+)\s*\)", expr))
    return used


async def exposed(stack: Stack, client: httpx.AsyncClient) -> dict[str, set[str]]:
    """Sample name -> its label names, as the app's /metrics shows them (after a request, so that the
    HTTP series exist)."""
    assert (await client.get("/jobs")).status_code == 200
    assert stack.app_client is not None
    page = (await stack.app_client.get("/metrics")).text
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


async def test_every_metric_and_label_the_dashboard_uses_is_exposed(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    samples = await exposed(stack, client)
    dashboard = load(DASHBOARD)
    exprs = list(queries(dashboard))
    assert len(exprs) >= 10
    for expr in exprs:
        names = set(METRIC.findall(expr))
        assert names, f"no platform metric in {expr!r}"
        missing = names - set(samples)
        assert not missing, f"{expr!r} asks for {missing}, which /metrics does not expose"
        known = set().union(*(samples[name] for name in names))
        assert labels_used(expr) <= known, f"{expr!r} uses labels {labels_used(expr) - known}"


def test_the_dashboard_is_well_formed() -> None:
    dashboard = load(DASHBOARD)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "jobplatform"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"DS", "type"} <= variables
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS}"}
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and panel["targets"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            # Fleet-wide series are the same on every API instance: summing them would multiply them.
            for name in ("jobplatform_jobs_finished_total", "jobplatform_job_wait_seconds_bucket"):
                if name in target["expr"]:
                    assert "max by" in target["expr"], target["expr"]
