"""/api, the API as a page to read: every route of /openapi.json with its parameters and answers, and nothing
fetched from elsewhere. The page is read back with the standard library's HTML parser."""

from html.parser import HTMLParser
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from aggregator.store import schema
from server.app import create_app
from tests.conftest import settings_for

pytestmark = pytest.mark.asyncio


class Page(HTMLParser):
    """What a reader finds on the page: each route section's heading and text, the ids, links and scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[str]] = {}  # route section id: its heading, then its text
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.tags: set[str] = set()
        self._section: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.add(tag)
        self.ids |= {attributes["id"]} if "id" in attributes else set()
        self.links += [value for name, value in attrs if name in ("href", "src") and value]
        if tag == "section" and "route" in (attributes.get("class") or "").split():
            self._section, self._depth = attributes["id"], 0
            self.sections[self._section] = []
        if self._section and tag == "section":
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._section and tag == "section":
            self._depth -= 1
            if not self._depth:
                self._section = None

    def handle_data(self, data: str) -> None:
        if self._section:
            self.sections[self._section].append(data)


@pytest_asyncio.fixture
async def client(aiohttp_client, empty_database_url):
    conn = await asyncpg.connect(empty_database_url)
    await schema.migrate(conn)
    await conn.close()
    return await aiohttp_client(create_app(settings_for(empty_database_url)))


async def test_the_api_page_lists_every_route_of_the_openapi_document(client):
    document = await (await client.get("/openapi.json")).json()
    answer = await client.get("/api")
    assert answer.status == 200 and answer.content_type == "text/html"
    page = Page()
    page.feed(await answer.text())
    routes = {}
    for texts in page.sections.values():
        method, path = texts[0].split(" ", 1)  # the heading: `GET /path`
        routes[(method.lower(), path)] = "".join(texts[1:])
    described = {(method, path): o for path, methods in document["paths"].items() for method, o in methods.items()}
    assert set(routes) == set(described) and len(page.sections) == len(described)
    assert ("get", "/api") in routes
    for route, operation in described.items():
        text = routes[route]
        assert operation["summary"].replace("`", "") in text, route
        for parameter in operation["parameters"]:
            assert parameter["name"] in text, (route, parameter["name"])
        for status, response in operation["responses"].items():
            assert f"{status} {response['description'].replace('`', '')}" in text, (route, status)
    names = set(document["components"]["schemas"])
    assert {f"schema-{name}" for name in names} <= page.ids


async def test_the_api_page_fetches_nothing_from_elsewhere_and_the_explorer_links_it(client):
    page = Page()
    page.feed(await (await client.get("/api")).text())
    assert "script" not in page.tags
    assert page.links and all(link.startswith(("/", "#")) and not link.startswith("//") for link in page.links)
    assert {link[1:] for link in page.links if link.startswith("#")} <= page.ids
    for link in (link for link in page.links if link.startswith("/")):
        assert (await client.get(link)).status == 200, link
    stylesheet = await client.get("/static/api-page.css")
    assert stylesheet.content_type == "text/css"
    explorer = Page()
    explorer.feed(await (await client.get("/")).text())
    assert "/api" in explorer.links
    assert "<http://127.0.0.1:8000/api>" in (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
