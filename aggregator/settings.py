"""Every environment variable the project reads, with its default and one line of help.

The README's settings table is generated from `SETTINGS` (tests/test_docs.py keeps it in step).
"""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DASK_SCHEDULER_ADDRESS",
        None,
        "Dask scheduler the job runs on (tcp://host:8786); unset: a LocalCluster of worker processes.",
    ),
    Setting("HISTOGRAM_DEFINITIONS", None, "Histograms.json (path or URL) giving histogram bucket layouts."),
    Setting("SCALAR_DEFINITIONS", None, "Scalars.yaml (path or URL) giving scalar descriptions."),
)
_BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str) -> str | None:
    """The value of a declared setting: the environment's, else its default."""
    return os.environ.get(name, _BY_NAME[name].default)


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {f'`{s.default}`' if s.default else '(unset)'} | {s.help} |" for s in SETTINGS]
    return "\n".join(rows)
