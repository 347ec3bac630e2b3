"""/openapi.json: the API described as OpenAPI 3.1, written by hand from server/routes.py (a test checks that
every route is here, and tests/test_api_fuzz.py holds every answer to it).

Parameters carry the patterns server/params.py enforces and realistic examples, so a reader (or a fuzzer) can
form requests that reach data; every status a route answers is listed with its body.
"""

from functools import cache

from server.explorer import ASSETS
from server.params import AGGREGATIONS, CHANNEL, CHILD, DATE, MAX_DATES, MAX_VALUE, METRIC, VERSION

ERROR = {"$ref": "#/components/schemas/Error"}
MEANING = {
    304: "Not modified since the ETag sent in If-None-Match (no body).",
    400: "A request the server cannot parse: a request line or header over the limit, raw bytes outside ASCII; "
    "or a metric answer past API_MAX_ANSWER_CELLS bucket counts (`answer_too_large`: ask for fewer dates or labels).",
    403: "Not authenticated: a missing, malformed, expired or under-scoped bearer token.",
    404: "Unknown kind, channel, metric or file, invalid value, blacklisted metric, or no data.",
    405: "Unknown query parameter; `Allow` holds the URL with only the valid parameters, or only the methods "
    "when that URL is longer than API_MAX_ALLOW_BYTES.",
    503: "The database (or the signing keys) cannot answer now, or the server is handling API_MAX_IN_FLIGHT "
    "requests already (`overloaded`); retry later (Retry-After).",
}
HEADERS = {
    200: {
        "ETag": {"description": "The published data's version; send it back in If-None-Match.", "required": True},
        "Cache-Control": {"description": "public (private when authenticated), max-age.", "required": True},
    },
    405: {
        "Allow": {
            "description": "The URL without the unknown parameters; `GET, HEAD, OPTIONS` instead when that is longer "
            "than API_MAX_ALLOW_BYTES (2,048 bytes by default).",
            "required": True,
        }
    },
    503: {"Retry-After": {"description": "Seconds to wait.", "required": True}},
}
DATA = (304, 400, 404, 503)  # what every data route may answer besides 200
OPS = (400, 503)  # and the operational ones (503: past API_MAX_IN_FLIGHT)
PROBES = (400,)  # the probes, exempt from API_MAX_IN_FLIGHT
OPTIONAL_AUTH = [{}, {"bearer": []}]  # a token unlocks release data and auth-only metrics
AUTH = [{"bearer": []}]
# what the files of server/static/ are served as (JavaScript under either name the platform may give it)
ASSET_TYPES = ("text/html", "text/javascript", "application/javascript", "text/css", "image/svg+xml")


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = {name: header | {"schema": {"type": "string"}} for name, header in headers.items()}
    return answer


def _text(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"text/plain": {"schema": schema}}}


def _file(description: str, *media_types: str) -> dict:
    return {"description": description, "content": {media: {"schema": {"type": "string"}} for media in media_types}}


def _errors(*codes: int) -> dict:
    return {
        str(c): {"description": MEANING[c]} if c == 304 else _json(ERROR, MEANING[c], HEADERS.get(c)) for c in codes
    }


def _anchored(*patterns: str) -> str:
    return "^" + "".join(patterns) + "$"


def _parameter(name: str, where: str, description: str, schema: dict, *, required: bool = False, **more) -> dict:
    required = required or where == "path"
    return {"name": name, "in": where, "required": required, "description": description, "schema": schema, **more}


def _string(pattern: str, *examples: str, **more) -> dict:
    return {"type": "string", "pattern": pattern, "examples": list(examples), **more}


def _repeatable(name: str, description: str, *examples: str) -> dict:
    """A filter: repeat the key for OR (`os=Linux&os=Darwin`)."""
    value = {"type": "string", "maxLength": MAX_VALUE, "pattern": "^[^\\x00]*$"}
    values = {"type": "array", "items": value, "examples": [list(examples)]}
    return _parameter(name, "query", f"{description} Repeat the key for OR.", values, explode=True)


KIND = _parameter(
    "kind", "path", "Aggregate kind.", {"enum": ["build_id", "submission_date"], "examples": ["submission_date"]}
)
CHANNEL_TEXT = "Channel (release requires authentication)."
CHANNEL_SCHEMA = _string(_anchored(CHANNEL.pattern), "nightly", "beta", "aurora")
VERSION_SCHEMA = _string(_anchored(VERSION.pattern), "146", "145")


def _metric_parameters() -> list[dict]:
    dates = _string(
        _anchored(DATE.pattern, f"(,{DATE.pattern})*"),
        "20261101,20261102",
        "20261101",
        maxLength=MAX_DATES * 9 - 1,
    )
    metric = _string(
        _anchored(METRIC.pattern),
        "GC_MS",
        "SCALARS_BROWSER.ENGAGEMENT.ACTIVE_TICKS",
        "SIMPLE_MEASURES_UPTIME",
        "IPC_READ_MAIN_THREAD_LATENCY_MS",
        "USE_COUNTER2_DOCUMENT_OPEN_PAGE",
    )
    return [
        _parameter("version", "query", "Major version.", VERSION_SCHEMA, required=True),
        _parameter(
            "dates",
            "query",
            f"Comma-separated YYYYMMDD dates (`,` or `%2C`), at most {MAX_DATES}; build dates for build_id.",
            dates,
            required=True,
        ),
        _parameter(
            "metric", "query", "Histogram, SCALARS_, SIMPLE_MEASURES_ or USE_COUNTER2_ name.", metric, required=True
        ),
        _parameter(
            "stats",
            "query",
            "true: add `mean` and `percentiles` (5, 25, 50, 75, 95) to each entry.",
            {"enum": ["true", "false"], "examples": ["true"]},
        ),
        _parameter(
            "aggregation",
            "query",
            "pings (the default, the original's answers): every ping weighs the same. clients: every client weighs "
            "the same, as GLAM's aggregates: `histogram` holds the client-level sums, each entry its `clients`, "
            "and entries of fewer clients than API_MIN_CLIENTS (per channel) are withheld and counted in `withheld`. "
            "Use counters have none (404).",
            {"enum": list(AGGREGATIONS), "examples": ["clients"]},
        ),
        _repeatable("application", "Application name.", "Firefox"),
        _repeatable("architecture", "Architecture.", "x86-64"),
        _repeatable("os", "Operating system name (the part before the comma of a /filters/ os value).", "Linux"),
        _repeatable("osVersion", "Operating system version (the part after the comma).", "6.1"),
        _repeatable("label", "Key of a keyed metric (keyed scalars: upper-case).", "PContent::Msg_Destroy"),
        _parameter(
            "child",
            "query",
            "Process: parent (or false), content (or true), gpu. Repeat the key for OR.",
            {"type": "array", "items": {"enum": list(CHILD)}, "examples": [["parent"]]},
            explode=True,
        ),
    ]


def _get(summary: str, ok: dict, parameters=(), errors=(), security=None, more=None) -> dict:
    responses = {"200": ok, **_errors(*errors), **(more or {})}
    operation = {"summary": summary, "parameters": list(parameters), "responses": responses}
    if security:
        operation["security"] = security
    return {"get": operation}


DAY = {"type": "string", "pattern": _anchored(DATE.pattern)}


def _entry(by_clients: bool) -> dict:
    """An entry of a metric answer: per ping, or per client with its clients."""
    required = ["date", "label", "histogram", "count", "sum"]
    properties = {
        "date": DAY,
        "label": {"type": "string"},
        "histogram": {"type": "array", "items": {"type": "integer"}},
        "count": {"type": "integer", "description": "Histograms (or values) aggregated: submissions."},
        "sum": {"type": "integer"},
        "mean": {"type": ["number", "null"], "description": "Only with stats=true."},
        "percentiles": {
            "type": ["object", "null"],
            "description": "Only with stats=true: 5, 25, 50, 75, 95.",
            "required": ["5", "25", "50", "75", "95"],
            "additionalProperties": {"type": "number"},
        },
    }
    if by_clients:
        required.append("clients")
        properties |= {
            "histogram": {
                "type": "array",
                "items": {"type": "number"},
                "description": "Client-level sums: each client's histogram normalised to sum 1 (or all 0), summed "
                "over clients.",
            },
            "sum": {"type": "integer", "description": "The values' sum over every submission, as per ping."},
            "mean": {
                "type": ["number", "null"],
                "description": "Only with stats=true: estimated from the client-level sums, each bucket's at its "
                "middle.",
            },
            "clients": {"type": "integer", "description": "Distinct clients, summed over the rows summed."},
        }
    return {"type": "object", "required": required, "additionalProperties": False, "properties": properties}


def _metric(by_clients: bool) -> dict:
    """A metric answer. Every entry of a per-ping one has data; a client-level one may withhold them all."""
    head = {
        "buckets": {"type": "array", "items": {"type": ["integer", "string"]}},
        "kind": {"enum": ["exponential", "linear", "boolean", "flag", "count", "enumerated", "categorical"]},
        "description": {"type": "string"},
    }
    withheld = {
        "min_clients": {"type": "integer", "description": "API_MIN_CLIENTS of the channel."},
        "withheld": {"type": "integer", "description": "Entries left out for having fewer clients."},
    }
    data = {"type": "array", "minItems": 0 if by_clients else 1, "items": _entry(by_clients)}
    return {
        "type": "object",
        "required": [*head, *(withheld if by_clients else ()), "data"],
        "additionalProperties": False,
        "properties": head | (withheld if by_clients else {}) | {"data": data},
    }


def _schemas() -> dict:
    fresh = {
        "type": "object",
        "required": ["newest_date", "newest_submission_date", "published_at"],
        "properties": {
            "newest_date": DAY,
            "newest_submission_date": DAY,
            "published_at": {"type": "string", "format": "date-time"},
        },
    }
    per_channel = {"type": "object", "additionalProperties": fresh}
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        "Error": {
            "type": "object",
            "required": ["code", "description"],
            "properties": {"code": {"type": "string"}, "description": {"type": "string"}},
        },
        "Channels": {"type": "array", "items": {"type": "string", "pattern": _anchored(CHANNEL.pattern)}},
        "Dates": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["version", "date"],
                "additionalProperties": False,
                "properties": {"version": {"type": "string", "pattern": _anchored(VERSION.pattern)}, "date": DAY},
            },
        },
        "Filters": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "metric": strings,
                "application": strings,
                "architecture": strings,
                "os": {"type": "array", "items": {"type": "string", "pattern": ","}},
                "child": {"type": "array", "items": {"enum": ["parent", "content", "gpu"]}},
            },
        },
        "Metric": _metric(by_clients=False),
        "ClientMetric": _metric(by_clients=True),
        "Freshness": {
            "type": "object",
            "required": ["published_at", "kinds"],
            "additionalProperties": False,
            "properties": {
                "published_at": {"type": ["string", "null"], "format": "date-time"},
                "kinds": {
                    "type": "object",
                    "required": ["build_id", "submission_date"],
                    "additionalProperties": False,
                    "properties": {"build_id": per_channel, "submission_date": per_channel},
                },
            },
        },
        "Heartbeat": {
            "type": "object",
            "required": ["status", "checks", "details"],
            "properties": {
                "status": {"enum": ["ok", "error"]},
                "checks": {"type": "object", "additionalProperties": {"enum": ["ok", "error"]}},
                "details": {"type": "object"},
            },
        },
        "Ready": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": False,
            "properties": {"status": {"const": "ok"}},
        },
    }


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


@cache
def spec() -> dict:
    data = HEADERS[200]
    unhealthy = _json(_ref("Heartbeat"), "The database cannot be reached, or its schema is not the one served.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Telemetry aggregates",
            "version": "1",
            "description": "The HTTP API of python_mozaggregator (aggregates.telemetry.mozilla.org): same routes.",
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (RS256)"}},
        },
        "paths": {
            "/": _get(
                "The explorer: a page that charts any metric from this API (docs/explorer.md).",
                _file("The explorer page.", "text/html"),
                (),
                OPS,
            ),
            "/static/{name}": _get(
                "The explorer page's files.",
                _file("The page, a JavaScript module, the stylesheet or the icon.", *ASSET_TYPES),
                [_parameter("name", "path", "File name.", {"enum": sorted(ASSETS), "examples": ["explorer.js"]})],
                (*OPS, 404),
            ),
            "/aggregates_by/{kind}/channels/": _get(
                "Channels with data (release only when authenticated).",
                _json(_ref("Channels"), "Channel names.", data),
                [KIND],
                DATA,
                OPTIONAL_AUTH,
            ),
            "/aggregates_by/{kind}/channels/{channel}/dates/": _get(
                "Versions and dates with data, newest first (release requires authentication).",
                _json(_ref("Dates"), "Version and YYYYMMDD date pairs.", data),
                [KIND, _parameter("channel", "path", CHANNEL_TEXT, CHANNEL_SCHEMA)],
                (*DATA, 403),
                OPTIONAL_AUTH,
            ),
            "/aggregates_by/{kind}/channels/{channel}/": _get(
                "A metric's aggregated histogram per date and label; omitted filters are summed over.",
                _json(
                    {"oneOf": [_ref("Metric"), _ref("ClientMetric")]},
                    "Buckets, kind, description and one entry per (date, label) with data; with aggregation=clients, "
                    "the fewest clients an entry needs and how many entries were withheld for having fewer.",
                    data,
                ),
                [KIND, _parameter("channel", "path", CHANNEL_TEXT, CHANNEL_SCHEMA), *_metric_parameters()],
                (*DATA, 403, 405),
                OPTIONAL_AUTH,
            ),
            "/filters/": _get(
                "Values of each filter for a channel and version.",
                _json(_ref("Filters"), "metric, application, architecture, os (os,version), child.", data),
                [
                    _parameter("channel", "query", CHANNEL_TEXT, CHANNEL_SCHEMA, required=True),
                    _parameter("version", "query", "Major version.", VERSION_SCHEMA, required=True),
                ],
                (*DATA, 403, 405),
                OPTIONAL_AUTH,
            ),
            "/freshness/": _get(
                "Newest date and last publish time per kind and channel (release only when authenticated).",
                _json(_ref("Freshness"), "Freshness.", data),
                (),
                (304, 400, 503),
                OPTIONAL_AUTH,
            ),
            "/status": _get("Liveness.", _text({"const": "OK"}, "Alive."), (), OPS),
            "/__heartbeat__": _get(
                "Health, database included.", _json(_ref("Heartbeat"), "Healthy."), (), OPS, more={"503": unhealthy}
            ),
            "/__lbheartbeat__": _get("Liveness (empty body).", {"description": "Alive."}, (), PROBES),
            "/__ready__": _get(
                "Readiness: serving, without asking the database (queries answer 503 while it is away).",
                _json(_ref("Ready"), "Ready."),
                (),
                PROBES,
            ),
            "/__version__": _get(
                "The deployed version (version.json).", _json({"type": "object"}, "Version."), (), (*OPS, 404)
            ),
            "/authed": _get(
                "Checks a bearer token.", _text({"const": "Authenticated"}, "Valid."), (), (*OPS, 403, 503), AUTH
            ),
            "/clear-cache": _get(
                "Empties the response cache (authenticated).",
                _text({"const": "Cache Cleared"}, "Emptied."),
                (),
                (*OPS, 403, 503),
                AUTH,
            ),
            "/openapi.json": _get(
                "The API described as OpenAPI 3.1.", _json({"type": "object"}, "This document."), (), OPS
            ),
            "/api": _get(
                "The API described as a page to read, rendered from /openapi.json (no script).",
                _file("The page.", "text/html"),
                (),
                OPS,
            ),
            "/metrics": _get("Prometheus metrics.", _text({"type": "string"}, "Text exposition format."), (), OPS),
        },
    }
