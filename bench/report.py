"""What the benchmarks share: the machine they ran on, and their section of docs/benchmarks.md."""

import importlib.metadata
import os
import platform
from pathlib import Path


def machine(*packages: str) -> str:
    """CPU, cores, memory, Python and the versions of `packages`."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = "".join(f", {p} {importlib.metadata.version(p)}" for p in packages)
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; Python {platform.python_version()}{versions}"


def write_section(output: Path, source: str, title: str, text: str) -> None:
    """Replace the section of `source` (a bench script, between its markers) in `output`, keeping the others."""
    mark = f"<!-- {source} -->"
    old = output.read_text() if output.exists() else "# Benchmarks\n"
    head, _, rest = old.partition(f"{mark}\n")
    _, _, tail = rest.partition(f"{mark}\n")
    section = f"{mark}\n## {title}\n\n{text}\n{mark}\n"
    output.write_text(head.rstrip("\n") + "\n\n" + section + tail)
