"""The explorer page: plain static files shipped inside the package (server/static/), served as they are.

No build step and nothing fetched from elsewhere: the page is ES modules that call this API and draw SVG. Only
the files the package ships are served (a fixed set, so a request can never name a path outside the folder);
`no-cache` makes browsers revalidate them, so a new release is seen at once.
"""

from pathlib import Path

from aiohttp import web

from server.errors import not_found

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = frozenset(path.name for path in STATIC.iterdir() if path.is_file())
HEADERS = {"Cache-Control": "no-cache"}


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers=HEADERS)


async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise not_found(f"No file {name[:100]!r} in the explorer.")
    return web.FileResponse(STATIC / name, headers=HEADERS)
