"""Deployment, checked offline: the image, the compose file, the Helm chart (rendered with helm-python-sdk,
validated with kubernetes-validate and yamllint) against the real CLI and API, and `make stack` end to end."""

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import dask.config
import pytest
import yaml

from aggregator.cli import parser
from aggregator.settings import SETTINGS
from server.app import create_app
from server.config import ServerSettings
from tests.conftest import POSTGRES_URL

helm = pytest.importorskip("helm_python", reason="the `deploy` extra (helm-python-sdk) is not installed")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
yamllint_config = pytest.importorskip("yamllint.config")
yamllint_linter = pytest.importorskip("yamllint.linter")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "telemetry-aggregates"
KUBERNETES_VERSION = "1.32.0"  # the oldest Kubernetes the chart is validated against (Chart.yaml: >=1.27)
APP_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}
SETTING_NAMES = {s.name for s in SETTINGS}
LINT = yamllint_config.YamlLintConfig(file=str(DEPLOY / "yamllint.yaml"))


# --- helpers -----------------------------------------------------------------------------------------------


def api_routes() -> set[str]:
    """The paths the API's router really serves."""
    settings = ServerSettings.from_env({"dsn": "postgresql://unused"})
    app = create_app(settings)
    return {resource.canonical for resource in app.router.resources()}


def lint(text: str, name: str) -> list[str]:
    return [f"{name}:{p.line}: {p.desc} ({p.rule})" for p in yamllint_linter.run(text, LINT) if p.level == "error"]


def values_file(name: str) -> dict:
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())


def render(values: dict) -> list[dict]:
    """Every object the chart renders with these values (hooks included), each linted and validated."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="ta", namespace="telemetry", is_install=True)
    objects = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for document in re.split(r"^---\s*$", text, flags=re.MULTILINE):
            if not document.strip():
                continue
            problems = lint("---\n" + document.strip() + "\n", template)
            assert not problems, problems
            objects.append(yaml.safe_load(document))
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD kubernetes-validate has no schema for; test_service_monitor checks it
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    return objects


def find(objects: list[dict], kind: str, suffix: str = "") -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    return found


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def container_ports(container: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.fixture(scope="module")
def default_objects() -> list[dict]:
    return render(values_file("default"))


@pytest.fixture(scope="module")
def everything_objects() -> list[dict]:
    return render(values_file("everything"))


# --- the image ---------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_pinned_and_reports_its_build():
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    assert len(bases) >= 2  # build stage, runtime stage
    assert all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base) for base in bases)  # a pinned tag
    assert "COPY --from=build /opt/venv /opt/venv" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    # /__version__ serves API_VERSION_FILE, whose default is where the image writes the build info.
    version_file = next(s.default for s in SETTINGS if s.name == "API_VERSION_FILE")
    assert f"> {version_file}" in dockerfile
    for field in ("source", "version", "commit", "build"):
        assert f'"{field}"' in dockerfile
        assert f"ARG {field.upper()}" in dockerfile


def test_the_image_writes_a_version_json_the_api_can_serve(tmp_path):
    """The Dockerfile's own RUN line, run in a shell with its ARG defaults, writes Dockerflow's version.json."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = dockerfile.split(" AS runtime", 1)[1]
    args = dict(re.findall(r"^ARG (\w+)=(.*)$", runtime, flags=re.MULTILINE))
    (line,) = [line for line in runtime.splitlines() if line.startswith("RUN printf")]
    version_file = next(s.default for s in SETTINGS if s.name == "API_VERSION_FILE")
    script = line.removeprefix("RUN ").replace(version_file, str(tmp_path / "version.json"))
    subprocess.run(["sh", "-c", script], env=args, check=True)
    document = json.loads((tmp_path / "version.json").read_text())
    assert document == {"source": args["SOURCE"], "version": args["VERSION"], "commit": "unknown", "build": "local"}
    assert "/__version__" in api_routes()


# --- compose -----------------------------------------------------------------------------------------------


def dask_command(name: str):
    if name == "scheduler":
        from distributed.cli.dask_scheduler import main
    else:
        from distributed.cli.dask_worker import main
    return main


def parse_dask(args: list[str]) -> dict:
    """`dask scheduler|worker ARGS` as the `dask` command's own (click) parser reads them."""
    command = dask_command(args[0])
    with command.make_context(f"dask {args[0]}", list(args[1:])) as context:
        return dict(context.params)


def test_compose_topology():
    text = (DEPLOY / "compose.yaml").read_text()
    assert not lint(text, "compose.yaml")
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "scheduler", "worker", "sample", "job", "api"}
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services["worker"]["deploy"]["replicas"] == 2
    for name, service in services.items():
        if name == "postgres":
            continue
        assert service["build"]["context"] == ".." and (DEPLOY / ".." / service["build"]["dockerfile"]).exists()
        assert "DATABASE_URL" in service["environment"]
        if service.get("entrypoint") == ["dask"]:
            parse_dask(service["command"])
        else:
            parser().parse_args(service["command"])
    # The job waits for the migration, the sample data and the workers; it runs on the scheduler.
    job = parser().parse_args(services["job"]["command"])
    assert job.command == "run" and job.date == ["20261101", "20261102"]
    assert services["job"]["environment"]["DASK_SCHEDULER_ADDRESS"] == "tcp://scheduler:8786"
    assert services["job"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "sample": {"condition": "service_completed_successfully"},
        "worker": {"condition": "service_healthy"},
    }
    sample = parser().parse_args(services["sample"]["command"])
    assert job.input == [sample.output]
    assert (sample.start_date, sample.days) == ("20261101", 2)  # the dates the job aggregates
    assert parser().parse_args(services["migrate"]["command"]).action == "init"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Health checks hit what the processes serve.
    assert "/__heartbeat__" in services["api"]["healthcheck"]["test"][-1]
    assert "/__heartbeat__" in api_routes()
    for name in ("scheduler", "worker"):
        assert "/health" in services[name]["healthcheck"]["test"][-1]
    worker = parse_dask(services["worker"]["command"])
    assert worker["scheduler"] == "tcp://scheduler:8786"
    assert worker["dashboard_address"].lstrip(":") in services["worker"]["healthcheck"]["test"][-1]


def test_make_up_and_down_use_the_compose_file():
    makefile = (ROOT / "Makefile").read_text()
    up = re.search(r"^up:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE).group(1)
    down = re.search(r"^down:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE).group(1)
    assert "-f deploy/compose.yaml up" in up and "COMPOSE ?= docker compose" in makefile
    assert "-f deploy/compose.yaml down" in down
    assert re.search(r"^stack:", makefile, flags=re.MULTILINE)


# --- the chart ---------------------------------------------------------------------------------------------


def test_chart_lints_and_the_source_yaml_is_clean():
    report = helm.lint(CHART, values_file("default"), strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    assert not report["errors"]
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    for path in [*CHART.glob("*.yaml"), *CHART.glob("ci/*.yaml"), DEPLOY / "yamllint.yaml"]:
        assert not lint(path.read_text(), path.name)


def test_every_object_has_the_recommended_labels_and_security_defaults(default_objects, everything_objects):
    for obj in default_objects + everything_objects:
        labels = obj["metadata"]["labels"]
        assert set(labels) >= APP_LABELS, obj["metadata"]["name"]
        assert labels["app.kubernetes.io/instance"] == "ta"
        if obj["kind"] not in {"Deployment", "Job", "CronJob"}:
            continue
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["resources"]["limits"]


def test_api_deployment_service_hpa_pdb_and_probes(default_objects):
    deployment = find(default_objects, "Deployment", "-api")
    (container,) = pod_spec(deployment)["containers"]
    args = parser().parse_args(container["args"])
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert container_ports(container) == {"http": args.port}
    routes = api_routes()
    assert container["livenessProbe"]["httpGet"] == {"path": "/__lbheartbeat__", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/__heartbeat__", "port": "http"}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    selector = deployment["spec"]["selector"]["matchLabels"]
    service = find(default_objects, "Service", "-api")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = find(default_objects, "HorizontalPodAutoscaler", "-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "ta-telemetry-aggregates-api",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = find(default_objects, "PodDisruptionBudget", "-api")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    # Settings and secrets come from the ConfigMap and the Secret; pods restart when they change.
    env_from = {next(iter(e.values()))["name"] for e in container["envFrom"]}
    assert env_from == {"ta-telemetry-aggregates-config", "ta-telemetry-aggregates-secrets"}
    assert {"checksum/config", "checksum/secret"} <= set(deployment["spec"]["template"]["metadata"]["annotations"])


def test_settings_are_declared_ones(default_objects):
    config = find(default_objects, "ConfigMap", "-config")
    assert set(config["data"]) <= SETTING_NAMES
    assert config["data"]["DASK_SCHEDULER_ADDRESS"] == "tcp://ta-telemetry-aggregates-scheduler:8786"
    secret = find(default_objects, "Secret", "-secrets")
    assert set(secret["stringData"]) <= SETTING_NAMES
    assert secret["stringData"]["DATABASE_URL"].startswith("postgresql://")


def test_scheduler_and_workers(default_objects, everything_objects):
    scheduler = find(default_objects, "Deployment", "-scheduler")
    (container,) = pod_spec(scheduler)["containers"]
    assert container["command"] == ["dask"]
    params = parse_dask(container["args"])
    ports = container_ports(container)
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert int(params["port"]) == ports["tcp-comm"] and params["dashboard_address"] == ":8787"
    # /health is a route of the scheduler's and the workers' HTTP servers.
    assert "distributed.http.health" in dask.config.get("distributed.scheduler.http.routes")
    assert "distributed.http.health" in dask.config.get("distributed.worker.http.routes")
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http-dashboard"}
    service = find(default_objects, "Service", "-scheduler")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports

    for objects in (default_objects, everything_objects):
        worker = find(objects, "Deployment", "-worker")
        (container,) = pod_spec(worker)["containers"]
        env = {e["name"]: e for e in container["env"]}
        # Threads from the CPU limit, memory limit from the memory limit (the downward API), as the CLI reads them.
        threads = env["WORKER_THREADS"]["valueFrom"]["resourceFieldRef"]
        memory = env["WORKER_MEMORY_LIMIT"]["valueFrom"]["resourceFieldRef"]
        assert (threads["resource"], memory["resource"]) == ("limits.cpu", "limits.memory")
        assert threads["containerName"] == memory["containerName"] == container["name"]
        args = [
            a.replace("$(WORKER_THREADS)", "2").replace("$(WORKER_MEMORY_LIMIT)", "4294967296")
            for a in container["args"]
        ]
        params = parse_dask([a.replace("$(POD_NAME)", "worker-0") for a in args])
        assert params["scheduler"] == "tcp://ta-telemetry-aggregates-scheduler:8786"
        assert (params["nthreads"], params["memory_limit"], params["n_workers"]) == (2, "4294967296", "1")
        http = container_ports(container)["http"]
        assert params["dashboard_address"] == f":{http}"
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
        assert worker["spec"]["replicas"] == (2 if objects is default_objects else 4)


def fake_aggregator(tmp_path: Path) -> Path:
    """A stand-in `aggregator` that prints its arguments as JSON: what the container's shell really passes."""
    stub = tmp_path / "aggregator"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stub.chmod(0o755)
    return tmp_path


def test_cronjob_runs_yesterday_against_the_scheduler(default_objects, tmp_path):
    cronjob = find(default_objects, "CronJob", "-daily")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 1
    spec = pod_spec(cronjob)
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    # Run the container's command line in a shell, with a stand-in `aggregator`, then parse what it received.
    env = {"PATH": f"{fake_aggregator(tmp_path)}:/usr/bin:/bin"}
    before = datetime.now(UTC).date()
    out = subprocess.run(
        [*container["command"], *container["args"]], env=env, capture_output=True, text=True, check=True
    )
    argv = json.loads(out.stdout)
    args = parser().parse_args(argv)
    assert args.command == "run"
    assert args.date in (
        [f"{before - timedelta(days=1):%Y%m%d}"],
        [f"{datetime.now(UTC).date() - timedelta(days=1):%Y%m%d}"],
    )
    assert args.scheduler == "tcp://ta-telemetry-aggregates-scheduler:8786"
    assert args.input == ["s3://telemetry-pings/main"] and args.snapshot == "s3://telemetry-aggregates/snapshot"
    assert not args.no_publish
    # Its settings (the DSN: the job publishes) come from the same ConfigMap and Secret as the API's.
    assert {next(iter(e.values()))["name"] for e in container["envFrom"]} == {
        "ta-telemetry-aggregates-config",
        "ta-telemetry-aggregates-secrets",
    }


def test_backfill_is_off_by_default_and_covers_the_range(default_objects, everything_objects):
    assert not [o for o in default_objects if "backfill" in o["metadata"]["name"]]
    backfill = find(everything_objects, "Job", "-backfill-20261028-20261103")
    (container,) = pod_spec(backfill)["containers"]
    args = parser().parse_args(container["args"])
    first = date(2026, 10, 28)
    assert args.date == [f"{first + timedelta(days=n):%Y%m%d}" for n in range(7)]  # across the month's end
    assert args.channels == ["nightly", "beta"] and args.max_bad_fraction == 0.1 and args.skip_unreadable
    assert args.input == ["/data/pings"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert backfill["spec"]["backoffLimit"] >= 1


def test_migrations_run_before_install_and_upgrade(default_objects, everything_objects):
    migrate = find(default_objects, "Job", "-migrate")
    annotations = migrate["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = pod_spec(migrate)["containers"]
    args = parser().parse_args(container["args"])
    assert (args.command, args.action) == ("db", "init")
    # Before the release's objects exist: its DSN comes from a hook Secret created earlier.
    hook_secret = find(default_objects, "Secret", "-migrate")
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    assert container["envFrom"] == [{"secretRef": {"name": hook_secret["metadata"]["name"]}}]
    # With an existing secret, that secret.
    migrate = find(everything_objects, "Job", "-migrate")
    (container,) = pod_spec(migrate)["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "telemetry-aggregates-db"}}]


def test_existing_secret_replaces_the_chart_secret(everything_objects):
    assert not [o for o in everything_objects if o["kind"] == "Secret"]
    for obj in everything_objects:
        if obj["kind"] in {"Deployment", "CronJob"} or obj["metadata"]["name"].endswith("backfill-20261028-20261103"):
            (container,) = pod_spec(obj)["containers"]
            assert {"secretRef": {"name": "telemetry-aggregates-db"}} in container["envFrom"]


def test_service_monitor(default_objects, everything_objects):
    assert not [o for o in default_objects if o["kind"] == "ServiceMonitor"]
    monitor = find(everything_objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    services = [o for o in everything_objects if o["kind"] == "Service"]
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"http", "http-dashboard"} <= ports
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])
    assert "/metrics" in api_routes()
    assert "distributed.http.scheduler.prometheus" in dask.config.get("distributed.scheduler.http.routes")
    components = next(e for e in monitor["spec"]["selector"]["matchExpressions"] if e["key"].endswith("component"))
    assert set(components["values"]) == {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in services}


BAD_VALUES = [
    {"api": {"replicas": 0}},
    {"worker": {"resources": {"limits": None}}},  # no limits: no threads nor memory limit
    {"worker": {"resources": {"limits": {"cpu": "lots"}}}},
    {"cronjob": {"schedule": "daily"}},
    {"backfill": {"enabled": True}},  # no range
    {"backfill": {"enabled": True, "from": "2026-11-01", "to": "20261102"}},
    {"image": {"pullPolicy": "Sometimes"}},
    {"config": {"DATABASE_URL": "postgresql://in-a-configmap"}},  # a secret in the ConfigMap
    {"secret": {"databaseUrl": "mysql://nope"}},
    {"replicaCount": 3},  # a typo: not a value of this chart
]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=[json.dumps(b)[:40] for b in BAD_VALUES])
def test_values_schema_rejects_a_bad_values_file(bad, tmp_path):
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(bad))
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values_file("default"))
        values = helm.values_from_yaml(path.read_text())
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(values)
        with pytest.raises(helm.HelmValuesError):
            chart.render(values_file("default") | values, name="ta")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"secret": {"databaseUrl": ""}}, "secret.databaseUrl (or secret.existingSecret) is required"),
        ({"job": {"input": ""}}, "job.input"),
        ({"backfill": {"enabled": True, "from": "20261105", "to": "20261101"}}, "is before backfill.from"),
        ({"backfill": {"enabled": True, "from": "20261131", "to": "20261201"}}, "not a calendar date"),
    ],
)
def test_render_refuses_incomplete_values(values, message):
    merged = values_file("default")
    for key, value in values.items():
        merged[key] = merged.get(key, {}) | value
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        chart.render(merged, name="ta")


def test_notes_tell_how_to_reach_the_api(default_objects):
    with helm.Chart.load(CHART) as chart:
        notes = chart.render(values_file("default"), name="ta", namespace="telemetry")[
            "telemetry-aggregates/templates/NOTES.txt"
        ]
    assert "svc/ta-telemetry-aggregates-api" in notes and "/__heartbeat__" in notes
    assert "create job --from=cronjob/ta-telemetry-aggregates-daily" in notes


def test_readme_values_exist_and_the_deploy_extra_is_in_dev():
    readme = (ROOT / "README.md").read_text()
    with helm.Chart.load(CHART) as chart:
        defaults = chart.values
    keys = re.findall(r"--set(?:-string)? ([\w.]+)=", readme)
    assert len(keys) >= 8
    for key in keys:
        node = defaults
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, key
            node = node[part]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["deploy"]) <= set(extras["dev"])


# --- make stack --------------------------------------------------------------------------------------------


async def _database_exists(name: str) -> bool:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie not yet reaped by its parent counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


@pytest.mark.cluster
def test_make_stack_serves_what_the_job_published(tmp_path):
    """deploy/stack.py (what `make stack` runs): scheduler, two workers, API, job, then a clean tear-down."""
    command = [sys.executable, str(DEPLOY / "stack.py"), "--pings", "300", "--workdir", str(tmp_path / "stack")]
    command += ["--postgres-url", POSTGRES_URL]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith(("stack ready", "stack failed")):
                break
        assert lines and lines[-1].startswith("stack ready"), "\n".join(lines)
        said = {line.split()[0]: line.split()[1:] for line in lines if line and not line.startswith(" ")}
        pids = [int(line.split()[2]) for line in lines if line.startswith("pid ")]
        assert [line.split()[1] for line in lines if line.startswith("pid ")] == [
            "scheduler",
            "worker-1",
            "worker-2",
            "api",
        ]
        database = said["database"][0]
        assert database.startswith("ta_stack_")
        base = said["api"][0]
        with urllib.request.urlopen(f"{base}/__heartbeat__", timeout=10) as response:
            assert json.load(response)["status"] == "ok"
        with urllib.request.urlopen(f"{base}/aggregates_by/submission_date/channels/", timeout=10) as response:
            channels = json.load(response)
        assert "nightly" in channels
        with urllib.request.urlopen(f"{base}/aggregates_by/build_id/channels/nightly/dates/", timeout=10) as r:
            dates = json.load(r)
        version = dates[0]["version"]
        url = f"{base}/aggregates_by/build_id/channels/nightly/?version={version}&dates={dates[0]['date']}&metric=GC_MS"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        assert answer["data"] and sum(entry["count"] for entry in answer["data"]) > 0
        with urllib.request.urlopen(f"{base}/__version__", timeout=10) as response:
            assert json.load(response)["build"] == "make stack"
        with urllib.request.urlopen(f"{said['dashboard'][0]}/health", timeout=10) as response:
            assert response.read() == b"ok"
        assert asyncio.run(_database_exists(database))
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert rest.rstrip().endswith("stack stopped"), rest
    assert not [pid for pid in pids if _alive(pid)]
    assert not asyncio.run(_database_exists(database))
