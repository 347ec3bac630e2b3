"""The service's settings, read once from the declared environment variables (aggregator/settings.py).

A frozen dataclass rather than globals, so tests build apps with `dataclasses.replace(settings, ...)`.
"""

import re
from dataclasses import dataclass, field

from aggregator.settings import SettingError, flag, number, setting

CHANNEL_KEY = re.compile(r"[a-z]{1,32}|\*")
WHOLE = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class PerChannel:
    """A number per channel, and one for the channels not named."""

    channels: tuple[tuple[str, int], ...]
    others: int

    def of(self, channel: str) -> int:
        return dict(self.channels).get(channel, self.others)


def per_channel(name: str, low: int = 1) -> PerChannel:
    """A setting of `channel=N` pairs separated by commas, one of them `*=N` for the other channels; raises
    SettingError naming the variable when it is not that."""
    value = setting(name) or ""
    pairs: dict[str, int] = {}
    for item in value.split(","):
        channel, _, text = item.strip().partition("=")
        if not (CHANNEL_KEY.fullmatch(channel) and WHOLE.fullmatch(text) and int(text) >= low) or channel in pairs:
            raise SettingError(
                f"{name}={value!r} is not channel=N pairs separated by commas with `*=N` for the other channels "
                f"(each N a whole number of at least {low}, each channel once)"
            )
        pairs[channel] = int(text)
    if "*" not in pairs:
        raise SettingError(f"{name}={value!r} names no `*=N` for the other channels")
    others = pairs.pop("*")
    return PerChannel(tuple(sorted(pairs.items())), others)


def _words(text: str | None, separator: str | None) -> tuple[str, ...]:
    return tuple(w.strip() for w in (text or "").split(separator) if w.strip())


@dataclass(frozen=True)
class ServerSettings:
    database: dict  # asyncpg connect keyword arguments (aggregator.store.connect.connect_options)
    host: str
    port: int
    pool_min: int
    pool_max: int
    statement_timeout_ms: int
    cache_bytes: int
    max_answer_cells: int
    max_in_flight: int
    max_connections: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    answer_threads: int
    offload_cells: int
    answer_budget_cells: int
    send_timeout_seconds: float
    max_age: int
    ledger_poll_seconds: float
    force_https: bool
    access_log: bool
    version_file: str
    blacklist: tuple[str, ...]
    auth_only_metrics: frozenset[str]
    public_release_metrics: frozenset[str]
    allow_all_release_metrics: bool
    jwks: str | None
    audience: str
    issuer: str
    jwks_refresh_seconds: float
    jwks_keep_seconds: float
    metrics_port: int | None
    max_allow_bytes: int
    min_clients: PerChannel
    blacklist_patterns: tuple[re.Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blacklist_patterns", tuple(re.compile(p) for p in self.blacklist))

    @classmethod
    def from_env(cls, database: dict) -> "ServerSettings":
        """The settings of the environment (each variable's declared default when unset); raises SettingError
        naming the first variable that is not of its type."""
        return cls(
            database=database,
            host=setting("API_HOST"),
            port=number("API_PORT", low=1, high=65535),
            pool_min=number("API_POOL_MIN"),
            pool_max=number("API_POOL_MAX", low=1),
            statement_timeout_ms=number("API_STATEMENT_TIMEOUT_MS"),
            cache_bytes=number("API_CACHE_BYTES"),
            max_answer_cells=number("API_MAX_ANSWER_CELLS", low=1),
            max_in_flight=number("API_MAX_IN_FLIGHT", low=1),
            max_connections=number("API_MAX_CONNECTIONS", low=1),
            header_timeout_seconds=number("API_HEADER_TIMEOUT_SECONDS", float, low=0.1),
            body_timeout_seconds=number("API_BODY_TIMEOUT_SECONDS", float, low=0.1),
            answer_threads=number("API_ANSWER_THREADS", low=1),
            offload_cells=number("API_OFFLOAD_CELLS"),
            answer_budget_cells=number("API_ANSWER_BUDGET_CELLS", low=1),
            send_timeout_seconds=number("API_SEND_TIMEOUT_SECONDS", float, low=0.1),
            max_age=number("API_MAX_AGE"),
            ledger_poll_seconds=number("API_LEDGER_POLL_SECONDS", float),
            force_https=flag("API_FORCE_HTTPS"),
            access_log=flag("API_ACCESS_LOG"),
            version_file=setting("API_VERSION_FILE"),
            blacklist=_words(setting("METRICS_BLACKLIST"), None),
            auth_only_metrics=frozenset(_words(setting("AUTH_ONLY_METRICS"), ",")),
            public_release_metrics=frozenset(_words(setting("PUBLIC_RELEASE_METRICS"), ",")),
            allow_all_release_metrics=flag("ALLOW_ALL_RELEASE_METRICS"),
            jwks=setting("AUTH_JWKS"),
            audience=setting("AUTH_AUDIENCE"),
            issuer=setting("AUTH_ISSUER"),
            jwks_refresh_seconds=number("AUTH_JWKS_REFRESH_SECONDS", float),
            jwks_keep_seconds=number("AUTH_JWKS_KEEP_SECONDS", float),
            metrics_port=number("API_METRICS_PORT", low=1, high=65535) if setting("API_METRICS_PORT") else None,
            max_allow_bytes=number("API_MAX_ALLOW_BYTES"),
            min_clients=per_channel("API_MIN_CLIENTS"),
        )
