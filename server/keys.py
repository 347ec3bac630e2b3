"""Every typed key of the application and of a request, in one place."""

import asyncpg
from aiohttp import web

from server.auth import Authenticator
from server.cache import ResponseCache
from server.catalog import Catalog
from server.config import ServerSettings
from server.ledger import Ledger
from server.metrics import ApiMetrics
from server.offload import Offloader
from server.queries import Reader

SETTINGS = web.AppKey("settings", ServerSettings)
POOL = web.AppKey("pool", asyncpg.Pool)
READER = web.AppKey("reader", Reader)
LEDGER = web.AppKey("ledger", Ledger)
CACHE = web.AppKey("cache", ResponseCache)
CATALOG = web.AppKey("catalog", Catalog)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", ApiMetrics)
OFFLOADER = web.AppKey("offloader", Offloader)
POLICY_TAG = web.AppKey("policy_tag", str)  # part of every ETag: see server/respond.py

AUTHED = web.RequestKey("authed", bool)  # memo of the caller's authentication, per request
