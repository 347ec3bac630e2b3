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
    # The Postgres store (aggregator/store/, docs/store.md).
    Setting(
        "DATABASE_URL",
        None,
        "Read-write DSN of the store (postgresql://user:pass@host:5432/db), for publishing; "
        "unset: built from the `POSTGRES_*` settings.",
    ),
    Setting(
        "DATABASE_RO_URL",
        None,
        "Read-only DSN for the API; unset: `POSTGRES_RO_HOST`, else the read-write DSN.",
    ),
    Setting(
        "POSTGRES_HOST",
        None,
        "Database host, as the original (used when `DATABASE_URL` is unset); neither set: no database, "
        "`aggregator run` writes the snapshot only.",
    ),
    Setting("POSTGRES_RO_HOST", None, "Read-only replica host for the API (same user, password and database)."),
    Setting("POSTGRES_USER", "root", "Database user (with `POSTGRES_HOST`)."),
    Setting("POSTGRES_PASS", None, "Database password (with `POSTGRES_HOST`)."),
    Setting("POSTGRES_DB", "telemetry", "Database name (with `POSTGRES_HOST`)."),
    Setting(
        "DATABASE_STATEMENT_CACHE_SIZE",
        "100",
        "asyncpg prepared statements cached per connection; `0` behind pgbouncer in transaction mode.",
    ),
    # The HTTP API (server/).
    Setting("API_HOST", "127.0.0.1", "Address `aggregator serve` listens on."),
    Setting("API_PORT", "8000", "Port `aggregator serve` listens on."),
    Setting("API_POOL_MIN", "2", "Database connections the API keeps open."),
    Setting("API_POOL_MAX", "10", "Most database connections the API opens."),
    Setting("API_STATEMENT_TIMEOUT_MS", "5000", "A query running longer is cancelled and answered with 503."),
    Setting(
        "API_CACHE_ENTRIES",
        "1000",
        "Responses kept in the API's in-memory cache (0: no cache; the listing routes' catalog is kept either way).",
    ),
    Setting("API_MAX_AGE", "300", "Cache-Control max-age (seconds) of data responses; ETags revalidate them."),
    Setting("API_LEDGER_POLL_SECONDS", "1", "How often the API looks for a new publish (0: on every request)."),
    Setting("API_FORCE_HTTPS", "False", "`True`: redirect plain-HTTP requests to https, as the original did."),
    Setting(
        "API_ACCESS_LOG",
        "False",
        "`True`: log a line per request (aiohttp's access log, a tenth of a request's CPU); /metrics counts "
        "requests by route and status either way.",
    ),
    Setting("API_VERSION_FILE", "/app/version.json", "JSON file served at /__version__."),
    Setting(
        "METRICS_BLACKLIST",
        r"SEARCH_COUNTS SCALARS_BROWSER\.SEARCH\..+",
        "Space-separated regexes (anchored at the start) of metrics never served nor listed.",
    ),
    Setting(
        "AUTH_ONLY_METRICS",
        "SCALARS_TELEMETRY.EVENT_COUNTS,SCALARS_TELEMETRY.DYNAMIC_EVENT_COUNTS",
        "Comma-separated metrics served and listed to authenticated callers only.",
    ),
    Setting(
        "PUBLIC_RELEASE_METRICS",
        "SCALARS_TELEMETRY.TEST.KEYED_UNSIGNED_INT",
        "Comma-separated release-channel metrics served without authentication.",
    ),
    Setting("ALLOW_ALL_RELEASE_METRICS", "False", "`True`: every release-channel metric is public."),
    Setting(
        "AUTH_JWKS",
        "https://auth.mozilla.auth0.com/.well-known/jwks.json",
        "JWKS (path or URL) whose RS256 keys sign bearer tokens.",
    ),
    Setting("AUTH_AUDIENCE", "https://aggregates.telemetry.mozilla.org/", "Audience bearer tokens must name."),
    Setting("AUTH_ISSUER", "https://auth.mozilla.auth0.com/", "Issuer bearer tokens must name."),
)
_BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str) -> str | None:
    """The value of a declared setting: the environment's, else its default."""
    return os.environ.get(name, _BY_NAME[name].default)


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {f'`{s.default}`' if s.default else '(unset)'} | {s.help} |" for s in SETTINGS]
    return "\n".join(rows)
