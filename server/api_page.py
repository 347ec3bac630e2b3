"""/api: the OpenAPI document as a page to read, rendered here from /openapi.json's own dictionary, so that the
two never disagree. Plain HTML and the package's stylesheet: no script, nothing fetched from elsewhere (the
security headers allow only this origin anyway)."""

import json
import re
from functools import cache
from html import escape

from aiohttp import web

from server.explorer import HEADERS
from server.openapi import spec


def _text(description: str) -> str:
    """A description with its `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(description))


def _code(value: object) -> str:
    shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"<code>{escape(shown)}</code>"


def _schema(schema: dict) -> str:
    """A schema in a few words (its values, pattern and examples); a named one links to its full text below."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    if "oneOf" in schema:
        words = [" or ".join(_schema(choice) for choice in schema["oneOf"])]
    elif "items" in schema:
        words = [f"list of {_schema(schema['items'])}"]
    elif "enum" in schema:
        words = ["one of " + ", ".join(_code(value) for value in schema["enum"])]
    elif "const" in schema:
        words = [_code(schema["const"])]
    else:
        kind = schema.get("type", "any")
        words = [escape(" or ".join(kind) if isinstance(kind, list) else kind)]
    if "pattern" in schema:
        words.append(f"matching {_code(schema['pattern'])}")
    if "maxLength" in schema:
        words.append(f"at most {schema['maxLength']:,} characters")
    if schema.get("examples"):
        words.append("e.g. " + ", ".join(_code(example) for example in schema["examples"]))
    return "; ".join(words)


def _access(security: list[dict] | None) -> str:
    if not security:
        return ""
    optional = {} in security
    what = "optional: it unlocks release data and auth-only metrics" if optional else "required"
    return f'<p class="access">Bearer token {what}.</p>'


def _parameters(parameters: list[dict]) -> str:
    if not parameters:
        return ""
    rows = "".join(
        f'<tr><th scope="row"><code>{escape(p["name"])}</code></th><td>{escape(p["in"])}</td>'
        f"<td>{'yes' if p['required'] else 'no'}</td><td>{_text(p['description'])}</td><td>{_schema(p['schema'])}</td>"
        "</tr>"
        for p in parameters
    )
    head = "".join(f'<th scope="col">{name}</th>' for name in ("Parameter", "In", "Required", "Meaning", "Values"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _responses(responses: dict[str, dict]) -> str:
    items = []
    for status, answer in responses.items():
        bodies = [f"{_code(media)}: {_schema(body['schema'])}" for media, body in answer.get("content", {}).items()]
        headers = [
            f"header {_code(name)}: {_text(header['description'])}"
            for name, header in answer.get("headers", {}).items()
        ]
        more = "".join(f"<br>{line}" for line in bodies + headers)
        items.append(f"<li><strong>{escape(status)}</strong> {_text(answer['description'])}{more}</li>")
    return f'<ul class="responses">{"".join(items)}</ul>'


def _route(n: int, path: str, method: str, operation: dict) -> str:
    return (
        f'<section class="route" id="route-{n}"><h3><code>{method.upper()} {escape(path)}</code></h3>'
        f"<p>{_text(operation['summary'])}</p>{_access(operation.get('security'))}"
        f"{_parameters(operation['parameters'])}{_responses(operation['responses'])}</section>"
    )


@cache
def render() -> str:
    document = spec()
    info = document["info"]
    routes = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    contents = "".join(
        f'<li><a href="#route-{n}"><code>{escape(path)}</code></a> {_text(operation["summary"])}</li>'
        for n, (path, _, operation) in enumerate(routes)
    )
    schemas = "".join(
        f'<section id="schema-{escape(name)}"><h3>{escape(name)}</h3><pre>{escape(json.dumps(schema, indent=2))}</pre>'
        "</section>"
        for name, schema in document["components"]["schemas"].items()
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(info['title'])} API</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/api-page.css"></head><body>'
        f'<header><h1>{escape(info["title"])} API</h1><nav><a href="/">Explorer</a> '
        '<a href="/openapi.json">OpenAPI document</a></nav></header><main>'
        f"<p>{_text(info['description'])} Every route answers GET (and HEAD, OPTIONS); errors are JSON "
        f'<code>{{code, description}}</code>.</p><h2>Routes</h2><ul class="contents">{contents}</ul>'
        + "".join(_route(n, path, method, operation) for n, (path, method, operation) in enumerate(routes))
        + f"<h2>Schemas</h2>{schemas}</main></body></html>"
    )


async def page(request: web.Request) -> web.Response:
    return web.Response(text=render(), content_type="text/html", headers=HEADERS)
