"""`make deploy-check`: the Helm chart linted, rendered with each of its CI values files and every object validated
against the Kubernetes API's schemas, offline (no cluster, no network, no helm binary).

Prints one line per values file, or what is wrong and exits 1."""

import re
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "telemetry-aggregates"
KUBERNETES_VERSION = "1.32.0"  # the oldest Kubernetes the chart is validated against (Chart.yaml: >=1.27)


def problems(values_file: Path) -> tuple[int, list[str]]:
    """How many objects the chart renders with these values, and what is wrong with them."""
    values = yaml.safe_load(values_file.read_text())
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    found = [str(error) for error in report["errors"]]
    found += [m.get("text", str(m)) for m in report["messages"] if m["severity"] >= 2]
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="check", namespace="telemetry", is_install=True)
    objects = [
        yaml.safe_load(document)
        for template, text in sorted(manifests.items())
        if not template.endswith("NOTES.txt")
        for document in re.split(r"^---\s*$", text, flags=re.MULTILINE)
        if document.strip()
    ]
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a Prometheus Operator resource: no schema in kubernetes-validate
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            found.append(f"{obj['kind']} {obj['metadata']['name']}: {error.message}")
    return len(objects), found


def main() -> int:
    failed = False
    for values_file in sorted((CHART / "ci").glob("*-values.yaml")):
        count, found = problems(values_file)
        name = values_file.relative_to(CHART.parent.parent.parent)
        print(f"{name}: {count} objects, " + ("valid" if not found else f"{len(found)} problems"))
        for problem in found:
            print(f"  {problem}")
        failed = failed or bool(found)
    verdict = "invalid" if failed else "lints and renders valid objects"
    print(f"chart {CHART.name}: {verdict} for Kubernetes {KUBERNETES_VERSION}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
