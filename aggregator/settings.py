"""Every environment variable the project reads, with its default and one line of help.

docs/settings.md's table is generated from `SETTINGS` (tests/test_docs.py keeps it in step).
"""

import math
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
    # Bounds on what one ping may hold (aggregator/bounds.py, docs/reliability.md): what is past them is skipped and
    # counted by reason, never a failed day.
    Setting(
        "JOB_MAX_LINE_BYTES",
        "8388608",
        "A longer input line is skipped unread (malformed `too_long`). Firefox sends no ping above 1 MB "
        "compressed and nearly all main pings are under 400 kB of JSON; 8 MiB leaves room for the largest.",
    ),
    Setting(
        "JOB_MAX_NAME_LENGTH",
        "200",
        "Longest metric name aggregated (dropped `long_name`): the API serves names of at most 200 characters.",
    ),
    Setting(
        "JOB_MAX_VALUE_BYTES",
        "1000",
        "Longest dimension value (else the ping is malformed `long_dimension`) and label (dropped `long_label`), in "
        "UTF-8 bytes: the API takes values of at most 1,000 characters, and a btree index entry holds 2,704 bytes.",
    ),
    Setting(
        "JOB_MAX_LABELS",
        "1000",
        "Labels of one keyed histogram or keyed scalar in one ping; the rest are dropped (`too_many_labels`). "
        "Firefox caps a keyed scalar at 100 keys and declared histogram keys at 30.",
    ),
    Setting(
        "JOB_MAX_PING_LAYOUT_BUCKETS",
        "1000",
        "Widest bucket layout a ping may declare for a histogram without a definition (dropped "
        "`layout_too_wide`); layouts from Histograms.json are not bounded. Firefox's definitions stay at a few "
        "hundred buckets at most; a declared layout costs 8 bytes per bucket per cell however few it fills.",
    ),
    Setting(
        "JOB_MAX_PING_BUCKETS",
        "1000000",
        "Buckets the histograms of one ping may span, summed over its histograms' layouts; a ping past it is "
        "skipped whole (malformed `too_many_buckets`). A generated ping spans about 10,000; this bounds the "
        "memory one ping can claim to 8 MB of new cells.",
    ),
    Setting(
        "JOB_MAX_UNDEFINED_METRICS",
        "5000",
        "Distinct metric names without a definition (histograms laid out by the ping, scalars missing from "
        "Scalars.yaml or without one, simple measurements) kept per channel, version and submission date: those "
        "in the most pings are kept, the rest dropped (`undefined_limit`). Firefox has about 3,000 histograms "
        "and scalars, so a run without definition files keeps them all.",
    ),
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
        "API_MAX_ANSWER_CELLS",
        "10000000",
        "Most bucket counts a metric answer may hold (its entries times their buckets), counted before any histogram "
        "is read; past it, a 400 says how to narrow the request. Real answers hold a few million at most (hundreds "
        "of dates, a few hundred labels or buckets); one hostile keyed histogram of 2,000 labels of 16,383 buckets "
        "held 33 million for one date: 66 MB in 5 s.",
    ),
    Setting(
        "API_CACHE_BYTES",
        "67108864",
        "Bytes of encoded answers (JSON and gzip, with their keys) the API's response cache holds, least recently "
        "used out first (0: no cache; the listing routes' catalog is kept either way). 64 MiB keeps the API "
        "far under the chart's 512 Mi beside its 165 MiB at rest; a count of entries let one caller's large "
        "answers reach 622 MiB.",
    ),
    Setting(
        "API_MAX_IN_FLIGHT",
        "64",
        "Requests the API handles at once; past it a request gets a 503 with Retry-After at once (the probes are "
        "exempt). Six per pooled connection: enough to keep the pool busy, few enough that the large answers "
        "in flight fit in memory.",
    ),
    Setting(
        "API_MAX_CONNECTIONS",
        "128",
        "Open connections the API keeps; one more is closed as soon as it is accepted. A connection sending the "
        "largest request head aiohttp parses (0.9 MiB) holds 1.9 MiB until API_HEADER_TIMEOUT_SECONDS: 128 of "
        "them take 240 MiB, which fits under the chart's 512 Mi beside the cache.",
    ),
    Setting(
        "API_HEADER_TIMEOUT_SECONDS",
        "10",
        "A connection must send a whole request head within this time of opening or of its last answer, else it "
        "is closed; idle keep-alive connections close after it too. Clients send a head in one packet; slow "
        "ones held about 1.4 MiB each, indefinitely.",
    ),
    Setting(
        "API_BODY_TIMEOUT_SECONDS",
        "5",
        "Time a request body (no route takes one) is read and discarded after the answer before the connection "
        "is closed: a body trickled byte by byte holds its connection no longer.",
    ),
    Setting(
        "API_ANSWER_THREADS",
        "2",
        "Threads that sum and encode large answers off the event loop, so that other requests are answered "
        "meanwhile, and the large answers handled at once: two keep the chart's one CPU busy while numpy, orjson "
        "and zlib release the GIL.",
    ),
    Setting(
        "API_OFFLOAD_CELLS",
        "50000",
        "Answers of more than this many stored bucket counts are large: summed and encoded on those threads, "
        "smaller ones inline. 50,000 take about 10 ms, more than the thread hop's cost.",
    ),
    Setting(
        "API_ANSWER_BUDGET_CELLS",
        "10000000",
        "Stored bucket counts that the large answers being read, summed and sent hold in all (about 20 bytes "
        "each: their rows, then their sums). A large answer that would pass it waits before its rows are read, "
        "first come, first served; one larger than the budget waits for all of it. 10 million, the largest answer "
        "API_MAX_ANSWER_CELLS lets through, keeps the API under the chart's 512 Mi beside the cache; without a "
        "budget, twenty 60 MB answers at once took 1.8 GiB and every pooled connection.",
    ),
    Setting(
        "API_SEND_TIMEOUT_SECONDS",
        "30",
        "A large answer is sent in pieces as it is encoded; a client that takes no piece within this time is "
        "disconnected, since its answer holds its share of API_ANSWER_BUDGET_CELLS meanwhile. A piece holds about "
        "65,000 bucket counts (640 KB of JSON for counts of nine digits, less gzipped): 30 s lets through a client "
        "that reads 20 KB a second.",
    ),
    Setting(
        "API_MIN_CLIENTS",
        "release=625001,beta=9001,nightly=376,*=101",
        "Fewest distinct clients an entry needs to be served with `aggregation=clients`: `channel=N` pairs, `*=N` "
        "for the other channels. An entry with fewer is withheld, and counted in the answer's `withheld`. GLAM's "
        "thresholds (bigquery-etl's GLAM extract): it serves client-level aggregates of more than 625,000 clients "
        "on release, 9,000 on beta, 375 on nightly and 100 elsewhere, as fewer are noisy and come close to "
        "describing single clients. At least 1: an entry without client-level data is never served.",
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
        "API_METRICS_PORT",
        None,
        "Port that serves /metrics alone, on `API_HOST` (the API's port then answers it 404), so that the "
        "service's internals are not public; unset: /metrics on the API's port.",
    ),
    Setting(
        "API_MAX_ALLOW_BYTES",
        "2048",
        "Longest `Allow` header of a 405 for an unknown parameter (the URL without it); a longer one holds the "
        "methods alone: proxies refuse headers of 4 to 8 KiB, and a URL of 64 KiB would be echoed whole.",
    ),
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
    Setting(
        "AUTH_JWKS_REFRESH_SECONDS",
        "3600",
        "How often the JWKS is read again (a token naming a key not held reads it at most once a minute): an "
        "hour picks up rotated keys the same hour, at one request an hour.",
    ),
    Setting(
        "AUTH_JWKS_KEEP_SECONDS",
        "21600",
        "While the JWKS cannot be read, the keys of its last good read check tokens for this long, then tokens "
        "get a 503: six hours ride out an identity provider's outage, and bound how long a key withdrawn from "
        "the JWKS meanwhile is still accepted.",
    ),
)
_BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str) -> str | None:
    """The value of a declared setting: the environment's, else its default."""
    return os.environ.get(name, _BY_NAME[name].default)


class SettingError(ValueError):
    """A setting's value is not of its type: one line naming the variable and what it takes."""


_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def flag(name: str) -> bool:
    """A boolean setting, in any case: `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off` (Helm renders
    booleans as `true`); anything else is refused rather than read as off."""
    value = setting(name) or ""
    if value.strip().lower() not in _BOOLEANS:
        raise SettingError(f"{name}={value!r} is not a boolean: use true or false (or 1/0, yes/no, on/off)")
    return _BOOLEANS[value.strip().lower()]


def number(name: str, kind: type[int] | type[float] = int, low: float = 0, high: float | None = None) -> int | float:
    """A numeric setting within [low, high]."""
    value = setting(name)
    try:
        parsed = kind(value)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or not math.isfinite(parsed) or parsed < low or (high is not None and parsed > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        what = "a whole number" if kind is int else "a number"
        raise SettingError(f"{name}={value!r} is not {what} {span}")
    return parsed


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {f'`{s.default}`' if s.default else '(unset)'} | {s.help} |" for s in SETTINGS]
    return "\n".join(rows)
