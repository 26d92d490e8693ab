"""The deploy files: every Kubernetes manifest against the Kubernetes schemas, and docker-compose.yml.

The schemas ship inside `kubernetes-validate` (nothing is fetched at test time); a missing package fails
with the install command. Besides the schemas, the checks tie the files to the code: probes on routes the
API has, env names the settings know, the metric the autoscaler reads is one `/metrics` exports, grace
periods longer than the worker's shutdown, no secret written into any file.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.api.health import router as health_router
from backend.core.config import Settings
from worker.settings import CRON_CONNECTIONS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
POLICY = ROOT / "deploy" / "s3-policy.json"
# The oldest Kubernetes these files are written for (autoscaling/v2 and policy/v1 are GA well before it),
# and the newest whose schemas the installed package ships.
OLDEST_K8S = "1.27.0"
INSTALL_HINT = "kubernetes-validate is not installed: pip install 'kubernetes-validate>=1.31' (the dev extra)"
# Env names the code reads itself, not through Settings (backend/cli.py).
READ_DIRECTLY = ("MIGRATIONS_DIR", "JOBPLATFORM_API_KEY")
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY($|_ID$)")
REQUIRED_FROM_ENV = re.compile(r"\$\{[A-Z0-9_]+:\?[^}]*\}")
PLACEHOLDER = "changeme"


def validator() -> Any:
    """kubernetes_validate's utils, or a failure naming the install command."""
    try:
        from kubernetes_validate import utils
    except ImportError:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return utils


@cache
def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every Kubernetes object in deploy/k8s, by file (kustomization.yaml is kustomize's, not the API's)."""
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def objects() -> list[dict[str, Any]]:
    return [doc for docs in manifests().values() for doc in docs]


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


@cache
def setting_names() -> frozenset[str]:
    """Every environment name the platform reads: Settings fields (and aliases), and the few read directly."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        names |= {a.upper() for a in (field.alias, field.validation_alias) if isinstance(a, str)}
    cli = (ROOT / "backend" / "cli.py").read_text()
    for name in READ_DIRECTLY:
        assert f'os.environ.get("{name}"' in cli, f"{name} is no longer read by backend/cli.py"
    return frozenset(names | set(READ_DIRECTLY))


# --- Kubernetes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [OLDEST_K8S, "latest"])
def test_every_manifest_is_valid_against_the_kubernetes_schema(version: str) -> None:
    utils = validator()
    version = utils.latest_version() if version == "latest" else version
    assert objects(), "no manifest found in deploy/k8s"
    for filename, docs in manifests().items():
        for doc in docs:
            try:
                utils.validate(doc, version, strict=True)  # strict: an unknown field is an error too
            except utils.ValidationError as exc:
                pytest.fail(f"{filename}: {doc['kind']} {doc['metadata']['name']}: {exc}", pytrace=False)


def test_the_validator_rejects_a_misspelt_field_and_a_wrong_type() -> None:
    utils = validator()
    api = one("Deployment", "jobplatform-api")
    misspelt = copy.deepcopy(api)
    misspelt["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {"httpGet": {"path": "/health"}}
    wrong_type = copy.deepcopy(api)
    wrong_type["spec"]["replicas"] = "two"
    for broken in (misspelt, wrong_type):
        with pytest.raises(utils.ValidationError):
            utils.validate(broken, utils.latest_version(), strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == set(manifests()) - {"secret.template.yaml"}


def test_api_probes_hit_the_health_routes_on_the_served_port() -> None:
    api, config = one("Deployment", "jobplatform-api"), one("ConfigMap", "jobplatform-config")
    spec = container(api)
    routes = {getattr(route, "path", None) for route in health_router.routes}
    assert spec["livenessProbe"]["httpGet"]["path"] == "/health" and "/health" in routes
    assert spec["readinessProbe"]["httpGet"]["path"] == "/ready" and "/ready" in routes
    assert spec["command"] == ["jobplatform", "api"]
    (port,) = spec["ports"]
    assert port["containerPort"] == int(config["data"]["PORT"])
    service = one("Service", "jobplatform-api")
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert service["spec"]["selector"] == api["spec"]["template"]["metadata"]["labels"]


def test_workers_get_longer_than_their_graceful_shutdown_and_scale_on_the_queue_gauge() -> None:
    worker, config = one("Deployment", "jobplatform-worker"), one("ConfigMap", "jobplatform-config")
    assert container(worker)["command"] == ["jobplatform", "worker"]
    grace = int(config["data"]["SHUTDOWN_GRACE_SECONDS"])
    # The grace, then handing back what still runs and closing the pools.
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= grace + 10
    assert "replicas" not in worker["spec"], "the autoscaler owns the worker count"

    hpa = one("HorizontalPodAutoscaler", "jobplatform-worker")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "jobplatform-worker",
    }
    (metric,) = hpa["spec"]["metrics"]
    exported = (ROOT / "backend" / "services" / "metrics.py").read_text()
    assert f'GaugeMetricFamily(\n            "{metric["external"]["metric"]["name"]}",' in exported  # a gauge


def test_disruption_budgets_cover_the_api_and_the_workers() -> None:
    budgets = [o for o in objects() if o["kind"] == "PodDisruptionBudget"]
    for name in ("jobplatform-api", "jobplatform-worker"):
        labels = one("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        (budget,) = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert "minAvailable" in budget["spec"] or "maxUnavailable" in budget["spec"]


def test_migrate_job_runs_the_migrations() -> None:
    job = one("Job", "jobplatform-migrate")
    (spec,) = job["spec"]["template"]["spec"]["containers"]
    assert spec["command"] == ["jobplatform", "migrate"]
    assert (
        'sub.add_parser("migrate", help="alembic upgrade head")' in (ROOT / "backend" / "cli.py").read_text()
    )


def test_every_env_name_in_the_manifests_is_a_setting() -> None:
    names = set(one("ConfigMap", "jobplatform-config")["data"])
    names |= set(one("Secret", "jobplatform-secrets")["stringData"])
    for obj in objects():
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        names |= {env["name"] for c in pod.get("containers", []) for env in c.get("env", [])}
    assert names - setting_names() == set()


def test_the_secret_is_a_template_of_placeholders_the_platform_refuses() -> None:
    holding = [f for f, docs in manifests().items() if any(d["kind"] == "Secret" for d in docs)]
    assert holding == ["secret.template.yaml"]
    secret = one("Secret", "jobplatform-secrets")
    assert "data" not in secret and secret["stringData"]
    assert all(PLACEHOLDER in value for value in secret["stringData"].values()), secret["stringData"]
    # Applied as it stands, the template would not start a platform on a guessable key.
    with pytest.raises(ValueError, match="placeholder"):
        Settings(environment="production", bootstrap_api_key=secret["stringData"]["BOOTSTRAP_API_KEY"])
    # Nothing secret went into the ConfigMap instead.
    config = one("ConfigMap", "jobplatform-config")["data"]
    assert not [k for k in config if SECRETISH.search(k)]
    assert not [v for v in config.values() if re.search(r"://[^/@\s]+:[^@\s]+@", v)]


def test_the_configmap_connection_budget_matches_the_settings() -> None:
    data = one("ConfigMap", "jobplatform-config")["data"]
    apis = one("Deployment", "jobplatform-api")["spec"]["replicas"]
    workers = one("HorizontalPodAutoscaler", "jobplatform-worker")["spec"]["maxReplicas"]
    per_worker = int(data["WORKER_CONCURRENCY"]) + CRON_CONNECTIONS
    budget = apis * int(data["DB_POOL_SIZE"]) + workers * per_worker
    text = (K8S / "configmap.yaml").read_text()
    assert f"+ {CRON_CONNECTIONS}" in text and f"= {budget}," in text, budget


# --- docker compose --------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # SafeLoader resolves `<<:` merges
    return loaded


def app_services() -> dict[str, dict[str, Any]]:
    """The services that run the platform's image."""
    return {n: s for n, s in compose()["services"].items() if s.get("image") == "jobplatform:local"}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_runs_api_worker_and_migrate_on_minio_with_the_bucket_made_first() -> None:
    services = compose()["services"]
    assert set(app_services()) == {"api", "worker", "migrate"}
    assert {"postgres", "redis", "minio", "minio-init"} <= set(services)
    env = env_of(services["api"])
    assert env["RESULTS_URL"].startswith("s3://") and env["S3_ENDPOINT_URL"] == "http://minio:9000"
    bucket, _, prefix = env["RESULTS_URL"].removeprefix("s3://").partition("/")
    init = services["minio-init"]
    script = "\n".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert f"mc mb --ignore-existing local/{bucket}" in script
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
        assert env_of(services[name])["RESULTS_URL"] == env["RESULTS_URL"]
    # The policy the init service loads names exactly this bucket and prefix.
    assert "./deploy/s3-policy.json:" in " ".join(init["volumes"])
    resources = {r for s in json.loads(POLICY.read_text())["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{prefix}/*"}


def test_compose_shares_no_results_volume_and_workers_scale() -> None:
    for name, service in app_services().items():
        assert not service.get("volumes"), (
            f"{name} mounts {service.get('volumes')}: nothing is shared on disk"
        )
    assert "results" not in (compose().get("volumes") or {})
    worker = compose()["services"]["worker"]
    # `docker compose up --scale worker=N` needs no fixed name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["stop_grace_period"] == "30s"


def test_compose_commits_no_secret() -> None:
    text = COMPOSE.read_text()
    for variable, operator in re.findall(r"\$\{(\w+)(:?[-?+]|\})", text):
        if SECRETISH.search(variable):
            assert operator == ":?", f"${{{variable}}} must be required from the environment, no default"
    for name, service in compose()["services"].items():
        for key, value in env_of(service).items():
            if SECRETISH.search(key):
                assert REQUIRED_FROM_ENV.fullmatch(value), f"{name}: {key} is written in the file"
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert REQUIRED_FROM_ENV.fullmatch(password), f"{name}: {key} holds a password"


def test_compose_env_names_are_settings_the_platform_knows() -> None:
    for name, service in app_services().items():
        unknown = set(env_of(service)) - setting_names()
        assert not unknown, f"{name}: {unknown} are no setting (backend/core/config.py)"
    dockerfile = (ROOT / "Dockerfile").read_text()
    env_block = re.findall(r"^ENV ((?:.*\\\n)*.*)$", dockerfile, re.MULTILINE)
    names = {m for block in env_block for m in re.findall(r"(\w+)=", block)}
    assert (
        names
        - setting_names()
        - {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK"}
        == set()
    )


def test_compose_redis_keeps_an_append_only_file() -> None:
    command = " ".join(compose()["services"]["redis"]["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
