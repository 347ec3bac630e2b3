"""environment.yml and pyproject.toml declare the same dependencies, with the same bounds; the package and the
image hold what the service needs."""

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _split(requirement: str) -> tuple[str, str]:
    name, bounds = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)", requirement.strip()).groups()
    return name.lower().replace("_", "-"), bounds.replace(" ", "")


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(
        _split(d) for d in environment["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip"))
    )
    # Packages conda-forge lacks are installed by pip, in the environment's `pip:` list (besides `-e .`).
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d)
    from_pip = dict(_split(d) for d in pip if not d.startswith("-"))
    assert not set(conda) & set(from_pip)
    assert conda | from_pip == wanted


def test_python_version_matches():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minimum = project["requires-python"].removeprefix(">=")
    assert python.removeprefix("python=") == minimum


def test_dockerfile_installs_the_package_as_the_readme_does():
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = project["requires-python"].removeprefix(">=")
    assert all(f"FROM python:{python}" in line for line in dockerfile.splitlines() if line.startswith("FROM"))
    assert "pip install --no-cache-dir ." in dockerfile  # the package and its declared dependencies, nothing else
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for package in packages["include"]:
        assert f"COPY {package.rstrip('*')} " in dockerfile


def test_the_parquet_extra_is_in_dev_and_in_the_image():
    """`aggregator export` needs pyarrow: `make install` (dev) has it, and so does the image by default."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["parquet"]) <= set(extras["dev"])
    default = re.search(r'^ARG EXTRAS="(.*)"$', (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE).group(1)
    assert "parquet" in default.strip("[]").split(",")


def test_the_explorer_page_is_packaged():
    """Every file of the explorer page (server/static/) is package data, so `pip install .` ships it."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["server"]
    files = [p.relative_to(ROOT / "server").as_posix() for p in (ROOT / "server" / "static").rglob("*") if p.is_file()]
    assert "static/index.html" in files
    assert all(f.count("/") == 1 and any(fnmatch(f, pattern) for pattern in patterns) for f in files)  # no subfolder
