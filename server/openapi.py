"""/openapi.json: the API described as OpenAPI 3.1, written by hand from server/routes.py (a test checks that
every route is here)."""

from functools import cache

from server.params import MAX_DATES

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    meaning = {
        304: "Not modified since the ETag sent in If-None-Match (no body).",
        403: "Not authenticated: a missing, malformed, expired or under-scoped bearer token.",
        404: "Unknown kind, channel, metric or file, invalid value, blacklisted metric, or no data.",
        405: "Unknown query parameter; `Allow` holds the URL with only the valid parameters.",
        503: "The database is down or the query took too long; retry later (Retry-After).",
    }
    return {str(c): {"description": meaning[c]} if c == 304 else _json(ERROR, meaning[c]) for c in codes}


def _parameter(name: str, where: str, description: str, *, required: bool = False, schema=None) -> dict:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


KIND = _parameter("kind", "path", "Aggregate kind.", schema={"enum": ["build_id", "submission_date"]})
CHANNEL = _parameter("channel", "path", "Channel, e.g. nightly.", schema={"type": "string", "pattern": "^[a-z]+$"})
METRIC_FILTERS = {
    "application": "Application name, e.g. Firefox.",
    "architecture": "Architecture, e.g. x86-64.",
    "os": "Operating system name (the part before the comma of a /filters/ os value).",
    "osVersion": "Operating system version (the part after the comma).",
    "label": "Key of a keyed metric (keyed scalars: upper-case).",
    "child": "Process: parent (or false), content (or true), gpu.",
}


def _metric_parameters() -> list[dict]:
    fixed = [
        _parameter("version", "query", "Major version, e.g. 146.", required=True),
        _parameter(
            "dates",
            "query",
            f"Comma-separated YYYYMMDD dates (`,` or `%2C`), at most {MAX_DATES}; build dates for build_id.",
            required=True,
        ),
        _parameter(
            "metric", "query", "Histogram name, SCALARS_..., SIMPLE_MEASURES_... or USE_COUNTER2_...", required=True
        ),
        _parameter(
            "stats",
            "query",
            "true: add `mean` and `percentiles` (5, 25, 50, 75, 95) to each entry.",
            schema={"enum": ["true", "false"]},
        ),
    ]
    filters = [
        {
            **_parameter(k, "query", f"{d} Repeat the key for OR."),
            "explode": True,
            "schema": {"type": "array", "items": {"type": "string"}},
        }
        for k, d in METRIC_FILTERS.items()
    ]
    return fixed + filters


def _get(summary: str, ok: dict, parameters=(), errors=()) -> dict:
    return {"get": {"summary": summary, "parameters": list(parameters), "responses": {"200": ok, **_errors(*errors)}}}


STRINGS = {"type": "array", "items": {"type": "string"}}
DATA_ERRORS = (304, 404, 503)


@cache
def spec() -> dict:
    entry = {
        "type": "object",
        "required": ["date", "label", "histogram", "count", "sum"],
        "properties": {
            "date": {"type": "string", "pattern": "^[0-9]{8}$"},
            "label": {"type": "string"},
            "histogram": {"type": "array", "items": {"type": "integer"}},
            "count": {"type": "integer", "description": "Histograms (or values) aggregated: submissions."},
            "sum": {"type": "integer"},
            "mean": {"type": ["number", "null"], "description": "Only with stats=true."},
            "percentiles": {"type": ["object", "null"], "description": "Only with stats=true: 5, 25, 50, 75, 95."},
        },
    }
    metric = {
        "type": "object",
        "required": ["buckets", "kind", "description", "data"],
        "properties": {
            "buckets": {"type": "array", "items": {"type": ["integer", "string"]}},
            "kind": {"enum": ["exponential", "linear", "boolean", "flag", "count", "enumerated", "categorical"]},
            "description": {"type": "string"},
            "data": {"type": "array", "items": entry},
        },
    }
    dates = {
        "type": "array",
        "items": {"type": "object", "properties": {"version": {"type": "string"}, "date": {"type": "string"}}},
    }
    text = {"description": "Plain text.", "content": {"text/plain": {"schema": {"type": "string"}}}}
    page = {"description": "The explorer page (HTML).", "content": {"text/html": {"schema": {"type": "string"}}}}
    asset = {"description": "A file of the explorer page: a JavaScript module, the stylesheet or the icon."}
    name = _parameter("name", "path", "File name, e.g. explorer.js.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Telemetry aggregates",
            "version": "1",
            "description": "The HTTP API of python_mozaggregator (aggregates.telemetry.mozilla.org): same routes.",
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "description": {"type": "string"}},
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (RS256)"}},
        },
        "paths": {
            "/": _get("The explorer: a page that charts any metric from this API (docs/explorer.md).", page),
            "/static/{name}": _get("The explorer page's files.", asset, [name], (404,)),
            "/aggregates_by/{kind}/channels/": _get(
                "Channels with data (release only when authenticated).",
                _json(STRINGS, "Channel names."),
                [KIND],
                DATA_ERRORS,
            ),
            "/aggregates_by/{kind}/channels/{channel}/dates/": _get(
                "Versions and dates with data, newest first (release requires authentication).",
                _json(dates, "Version and YYYYMMDD date pairs."),
                [KIND, CHANNEL],
                (*DATA_ERRORS, 403),
            ),
            "/aggregates_by/{kind}/channels/{channel}/": _get(
                "A metric's aggregated histogram per date and label; omitted filters are summed over.",
                _json(metric, "Buckets, kind, description and one entry per (date, label) with data."),
                [KIND, CHANNEL, *_metric_parameters()],
                (*DATA_ERRORS, 403, 405),
            ),
            "/filters/": _get(
                "Values of each filter for a channel and version.",
                _json(
                    {"type": "object", "additionalProperties": STRINGS},
                    "metric, application, architecture, os (os,version), child.",
                ),
                [
                    _parameter("channel", "query", "Channel.", required=True),
                    _parameter("version", "query", "Version.", required=True),
                ],
                (*DATA_ERRORS, 403),
            ),
            "/freshness/": _get(
                "Newest date and last publish time per kind and channel.",
                _json({"type": "object"}, "Freshness."),
                (),
                DATA_ERRORS,
            ),
            "/status": _get("Liveness.", text),
            "/__heartbeat__": _get("Health, database included.", _json({"type": "object"}, "Healthy."), (), (503,)),
            "/__lbheartbeat__": _get("Load balancer liveness (empty body).", {"description": "Alive."}),
            "/__version__": _get(
                "The deployed version (version.json).", _json({"type": "object"}, "Version."), (), (404,)
            ),
            "/authed": _get("Checks a bearer token.", text, (), (403,)),
            "/clear-cache": _get("Empties the response cache (authenticated).", text, (), (403,)),
            "/openapi.json": _get("This document.", _json({"type": "object"}, "OpenAPI 3.1.")),
            "/metrics": _get("Prometheus metrics.", text),
        },
    }
