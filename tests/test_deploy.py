"""Deployment, checked offline: the image, the compose file, the Helm chart (rendered with helm-python-sdk,
validated with kubernetes-validate and yamllint) against the real CLI and API, and `make stack` end to end."""

import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import dask.config
import pytest
import yaml
from cryptography import x509
from distributed.security import Security

from aggregator.cli import parser
from aggregator.job import WORKER_MALLOC, worker_environment
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


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in {"Deployment", "Job", "CronJob"}]


def env_of(container: dict) -> dict[str, str]:
    """The container's plain environment values (not those read from a Secret or the downward API)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def secrets_of(container: dict) -> dict[str, tuple[str, str]]:
    """{variable: (secret, key)} of what the container reads from Secrets, one variable at a time or whole."""
    found = {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert not [e for e in container.get("envFrom", []) if "secretRef" in e]  # never a whole Secret
    return found


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
    assert set(services) == {"postgres", "dask-tls", "migrate", "scheduler", "worker", "sample", "job", "api"}
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services["worker"]["deploy"]["replicas"] == 2
    for name, service in services.items():
        if name == "postgres":
            continue
        assert service["build"]["context"] == ".." and (DEPLOY / ".." / service["build"]["dockerfile"]).exists()
        if service.get("entrypoint") == ["dask"]:
            parse_dask(service["command"])
        elif name != "dask-tls":
            parser().parse_args(service["command"])
    # Only what reads or writes the store gets a DSN.
    assert {n for n, s in services.items() if "DATABASE_URL" in s.get("environment", {})} == {"migrate", "job", "api"}
    # The job waits for the migration, the sample data and the workers; it runs on the scheduler.
    job = parser().parse_args(services["job"]["command"])
    assert job.command == "run" and job.date == ["20261101", "20261102"]
    assert services["job"]["environment"]["DASK_SCHEDULER_ADDRESS"] == "tls://scheduler:8786"
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
    assert worker["scheduler"] == "tls://scheduler:8786"
    assert_worker_malloc(services["worker"]["environment"])
    assert worker["dashboard_address"].lstrip(":") in services["worker"]["healthcheck"]["test"][-1]


def test_compose_is_locked_down(tmp_path):
    """No default password; internal ports on 127.0.0.1 alone; Dask speaks TLS with the certificates the
    `dask-tls` service makes with deploy/dask_tls.py, as the Dockerfile installs it."""
    text = (DEPLOY / "compose.yaml").read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD([^}]*)\}", text)
    assert uses and all(use.startswith(":?") for use in uses)  # compose refuses to start without it
    services = yaml.safe_load(text)["services"]
    for name in ("postgres", "scheduler", "worker", "migrate", "sample", "job", "dask-tls"):
        assert all(str(port).startswith("127.0.0.1:") for port in services[name].get("ports", [])), name
    assert services["scheduler"]["ports"] == ["127.0.0.1:8786:8786", "127.0.0.1:8787:8787"]
    assert parse_dask(services["scheduler"]["command"])["protocol"] == "tls"
    for name, role in (("scheduler", "scheduler"), ("worker", "worker"), ("job", "client")):
        environment = {k: str(v) for k, v in services[name]["environment"].items()}
        config = dask.config.collect_env(environment)["distributed"]["comm"]
        assert config["require_encryption"] is True
        files = {config["tls"]["ca_file"], config["tls"][role]["cert"], config["tls"][role]["key"]}
        assert "dask-tls:/etc/dask-tls:ro" in services[name]["volumes"]
        assert files == {f"/etc/dask-tls/{f}" for f in ("ca.crt", "tls.crt", "tls.key")}
        assert "depends_on" in services[name]  # after the certificates (through the scheduler)
    assert services["scheduler"]["depends_on"]["dask-tls"] == {"condition": "service_completed_successfully"}
    maker = services["dask-tls"]
    script = maker["entrypoint"][-1]
    assert f"COPY deploy/dask_tls.py {script}" in (ROOT / "Dockerfile").read_text()
    assert maker["volumes"] == ["dask-tls:/etc/dask-tls"] and maker["command"] == ["/etc/dask-tls"]
    # What it runs, run here: the three files, and a second run keeps them.
    run = [sys.executable, str(DEPLOY / "dask_tls.py"), str(tmp_path)]
    subprocess.run(run, check=True, capture_output=True)
    first = (tmp_path / "tls.crt").read_bytes()
    assert "kept" in subprocess.run(run, check=True, capture_output=True, text=True).stdout
    assert (tmp_path / "tls.crt").read_bytes() == first


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
    assert container_ports(container) == {"http": args.port, "metrics": int(env_of(container)["API_METRICS_PORT"])}
    routes = api_routes()
    assert container["livenessProbe"]["httpGet"] == {"path": "/__lbheartbeat__", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/__ready__", "port": "http"}
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
    # Settings come from the ConfigMap (secrets: test_each_pod_gets_the_secrets_it_uses); pods restart on changes.
    assert container["envFrom"] == [{"configMapRef": {"name": "ta-telemetry-aggregates-config"}}]
    assert {"checksum/config", "checksum/secret"} <= set(deployment["spec"]["template"]["metadata"]["annotations"])


def test_settings_are_declared_ones(default_objects):
    config = find(default_objects, "ConfigMap", "-config")
    assert set(config["data"]) <= SETTING_NAMES
    assert config["data"]["DASK_SCHEDULER_ADDRESS"] == "tls://ta-telemetry-aggregates-scheduler:8786"
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
    assert params["protocol"] == "tls"
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
        assert params["scheduler"] == "tls://ta-telemetry-aggregates-scheduler:8786"
        assert (params["nthreads"], params["memory_limit"], params["n_workers"]) == (2, "4294967296", "1")
        ports = container_ports(container)
        assert params["dashboard_address"] == f":{ports['http']}"
        assert (int(params["worker_port"]), int(params["nanny_port"])) == (ports["tcp-worker"], ports["tcp-nanny"])
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
        assert worker["spec"]["replicas"] == (2 if objects is default_objects else 4)
        assert_worker_malloc({name: e.get("value") for name, e in env.items()})


def assert_worker_malloc(env: dict[str, str]) -> None:
    """A deployment's workers get the job's WORKER_MALLOC through the variable distributed reads (a literal,
    merged into its defaults)."""
    ((name, _),) = worker_environment().items()
    assert dask.config.collect_env({name: env[name]}) == {
        "distributed": {"nanny": {"pre_spawn_environ": WORKER_MALLOC}}
    }


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
    assert args.scheduler == "tls://ta-telemetry-aggregates-scheduler:8786"
    assert args.input == ["s3://telemetry-pings/main"] and args.snapshot == "s3://telemetry-aggregates/snapshot"
    assert not args.no_publish
    # Its settings come from the same ConfigMap as the API's; its DSN is the read-write one (it publishes).
    assert container["envFrom"] == [{"configMapRef": {"name": "ta-telemetry-aggregates-config"}}]
    assert secrets_of(container) == {"DATABASE_URL": ("ta-telemetry-aggregates-secrets", "DATABASE_URL")}


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
    assert secrets_of(container) == {"DATABASE_URL": (hook_secret["metadata"]["name"], "DATABASE_URL")}
    assert "envFrom" not in container
    # With an existing secret, that secret.
    migrate = find(everything_objects, "Job", "-migrate")
    (container,) = pod_spec(migrate)["containers"]
    assert secrets_of(container) == {"DATABASE_URL": ("telemetry-aggregates-db", "DATABASE_URL")}


def test_existing_secrets_replace_the_chart_secrets(everything_objects):
    assert not [o for o in everything_objects if o["kind"] == "Secret"]
    names = set()
    for obj in workloads(everything_objects):
        (container,) = pod_spec(obj)["containers"]
        names |= {name for name, _ in secrets_of(container).values()}
        names |= {v["secret"]["secretName"] for v in pod_spec(obj)["volumes"] if "secret" in v}
    assert names == {"telemetry-aggregates-db", "telemetry-aggregates-dask-certificates"}


def test_service_monitor(default_objects, everything_objects):
    assert not [o for o in default_objects if o["kind"] == "ServiceMonitor"]
    monitor = find(everything_objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    services = [o for o in everything_objects if o["kind"] == "Service"]
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics", "http-dashboard"} <= ports
    metrics = find(everything_objects, "Service", "-api-metrics")
    api = find(everything_objects, "Deployment", "-api")
    assert metrics["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    (container,) = pod_spec(api)["containers"]
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": container_ports(container)["metrics"], "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert "metrics" not in {p["name"] for p in find(everything_objects, "Service", "-api")["spec"]["ports"]}
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])
    assert "/metrics" in api_routes()
    assert "distributed.http.scheduler.prometheus" in dask.config.get("distributed.scheduler.http.routes")
    components = next(e for e in monitor["spec"]["selector"]["matchExpressions"] if e["key"].endswith("component"))
    assert set(components["values"]) == {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in services}


# --- secrets, Dask TLS and network policies ---------------------------------------------------------------

COMPONENT = "app.kubernetes.io/component"


def by_component(objects: list[dict]) -> dict[str, dict]:
    """The container of each workload, by its component label (api, scheduler, worker, job, backfill, migrate)."""
    found = {}
    for obj in workloads(objects):
        spec = pod_spec(obj)
        labels = (obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"])["template"]
        (container,) = spec["containers"]
        found[labels["metadata"]["labels"][COMPONENT]] = container
    return found


@pytest.mark.parametrize(
    ("secret", "api_reads"),
    [
        ({"databaseUrl": "postgresql://rw:w@db:5432/telemetry"}, "DATABASE_URL"),
        (
            {
                "databaseUrl": "postgresql://rw:w@db:5432/telemetry",
                "databaseRoUrl": "postgresql://ro:r@replica/telemetry",
            },
            "DATABASE_RO_URL",
        ),
        ({"existingSecret": "mine"}, "DATABASE_URL"),
        ({"existingSecret": "mine", "existingSecretHasReadOnlyUrl": True}, "DATABASE_RO_URL"),
    ],
)
def test_each_pod_gets_the_secrets_it_uses(secret, api_reads):
    """The Dask pods no DSN (a client that got in could read their environment), the jobs and the migration the
    read-write one, the API the read-only one when there is one."""
    objects = render(values_file("default") | {"secret": secret})
    containers = by_component(objects)
    assert set(containers) == {"api", "scheduler", "worker", "job", "migrate"}
    read = {component: set(secrets_of(container)) for component, container in containers.items()}
    assert read == {
        "api": {api_reads, "AUTH_JWKS"},
        "scheduler": set(),
        "worker": set(),
        "job": {"DATABASE_URL"},
        "migrate": {"DATABASE_URL"},
    }
    optional = {
        e["name"] for e in containers["api"]["env"] if e.get("valueFrom", {}).get("secretKeyRef", {}).get("optional")
    }
    assert optional == {"AUTH_JWKS"}
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    for container in containers.values():
        for name, key in secrets_of(container).values():
            if secret.get("existingSecret"):
                assert name == "mine"
            elif key not in optional:  # the chart's Secret holds every key a pod needs
                assert key in secrets[name]["stringData"]
    # Nothing in the ConfigMap every pod reads is a secret.
    config = find(objects, "ConfigMap", "-config")["data"]
    assert not {"DATABASE_URL", "DATABASE_RO_URL", "POSTGRES_PASS", "AUTH_JWKS"} & set(config)


def test_dask_speaks_tls_alone_with_the_charts_certificates(default_objects, tmp_path):
    """What the scheduler, the workers and the job read (distributed's own parsing of their variables), and the
    chart's certificates: a scheduler context and a job's context shake hands over a socket pair."""
    containers = by_component(default_objects)
    roles = {"scheduler": "scheduler", "worker": "worker", "job": "client"}
    tls = find(default_objects, "Secret", "-dask-tls")
    folder = tmp_path / "tls"
    folder.mkdir()
    for name, value in tls["data"].items():
        (folder / name).write_bytes(base64.b64decode(value))
    for component, role in roles.items():
        container = containers[component]
        config = dask.config.collect_env(env_of(container))["distributed"]["comm"]
        assert config["require_encryption"] is True
        files = {config["tls"]["ca_file"], config["tls"][role]["cert"], config["tls"][role]["key"]}
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "dask-tls"]
        assert mount["readOnly"] and {f.rpartition("/")[0] for f in files} == {mount["mountPath"]}
        assert {f.rpartition("/")[2] for f in files} == set(tls["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    assert containers["scheduler"]["args"][:3] == ["scheduler", "--protocol", "tls"]
    assert "dask-tls" not in {m["name"] for m in containers["api"]["volumeMounts"]}  # the API is no Dask client
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((folder / "tls.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    paths = {
        f"tls_{role}_{part}": str(folder / f"tls.{kind}")
        for role in roles.values()
        for part, kind in (("cert", "crt"), ("key", "key"))
    }
    security = Security(tls_ca_file=str(folder / "ca.crt"), require_encryption=True, **paths)
    server = security.get_listen_args("scheduler")["ssl_context"]
    client = security.get_connection_args("client")["ssl_context"]
    assert handshake(server, client) == "ok"
    stranger = ssl.create_default_context()  # a client without the cluster's certificate
    stranger.check_hostname, stranger.verify_mode = False, ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(server, stranger)


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """A TLS handshake between the two contexts over a socket pair, then one byte each way: "ok", or the error."""
    left, right = socket.socketpair()
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as tls:
                tls.sendall(tls.recv(1))
        except (ssl.SSLError, OSError) as failure:
            failures.append(failure)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(right) as tls:
            tls.sendall(b"k")
            answer = tls.recv(1)
    finally:
        thread.join(timeout=10)
    if failures:
        raise failures[0]
    if answer != b"k":
        raise ConnectionError("the server closed the connection")
    return "ok"


@dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicies see it: labels, namespace (None: outside the cluster), address, named ports."""

    labels: dict
    namespace: str | None
    ip: str
    ports: dict


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector, as the API server reads it."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for term in selector.get("matchExpressions", []):
        key, values, operator = term["key"], term.get("values", []), term["operator"]
        present = key in labels
        if not {
            "In": present and labels[key] in values,
            "NotIn": not present or labels[key] not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def peer_matches(peer: dict, namespace: str, other: Pod) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        excluded = any(address in ipaddress.ip_network(e) for e in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excluded
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other.namespace})
    else:
        in_namespace = other.namespace == namespace
    return in_namespace and selects(peer.get("podSelector", {}), other.labels)


def policy_allows(policies: list[dict], direction: str, subject: Pod, peer: Pod, target: Pod, port: int) -> bool:
    """Whether the policies selecting `subject` let this connection through in one direction (no policy: yes)."""
    rules, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if subject.namespace == NAMESPACE
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], subject.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules, []):
            ports = rule.get("ports") or [{}]
            port_ok = any(target.ports.get(e.get("port"), e.get("port", port)) == port for e in ports)
            if port_ok and (not rule.get(peers) or any(peer_matches(x, NAMESPACE, peer) for x in rule[peers])):
                return True
    return False


def reaches(policies: list[dict], source: Pod, target: Pod, port: int) -> bool:
    return policy_allows(policies, "Egress", source, target, target, port) and policy_allows(
        policies, "Ingress", target, source, target, port
    )


NAMESPACE = "telemetry"
MANAGED_DATABASE = "10.20.0.5"  # in everything-values.yaml's networkPolicy.database.cidr


def pods_of(objects: list[dict]) -> dict[str, Pod]:
    """The chart's pods (labels and ports as rendered), and others: in the namespace, elsewhere, outside."""
    pods = {}
    for n, obj in enumerate(workloads(objects)):
        template = (obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"])["template"]
        (container,) = template["spec"]["containers"]
        labels = template["metadata"]["labels"]
        pods[labels[COMPONENT]] = Pod(labels, NAMESPACE, f"10.0.0.{n + 1}", container_ports(container))
    return pods | {
        "intruder": Pod({"app": "intruder"}, NAMESPACE, "10.0.1.1", {}),
        "elsewhere": Pod({"app": "other"}, "elsewhere", "10.0.1.2", {}),
        "prometheus": Pod({"app": "prometheus"}, "monitoring", "10.0.1.3", {}),
        "postgres": Pod({"app.kubernetes.io/name": "postgresql"}, NAMESPACE, "10.0.1.4", {"postgres": 5432}),
        "managed-database": Pod({}, None, MANAGED_DATABASE, {}),
        "object-store": Pod({}, None, "52.216.8.1", {}),
        "browser": Pod({}, None, "203.0.113.9", {}),
    }


# (source, target, port, reachable) with everything-values.yaml: who may reach what, and who may not.
REACHABLE = [
    *[(source, "scheduler", 8786, True) for source in ("worker", "job", "backfill")],
    *[(source, "scheduler", 8786, False) for source in ("api", "migrate", "intruder", "elsewhere", "browser")],
    ("prometheus", "scheduler", 8787, True),
    ("intruder", "scheduler", 8787, False),
    *[(source, "worker", port, True) for source in ("scheduler", "worker", "job") for port in (8789, 8790)],
    *[(source, "worker", 8789, False) for source in ("api", "intruder", "elsewhere")],
    ("prometheus", "worker", 8788, True),
    ("intruder", "worker", 8788, False),
    *[(source, "api", 8000, True) for source in ("browser", "intruder", "elsewhere")],
    ("prometheus", "api", 9090, True),
    *[(source, "api", 9090, False) for source in ("browser", "intruder")],
    *[(source, "postgres", 5432, True) for source in ("api", "job", "backfill", "migrate")],
    *[(source, "postgres", 5432, False) for source in ("scheduler", "worker", "intruder")],
    *[(source, "managed-database", 5432, True) for source in ("api", "job", "backfill", "migrate")],
    *[(source, "managed-database", 5432, False) for source in ("scheduler", "worker")],
    ("worker", "object-store", 443, True),
    ("scheduler", "object-store", 443, False),
    ("scheduler", "api", 8000, False),
    *[(source, target, 8080, False) for source in ("intruder", "worker") for target in ("job", "backfill", "migrate")],
]


@pytest.mark.parametrize(
    ("source", "target", "port", "reachable"), REACHABLE, ids=[f"{s}->{t}:{p}" for s, t, p, _ in REACHABLE]
)
def test_network_policies_open_only_what_each_pod_uses(everything_objects, source, target, port, reachable):
    policies = [o for o in everything_objects if o["kind"] == "NetworkPolicy"]
    pods = pods_of(everything_objects)
    assert reaches(policies, pods[source], pods[target], port) is reachable


def test_network_policies_by_default(default_objects):
    """On by default; without monitoring peers nothing reaches the metrics ports, and no database policy."""
    policies = [o for o in default_objects if o["kind"] == "NetworkPolicy"]
    assert {p["metadata"]["name"].removeprefix("ta-telemetry-aggregates-") for p in policies} == {
        "scheduler",
        "worker",
        "api",
        "jobs",
    }
    pods = pods_of(default_objects)
    assert reaches(policies, pods["worker"], pods["scheduler"], 8786)
    assert not reaches(policies, pods["prometheus"], pods["scheduler"], 8787)
    assert not reaches(policies, pods["prometheus"], pods["api"], 9090)
    assert reaches(policies, pods["browser"], pods["api"], 8000)
    assert reaches(policies, pods["worker"], pods["managed-database"], 5432)  # no range given: not known
    assert not reaches(policies, pods["scheduler"], pods["managed-database"], 5432)


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
