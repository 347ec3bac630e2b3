"""Every route, trailing slashes exactly as the original's (the slash-less form is redirected with 308)."""

from aiohttp import web

from server import api_page, explorer, ops, views

ROUTES = (
    ("/", explorer.page),
    ("/static/{name}", explorer.asset),
    ("/status", ops.status),
    ("/__heartbeat__", ops.heartbeat),
    ("/__lbheartbeat__", ops.lbheartbeat),
    ("/__ready__", ops.ready),
    ("/__version__", ops.version),
    ("/authed", ops.authed),
    ("/clear-cache", ops.clear_cache),
    ("/aggregates_by/{kind}/channels/", views.channels),
    ("/aggregates_by/{kind}/channels/{channel}/dates/", views.dates),
    ("/aggregates_by/{kind}/channels/{channel}/", views.metric),
    ("/filters/", views.filters),
    ("/freshness/", views.freshness),
    ("/openapi.json", ops.openapi),
    ("/api", api_page.page),
    ("/metrics", ops.metrics),
)


def setup_routes(app: web.Application) -> None:
    for path, handler in ROUTES:
        app.router.add_get(path, handler)
