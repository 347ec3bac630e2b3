"""Screenshots of the explorer page for docs/explorer.md, from the data `make demo` publishes.

    python scripts/screenshots.py [--output docs/img]      # or: make screenshots (runs the demo job first)

Serves the demo's database (DATABASE_URL, else the local `telemetry_demo`) with the app on a free port, opens
each view in headless Chromium at 1280x800 and saves it as a PNG. Views are links, as a user would share them.
"""

import argparse
import asyncio
import json
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/browser.py: the same browser and server the explorer's tests use

from server.app import create_app, settings_from_env  # noqa: E402
from server.demo import demo_database  # noqa: E402
from tests.browser import chromium, served, settled  # noqa: E402

CHANNEL = "nightly"


def newest_and_longest(base: str) -> tuple[str, str]:
    """The newest nightly version, and the one with the most build dates (the longest evolution)."""
    with urllib.request.urlopen(f"{base}/aggregates_by/build_id/channels/{CHANNEL}/dates/") as answer:
        listed = json.load(answer)
    if not listed:
        raise SystemExit("screenshots: nothing published; run `make demo` first")
    dates: dict[str, int] = {}
    for entry in listed:
        dates[entry["version"]] = dates.get(entry["version"], 0) + 1
    return max(dates, key=int), max(dates, key=lambda v: (dates[v], int(v)))


def views(newest: str, longest: str) -> dict[str, dict]:
    """File name -> the page's query: the views docs/explorer.md shows."""
    metric = {"channel": CHANNEL, "metric": "GC_MS"}
    return {
        "distribution": {"kind": "submission_date", "version": newest, **metric},
        "evolution": {"view": "evolution", "kind": "build_id", "version": longest, "stats": "mean,25,50,75", **metric},
        "comparison": {
            "kind": "submission_date",
            "version": newest,
            "compare": "os",
            "os": ["Darwin", "Linux", "Windows_NT"],
            "scale": "percent",
            **metric,
        },
        "no-data": {"version": newest, "architecture": "aarch64", "os": "Darwin", "child": "gpu", **metric},
        "forbidden": {"channel": "release", "metric": "GC_MS"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "img"), help="folder of the PNGs (docs/img)")
    output = Path(parser.parse_args(argv).output)
    output.mkdir(parents=True, exist_ok=True)
    settings = settings_from_env(database=asyncio.run(demo_database()))
    with served(create_app(settings)) as base, chromium() as browser:
        for name, query in views(*newest_and_longest(base)).items():
            browser.get(f"{base}/?{urlencode(query, doseq=True)}")
            state = settled(browser)
            path = output / f"explorer-{name}.png"
            browser.save_screenshot(str(path))
            print(f"{path}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
