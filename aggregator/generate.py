"""Synthetic Firefox telemetry "main" pings (v4) and the definitions files that describe them.

The demo, the tests and the benchmarks need input shaped like what the original service read: 20-100 KB pings
carrying hundreds of histograms packed the way Firefox packs them, the odd broken line, and the junk real clients
send. Everything is deterministic for a seed, so a corpus is regenerated rather than stored.

Random numbers come from numpy in bulk (a few calls per ping for all its histograms): building the JSON dictionaries
in Python is the expensive part, and must not also pay for numpy calls per histogram.
"""

import gzip
import math
import os
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any, NamedTuple

import numpy as np
import orjson
import yaml

from aggregator.buckets import exponential_buckets, linear_buckets

# Firefox's histogram_type codes by definition kind (enumerated histograms are linear on the wire).
HISTOGRAM_TYPES: dict[str, int] = {
    "exponential": 0,
    "linear": 1,
    "enumerated": 1,
    "boolean": 2,
    "flag": 3,
    "count": 4,
    "categorical": 5,
}

# Sent in pings but absent from Histograms.json: the job takes their layout from the ping.
UNDEFINED_HISTOGRAMS: tuple[str, ...] = (
    "FX_TAB_GROUPS_RESTORE_MS",
    "DOM_STORAGE_PARTITION_SIZE_KB",
    "NETWORK_EARLY_HINTS_ACCEPTED",
    "TRACKING_PROTECTION_SHIELD_REASON",
)

# Lines counted as malformed, used in turn (see _malformed_line).
MALFORMED_KINDS: tuple[str, ...] = (
    "not_json",
    "truncated",
    "not_object",
    "application_string",
    "missing_build_id",
    "bad_build_id",
    "numeric_version",
    "null_processes",
    "child_payloads_string",
    "sample_id_string",
)

# Damage done to one exponential histogram of an otherwise good ping (see _spoil_histogram).
HISTOGRAM_JUNK: tuple[str, ...] = (
    "null",
    "negative_sum",
    "float_sum",
    "non_integer_key",
    "non_integer_value",
    "not_a_lower_bound",
)

Processes = tuple[str, ...]  # where a probe is recorded: parent, content, gpu, extension
Keys = Sequence[str]  # the keys of a keyed probe

_PARENT = ("parent",)
_CONTENT = ("content",)
_BOTH = ("parent", "content")
_GRAPHICS = ("parent", "gpu")
_ALL = ("parent", "content", "gpu")
_SCRIPT = ("parent", "content", "extension")

_REFERENCE_DAY = date(2026, 11, 1)  # Firefox 146 is on nightly that day; a new major every 28 days
_REFERENCE_MAJOR = 146

LEGACY_FRACTION = 0.1  # pings with payload.childPayloads instead of processes.content histograms
FENNEC_FRACTION = 0.015
SAMPLED_OUT_FRACTION = 0.01  # meta.sampleId >= 100
SPOILED_FRACTION = 0.1  # pings with one damaged histogram
SCALAR_FLOAT_FRACTION = 0.002
SCALAR_NEGATIVE_FRACTION = 0.001
GAP_FRACTION = 0.15  # empty buckets between a histogram's first and last non-empty ones
GZIP_LEVEL = 1  # generation speed matters more than corpus size
WRITE_BATCH = 64  # lines per write


@dataclass(frozen=True)
class GenerateSummary:
    """What generate_corpus wrote: enough for a caller to run the job on it and to report on it."""

    output: str  # the output folder
    dates: list[str]  # YYYYMMDD submission dates written
    files: list[str]  # paths of the ping files written
    pings: int  # lines written, malformed ones included
    malformed: int  # of which malformed
    bytes_uncompressed: int  # total size of the JSON lines, newlines included
    histograms_definitions: str  # path of Histograms.json written
    scalars_definitions: str  # path of Scalars.yaml written


# ---------------------------------------------------------------------------------------------------------------
# Histogram catalogue: fixed names and Firefox layouts. Only how often and how much each one is used depends on
# the seed.


@dataclass(frozen=True)
class _HistogramProbe:
    """A histogram as pings carry it; `defined`: Histograms.json has an entry under this very name."""

    name: str
    kind: str
    low: int
    high: int
    n_buckets: int
    processes: tuple[str, ...]
    keys: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    n_values: int | None = None
    defined: bool = True

    def bounds(self) -> list[int]:
        """Bucket lower bounds, as Firefox computes them."""
        if self.kind == "exponential":
            return exponential_buckets(self.low, self.high, self.n_buckets)
        return linear_buckets(self.low, self.high, self.n_buckets)

    def reach(self) -> int:
        """How many leading buckets samples can land in (booleans never reach bucket 2, labels end early)."""
        if self.kind in ("boolean", "flag"):
            return 2
        if self.kind == "count":
            return 1
        if self.kind == "enumerated":
            return self.n_values or 1
        if self.kind == "categorical":
            return len(self.labels)
        return self.n_buckets


def _exponential(
    name: str, low: int, high: int, n: int, processes: Processes = _PARENT, keys: Keys = (), defined: bool = True
) -> _HistogramProbe:
    return _HistogramProbe(name, "exponential", low, high, n, processes, tuple(keys), defined=defined)


def _linear(
    name: str, low: int, high: int, n: int, processes: Processes = _PARENT, keys: Keys = (), defined: bool = True
) -> _HistogramProbe:
    return _HistogramProbe(name, "linear", low, high, n, processes, tuple(keys), defined=defined)


def _two_valued(
    name: str, kind: str, processes: Processes = _PARENT, keys: Keys = (), defined: bool = True
) -> _HistogramProbe:
    """Boolean, flag and count histograms all have Firefox's (1, 2, 3) layout."""
    return _HistogramProbe(name, kind, 1, 2, 3, processes, tuple(keys), defined=defined)


def _enumerated(name: str, n_values: int, processes: Processes = _PARENT, keys: Keys = ()) -> _HistogramProbe:
    return _HistogramProbe(name, "enumerated", 1, n_values, n_values + 1, processes, tuple(keys), n_values=n_values)


def _categorical(
    name: str,
    labels: Sequence[str],
    n_values=None,
    processes: Processes = _PARENT,
    keys: Keys = (),
    defined: bool = True,
) -> _HistogramProbe:
    """Layout as moztelemetry resolves it; n_values is only ever >= 50, where Firefox agrees with it."""
    n = max(len(labels), n_values or 0, 50)
    return _HistogramProbe(name, "categorical", 1, n, n + 1, processes, tuple(keys), tuple(labels), n_values, defined)


def _words(text: str) -> tuple[str, ...]:
    """Names written as one space-separated string: long lists of them stay readable."""
    return tuple(text.split())


def _family(prefix: str, suffixes: str, make: Callable[[str], _HistogramProbe]) -> list[_HistogramProbe]:
    return [make(prefix + suffix) for suffix in suffixes.split()]


_IPC_MESSAGES = tuple(  # 50 mixed-case keys
    f"{protocol}::Msg_{message}"
    for protocol in _words(
        "PContent PBrowser PHttpChannel PCompositorBridge PAPZ PWindowGlobal PBackground PDocAccessible PNecko PGPU"
    )
    for message in ("AsyncMessage", "Destroy", "UpdateDimensions", "RealKeyEvent", "OnStartRequest")
)
_WEBEXT_APIS = tuple(  # 55 labels: more than the default 50 buckets of a categorical histogram
    f"{namespace}.{method}"
    for namespace in _words(
        "tabs runtime storage webRequest contextMenus scripting bookmarks history downloads cookies windows"
    )
    for method in ("get", "set", "query", "onEvent", "remove")
)
_USE_COUNTER_FEATURES = _words(
    "CUSTOMELEMENTREGISTRY_DEFINE DOCUMENT_OPEN ELEMENT_ATTACHSHADOW CONSOLE_LOG WINDOW_OPEN XMLHTTPREQUEST_SYNC "
    "DOCUMENT_EXECCOMMAND NAVIGATOR_GETBATTERY WINDOW_SIDEBAR SVGSVGELEMENT_GETELEMENTBYID CSS_ZOOM "
    "DOCUMENT_CARETRANGEFROMPOINT MUTATIONEVENT_DOMNODEINSERTED WEBSOCKET_CONSTRUCTOR INDEXEDDB_OPEN "
    "SERVICEWORKER_REGISTER CLIPBOARD_READTEXT OFFSCREENCANVAS_CONSTRUCTOR FULLSCREEN_REQUEST DOCUMENT_DOMAIN_SET"
)


def _network_probes() -> list[_HistogramProbe]:
    http = (
        "DNS_ISSUE_TIME DNS_LOOKUP_TIME TCP_CONNECTION_2 TLS_HANDSHAKE OPEN_TO_FIRST_SENT "
        "FIRST_SENT_TO_LAST_RECEIVED OPEN_TO_FIRST_RECEIVED OPEN_TO_FIRST_FROM_CACHE_V2 COMPLETE_LOAD "
        "COMPLETE_LOAD_NET"
    )
    probes = [
        p for page in ("PAGE", "SUB") for p in _family(f"HTTP_{page}_", http, lambda n: _exponential(n, 1, 30000, 50))
    ]
    return [
        *probes,
        _exponential("DNS_LOOKUP_TIME", 1, 60000, 50),
        _exponential("DNS_RENEWAL_TIME", 1, 60000, 50),
        _exponential("SSL_TIME_UNTIL_READY", 1, 60000, 200),
        _exponential("TRANSACTION_WAIT_TIME_HTTP", 1, 5000, 100),
        _exponential("HTTP_REQUEST_PER_PAGE", 1, 1000, 50),
        _linear("HTTP_REQUEST_PER_PAGE_FROM_CACHE", 1, 101, 102),
        _exponential("NETWORK_CACHE_V2_HIT_TIME_MS", 1, 10000, 50),
        _exponential("NETWORK_CACHE_V2_MISS_TIME_MS", 1, 10000, 50),
        _exponential("NETWORK_DISK_CACHE_OPEN", 1, 10000, 10),
        _exponential("URLCLASSIFIER_LOOKUP_TIME_2", 1, 500, 10),
        _two_valued("SSL_RESUMED_SESSION", "boolean"),
        _two_valued("HTTP_CONNECTION_ENTRY_CACHE_HIT_1", "boolean"),
        _two_valued("HTTP_CHANNEL_ONSTART_SUCCESS", "boolean", _BOTH),
        _enumerated("HTTP_CHANNEL_DISPOSITION", 16),
        _enumerated("HTTP_RESPONSE_VERSION", 10),
        _enumerated("HTTP_CACHE_DISPOSITION_2_V2", 5),
        _enumerated("SSL_HANDSHAKE_VERSION", 16),
        _enumerated("SSL_HANDSHAKE_RESULT", 672),
        _enumerated("SSL_CIPHER_SUITE_FULL", 128),
        _enumerated("SSL_KEA_ECDHE_CURVE_FULL", 36),
        _enumerated("CERT_VALIDATION_SUCCESS_BY_CA", 256),
        _categorical("HTTP_PROXY_TYPE", ("none", "http", "https", "socks4", "socks5", "pac")),
    ]


def _javascript_probes() -> list[_HistogramProbe]:
    """Garbage and cycle collection: recorded by every process, the extension one included."""
    return [
        *_family(
            "GC_",
            "MS MAX_PAUSE_MS_2 MARK_MS SWEEP_MS COMPACT_MS SLICE_MS",
            lambda n: _exponential(n, 1, 10000, 50, _SCRIPT),
        ),
        _exponential("GC_MINOR_US", 1, 1000000, 100, _SCRIPT),
        _exponential("GC_TIME_BETWEEN_S", 1, 86400, 50, _SCRIPT),
        _exponential("GC_PREPARE_MS", 1, 1000, 50, _BOTH),
        _exponential("GC_MARK_ROOTS_US", 1, 1000000, 50, _BOTH),
        _exponential("GC_EFFECTIVENESS", 1, 50000, 50, _BOTH),
        _linear("GC_MMU_50", 1, 100, 20, _SCRIPT),
        _linear("GC_NURSERY_PROMOTION_RATE", 1, 100, 50, _BOTH),
        _linear("GC_TENURED_SURVIVAL_RATE", 1, 100, 50, _BOTH),
        _two_valued("GC_RESET", "boolean", _SCRIPT),
        _two_valued("GC_NON_INCREMENTAL", "boolean", _SCRIPT),
        _exponential("CYCLE_COLLECTOR", 1, 10000, 50, _SCRIPT),
        *_family("CYCLE_COLLECTOR_", "MAX_PAUSE FULL WORKER", lambda n: _exponential(n, 1, 10000, 50, _SCRIPT)),
        _exponential("CYCLE_COLLECTOR_TIME_BETWEEN", 1, 120, 50, _BOTH),
        _exponential("CYCLE_COLLECTOR_VISITED_REF_COUNTED", 1, 300000, 50, _BOTH),
        _exponential("CYCLE_COLLECTOR_VISITED_GCED", 1, 300000, 50, _BOTH),
        _exponential("CYCLE_COLLECTOR_COLLECTED", 1, 100000, 50, _BOTH),
        _linear("CYCLE_COLLECTOR_SLICE_DURING_IDLE", 1, 100, 50, _BOTH),
    ]


def _memory_and_browser_probes() -> list[_HistogramProbe]:
    big = "RESIDENT_FAST UNIQUE TOTAL VSIZE UNIQUE_CONTENT_STARTUP"
    return [
        *_family("MEMORY_", big, lambda n: _exponential(n, 32768, 16777216, 100)),
        _exponential("MEMORY_JS_GC_HEAP", 1024, 16777216, 200),
        _exponential("MEMORY_HEAP_ALLOCATED", 1024, 16777216, 200),
        _exponential("MEMORY_STORAGE_SQLITE", 1024, 524288, 50),
        _exponential("MEMORY_IMAGES_CONTENT_USED_UNCOMPRESSED", 1024, 1048576, 50, _BOTH),
        _exponential("MEMORY_JS_COMPARTMENTS_SYSTEM", 1, 1000, 50, _BOTH),
        _exponential("MEMORY_JS_COMPARTMENTS_USER", 1, 1000, 50, _BOTH),
        _linear("MEMORY_HEAP_OVERHEAD_FRACTION", 1, 100, 25),
        _exponential("FX_PAGE_LOAD_MS_2", 1, 10000, 200),
        _exponential("FX_TAB_SWITCH_TOTAL_E10S_MS", 1, 1000, 20),
        _exponential("FX_TAB_SWITCH_COMPOSITE_E10S_MS", 1, 1000, 20),
        _exponential("FX_NEW_WINDOW_MS", 1, 10000, 20),
        _exponential("FX_SESSION_RESTORE_COLLECT_DATA_MS", 1, 30000, 10),
        _exponential("FX_SESSION_RESTORE_READ_FILE_MS", 1, 3000, 10),
        _exponential("FX_SESSION_RESTORE_WRITE_FILE_MS", 1, 3000, 10),
        _exponential("FX_SESSION_RESTORE_FILE_SIZE_BYTES", 1, 50000000, 30),
        _exponential("FX_TAB_CLOSE_TIME_ANIM_MS", 1, 10000, 50),
        _exponential("FX_TAB_CLOSE_TIME_NO_ANIM_MS", 1, 10000, 50),
        _linear("FX_NUMBER_OF_UNIQUE_SITE_ORIGINS_ALL_TABS", 1, 100, 50),
        _linear("FX_NUMBER_OF_UNIQUE_SITE_ORIGINS_PER_DOCUMENT", 1, 100, 50, _CONTENT),
        _two_valued("FX_SESSION_RESTORE_CORRUPT_FILE", "boolean"),
        _two_valued("FX_SESSION_RESTORE_ALL_FILES_CORRUPT", "boolean"),
        _enumerated("FX_URLBAR_SELECTED_RESULT_INDEX", 17),
        _exponential("PWMGR_NUM_SAVED_PASSWORDS", 1, 750, 50),
        _exponential("PLACES_BOOKMARKS_COUNT", 100, 8000, 15),
        _exponential("PLACES_PAGES_COUNT", 1000, 150000, 20),
        _exponential("PLACES_DATABASE_FILESIZE_MB", 5, 200, 10),
        _exponential("PLACES_MOST_RECENT_EXPIRED_VISIT_DAYS", 30, 730, 10),
        _two_valued("BROWSER_IS_USER_DEFAULT", "boolean"),
        _two_valued("BROWSER_IS_USER_DEFAULT_ERROR", "boolean"),
        _two_valued("SHUTDOWN_OK", "boolean"),
        _two_valued("E10S_WINDOW", "boolean"),
        _two_valued("PWMGR_SAVING_ENABLED", "boolean"),
        _enumerated("PWMGR_PROMPT_REMEMBER_ACTION", 5),
        _enumerated("UPDATE_CHECK_CODE_NOTIFY", 50),
        _two_valued("FXA_CONFIGURED", "flag"),
        _two_valued("WEAVE_CONFIGURED", "flag"),
        _two_valued("NEWTAB_PAGE_ENABLED", "flag"),
        _two_valued("STARTUP_CRASH_DETECTED", "flag"),  # defined under its STARTUP_ name: no fallback needed
        _two_valued("DEVTOOLS_TOOLBOX_OPENED_COUNT", "count"),
        _two_valued("DEVTOOLS_WEBCONSOLE_OPENED_COUNT", "count"),
        _two_valued("DEVTOOLS_INSPECTOR_OPENED_COUNT", "count"),
        _categorical(
            "PAGE_LOAD_ERROR",
            _words("dnsNotFound netTimeout connectionFailure nssFailure2 certError netReset redirectLoop other"),
            n_values=60,
        ),
        _categorical(
            "FX_URLBAR_SELECTED_RESULT_TYPE_2",
            _words(
                "autofill bookmark history keyword searchengine searchsuggestion switchtab tag visiturl remotetab "
                "extension preloaded-top-site tip topsite formhistory"
            ),
        ),
        _categorical(
            "COOKIE_BEHAVIOR",
            _words("accept reject-foreign reject limit-foreign reject-trackers reject-trackers-and-partition"),
        ),
        _categorical("WEBEXT_API_CALLED", _WEBEXT_APIS, processes=("parent", "extension")),
    ]


def _content_and_graphics_probes() -> list[_HistogramProbe]:
    timings = (
        "DOM_LOADING_MS DOM_INTERACTIVE_MS DOM_CONTENT_LOADED_START_MS DOM_CONTENT_LOADED_END_MS DOM_COMPLETE_MS "
        "LOAD_EVENT_START_MS LOAD_EVENT_END_MS FIRST_CONTENTFUL_PAINT_MS NON_BLANK_PAINT_MS RESPONSE_START_MS "
        "FIRST_INTERACTION_MS"
    )
    compositor = "WR_RENDERER_TIME WR_SCENEBUILD_TIME WR_SCENESWAP_TIME WR_FRAMEBUILD_TIME COMPOSITE_TIME"
    return [
        *_family("TIME_TO_", timings, lambda n: _exponential(n, 1, 50000, 100, _CONTENT)),
        *_family("", compositor, lambda n: _exponential(n, 1, 1000, 50, _GRAPHICS)),
        _exponential("CONTENT_PAINT_TIME", 1, 1000, 50, _CONTENT),
        _exponential("CONTENT_FULL_PAINT_TIME", 1, 1000, 50, _CONTENT),
        _exponential("CONTENT_FRAME_TIME", 1, 5000, 50, _ALL),
        _linear("CONTENT_FRAME_TIME_VSYNC", 8, 792, 100, _ALL),
        _linear("CONTENT_LARGE_PAINT_PHASE_WEIGHT", 1, 100, 11, _CONTENT),
        _exponential("PAINT_BUILD_DISPLAYLIST_TIME", 1, 500, 50, _BOTH),
        _exponential("PAINT_RASTERIZE_TIME", 1, 1000, 50, _BOTH),
        _exponential("CHECKERBOARD_DURATION", 1, 100000, 50, _GRAPHICS),
        _exponential("CHECKERBOARD_PEAK", 1, 66355200, 50, _GRAPHICS),
        _exponential("CHECKERBOARD_POTENTIAL_DURATION", 1, 1000000, 50, _GRAPHICS),
        _exponential("CHECKERBOARD_SEVERITY", 1, 1073741824, 50, _GRAPHICS),
        _exponential("IMAGE_DECODE_TIME", 50, 50000000, 100, _BOTH),
        _exponential("IMAGE_DECODE_LATENCY_US", 1, 5000000, 100, _BOTH),
        _enumerated("GFX_CONTENT_FAILED_TO_ACQUIRE_DEVICE", 6, _ALL),
        _two_valued("CONTENT_PROCESS_LAUNCH_IS_SYNC", "boolean"),
        _two_valued("MEDIA_DECODING_PROCESS_CRASH", "boolean"),
        _linear("VIDEO_DROPPED_FRAMES_PROPORTION", 1, 100, 50, _CONTENT),
        _exponential("INPUT_EVENT_RESPONSE_MS", 1, 10000, 50, _BOTH),
        _exponential("INPUT_EVENT_RESPONSE_COALESCED_MS", 1, 10000, 50, _BOTH),
        _exponential("KEYPRESS_PRESENT_LATENCY", 1, 200000, 50, _BOTH),
        _exponential("MOUSEUP_FOLLOWED_BY_CLICK_PRESENT_LATENCY", 1, 200000, 50, _BOTH),
        _exponential("LOAD_INPUT_EVENT_RESPONSE_MS", 1, 10000, 50, _BOTH),
        _exponential("EVENTLOOP_UI_ACTIVITY_EXP_MS", 50, 60000, 20, _BOTH),
        _enumerated("SCROLL_INPUT_METHODS", 64, _BOTH),
        _two_valued("CONTENT_DOCUMENTS_DESTROYED", "count", _BOTH),
        _two_valued("TOP_LEVEL_CONTENT_DOCUMENTS_DESTROYED", "count", _BOTH),
        _two_valued("BROWSER_SHIM_USAGE_BLOCKED", "count", _CONTENT),
        _two_valued("PDF_VIEWER_USED", "count", _CONTENT),
        _categorical("SCRIPT_PRELOADER_REQUESTS", ("Hit", "HitChild", "Miss"), processes=_BOTH),
        _categorical(
            "DOM_SCRIPT_SRC_ENCODING",
            _words("UTF8 gb18030 Big5 UTF16 windows-1252 Shift_JIS EUC-KR Other"),
            processes=_CONTENT,
        ),
        *(
            _two_valued(f"USE_COUNTER2_{feature}_{scope}", "boolean", _CONTENT, defined=False)
            for feature in _USE_COUNTER_FEATURES
            for scope in ("DOCUMENT", "PAGE")
        ),
    ]


def _keyed_probes() -> list[_HistogramProbe]:
    return [
        _exponential("IPC_READ_MAIN_THREAD_LATENCY_MS", 1, 10000, 50, _BOTH, _IPC_MESSAGES),
        _exponential(  # excluded by the job when keyed
            "MESSAGE_MANAGER_MESSAGE_SIZE",
            1,
            8000000,
            50,
            _BOTH,
            _words("Content:LoadURI SessionStore:update PageMetadata:GetPageData RemoteLogins:findLogins"),
        ),
        _linear(  # excluded by the job when keyed
            "VIDEO_DETAILED_DROPPED_FRAMES_PROPORTION",
            1,
            100,
            50,
            _CONTENT,
            ("V,1280x720,r", "V,1920x1080,r", "AV,640x360,r", "V,3840x2160,r"),
        ),
        _exponential(
            "FX_TAB_REMOTE_NAVIGATION_DELAY_MS",
            1,
            4000,
            50,
            keys=("WebNavigation:LoadURI", "SessionStore:restoreTabContent"),
        ),
        _exponential(
            "DNS_TRR_LOOKUP_TIME3",
            1,
            60000,
            50,
            keys=_words("mozilla.cloudflare-dns.com dns.nextdns.io doh.xfinity.com private.canadianshield.cira.ca"),
        ),
        _exponential("SSL_TIME_UNTIL_HANDSHAKE_FINISHED_KEYED_BY_KA", 1, 60000, 200, keys=("ecdhe", "dhe", "rsa")),
        _linear("MEMORY_DISTRIBUTION_AMONG_CONTENT", 1, 100, 50, keys=("0-10 tabs", "11-20 tabs", "21+ tabs")),
        _two_valued(
            "QM_FIRST_INITIALIZATION_ATTEMPT",
            "boolean",
            keys=_words("Storage TemporaryStorage DefaultRepository PersistentRepository TemporaryGroup"),
        ),
        _two_valued("NETWORK_HTTP_REDIRECT_TO_SCHEME", "boolean", keys=("http", "https", "moz-extension", "about")),
        _enumerated("URLCLASSIFIER_UPDATE_ERROR", 16, keys=("google4", "mozilla")),
        _categorical(
            "HTTP3_CONNECTION_CLOSE_REASON", ("NoError", "TransportError", "AppError", "Timeout"), keys=("h3", "h3-29")
        ),
        _two_valued(
            "SEARCH_COUNTS",
            "count",
            keys=_words("google.urlbar Bing.searchbar DuckDuckGo.contextmenu google.newtab other-Ecosia.urlbar"),
        ),
        _two_valued("SUBPROCESS_ABNORMAL_ABORT", "count", keys=("content", "gpu", "rdd", "gmplugin", "socket")),
        _two_valued("SUBPROCESS_CRASHES_WITH_DUMP", "count", keys=("content", "gpu", "gmplugin")),
        _two_valued("PROCESS_CRASH_SUBMIT_ATTEMPT", "count", keys=("main-crash", "content-crash", "gpu-crash")),
        _two_valued(
            "MEDIA_CODEC_USED", "count", _CONTENT, _words("video/avc video/vp9 video/av1 audio/mp4a-latm audio/opus")
        ),
        _two_valued(
            "CANVAS_WEBGL_FAILURE_ID",
            "count",
            _BOTH,
            ("FEATURE_FAILURE_WEBGL_EXHAUSTED_DRIVERS", "FEATURE_FAILURE_GLXTEST_FAILED", "SUCCESS"),
        ),
    ]


def _special_probes() -> list[_HistogramProbe]:
    """Names the job resolves by rule (STARTUP_ prefix, '/' suffix, built in) and names it has no definition for."""
    return [
        _exponential("STARTUP_HTTP_PAGE_DNS_ISSUE_TIME", 1, 30000, 50, defined=False),
        _exponential("GC_MS/parallel", 1, 10000, 50, defined=False),
        _exponential("EVENTLOOP_UI_LAG_EXP_MS", 50, 60000, 20, _BOTH, defined=False),
        _exponential("FX_TAB_GROUPS_RESTORE_MS", 1, 20000, 30, defined=False),
        _linear("DOM_STORAGE_PARTITION_SIZE_KB", 1, 1024, 16, _CONTENT, defined=False),
        _two_valued("NETWORK_EARLY_HINTS_ACCEPTED", "boolean", defined=False),
        _categorical("TRACKING_PROTECTION_SHIELD_REASON", ("none", "blocked", "allowed", "exception"), defined=False),
    ]


def _histogram_probes() -> list[_HistogramProbe]:
    """Every histogram the generator sends, in ping order; the same for every seed."""
    return [
        *_network_probes(),
        *_javascript_probes(),
        *_memory_and_browser_probes(),
        *_content_and_graphics_probes(),
        *_keyed_probes(),
        *_special_probes(),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Scalar catalogue and simple measurements.


@dataclass(frozen=True)
class _ScalarProbe:
    """A scalar as Scalars.yaml defines it; `typical` is the median (uint) or the chance of true (boolean)."""

    name: str  # category.probe, as pings carry it
    kind: str  # uint, boolean or string
    processes: tuple[str, ...]
    typical: float = 1.0
    keys: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()


def _uints(prefix: str, pairs: str, processes: Processes = _PARENT, keys: Keys = ()) -> list[_ScalarProbe]:
    """Unsigned scalars from "name:median name:median ..."."""
    probes = []
    for pair in pairs.split():
        name, median = pair.split(":")
        probes.append(_ScalarProbe(prefix + name, "uint", processes, float(median), tuple(keys)))
    return probes


def _booleans(prefix: str, pairs: str, processes: Processes = _PARENT, keys: Keys = ()) -> list[_ScalarProbe]:
    """Boolean scalars from "name:chance_of_true ..."."""
    probes = []
    for pair in pairs.split():
        name, chance = pair.split(":")
        probes.append(_ScalarProbe(prefix + name, "boolean", processes, float(chance), tuple(keys)))
    return probes


def _string(name: str, choices: str) -> _ScalarProbe:
    return _ScalarProbe(name, "string", _PARENT, choices=tuple(choices.split(" ")))


_NAVIGATION_KEYS = _words("search search_enter search_formhistory search_suggestion search_urlbar")
_SEARCH_KEYS = _words("google:tagged:firefox-b-d google:organic:none bing:tagged:MOZI DuckDuckGo:organic:none")
_POWER_KEYS = _words(
    "parent.active parent.inactive parent.active.playing-audio content.foreground content.background gpu"
)
_EVENT_KEYS = _words(
    "navigation#search#urlbar pwmgr#open_management#mainmenu security.ui.protections#show#protection_report "
    "normandy#enroll#preference_study addonsManager#install#extension pictureinpicture#create#player "
    "devtools.main#open#tools fxa_avatar_menu#click#toolbar_icon"
)


def _scalar_probes() -> list[_ScalarProbe]:
    """Every scalar the generator sends; the same for every seed."""
    interaction = {
        "nav_bar": "back-button forward-button stop-reload-button urlbar-input PanelUI-menu-button "
        "unified-extensions-button downloads-button fxa-toolbar-menu-button home-button pageActionButton",
        "tabs_bar": "tab-close-button tabs-newtab-button alltabs-button tabbrowser-tab",
        "keyboard": "Ctrl+T Ctrl+W Ctrl+L Ctrl+Shift+T Alt+Left F5 Cmd+T",
        "content_context": "context-copy context-openlinkintab context-searchselect context-viewimage "
        "context-savelink context-inspect",
        "app_menu": "appMenu-new-tab-button2 appMenu-history-button appMenu-settings-button "
        "appMenu-passwords-button appMenu-fxa-label2",
    }
    return [
        *_uints(
            "browser.engagement.",
            "active_ticks:300 max_concurrent_tab_count:8 max_concurrent_window_count:2 "
            "max_concurrent_tab_pinned_count:1 tab_open_event_count:6 tab_pinned_event_count:0.3 tab_reload_count:2 "
            "window_open_event_count:1 total_uri_count:40 total_uri_count_normal_and_private_mode:42 "
            "unfiltered_uri_count:60 unique_domains_count:10 session_time_including_suspend:3600000 "
            "session_time_excluding_suspend:3000000 profile_count:1 restored_pinned_tabs_count:1",
        ),
        *_uints("browser.timings.", "last_shutdown:1200"),
        *_uints("browser.session.restore.", "number_of_win:1 number_of_tabs:7 worker_restart_count:0.2"),
        *_uints("browser.startup.", "abouthome_cache_result:2"),
        *_uints("timestamps.", "first_paint:1500 first_paint_two:1400 about_home_topsites_first_paint:2000"),
        *_uints("telemetry.discarded.", "accumulations:0.3 keyed_accumulations:0.2 scalar_actions:0.1", _ALL),
        *_uints("gfx.display.", "count:1 primary_height:1080 primary_width:1920"),
        *_uints("gfx.hdr.", "windows_display_colorspace_bitfield:1"),
        *_uints("devtools.", "inspector.node_selection_count:3 accessibility.opened_count:0.1"),
        *_uints(
            "dom.contentprocess.",
            "troubled_due_to_memory:0.1 os_priority_lowered:30 os_priority_raised:25 os_priority_change_considered:60",
        ),
        *_uints("script.preloader.", "mainthread_recompile:0.2"),
        *_uints("networking.", "http_connections_captive_portal:0.1 nss_initialization:30"),
        *_uints("sandbox.", "effective_content_process_level:4 content_win32k_lockdown_state:3"),
        *_uints("contentblocking.", "trackers_blocked_count:50 category:1 exceptions:1"),
        *_uints("power.", "total_cpu_time_ms:60000 total_thread_wakeups:20000", _ALL),
        *_uints("places.", "previousday_visits:80 sponsored_visit_no_triggering_url:0.1"),
        *_uints("extensions.startupCache.", "load_time:30 read_errors:0.05"),
        *_uints("memoryreporter.", "max_ghost_windows:0.3", _BOTH),
        *_uints("security.", "https_only_mode_enabled:0.1 https_only_mode_enabled_pbm:0.1"),
        *_uints("startup.", "seconds_since_last_os_restart:86400"),
        *_uints(
            "media.",
            "page_count:30 page_had_media_count:8 page_had_play_revoked_count:0.5 element_in_page_count:12 "
            "autoplay_would_be_allowed_count:4 autoplay_would_not_be_allowed_count:1 video_play_time_ms:600000 "
            "video_hidden_play_time_ms:120000 video_hdr_play_time_ms:1000",
            _CONTENT,
        ),
        *_booleans("browser.session.restore.", "tabbar_restore_available:0.4 tabbar_restore_clicked:0.05"),
        *_booleans("browser.startup.", "abouthome_cache_shutdownwrite:0.8"),
        *_booleans("telemetry.", "data_upload_optin:0.95 os_shutting_down:0.5"),
        *_booleans("gfx.", "os_compositor:0.7", _GRAPHICS),
        *_booleans("gfx.", "supports_hdr:0.1"),
        *_booleans("devtools.onboarding.", "is_devtools_user:0.1"),
        *_booleans("dom.parentprocess.", "private_window_used:0.2"),
        *_booleans("a11y.", "indicator_acted_on:0.01 backplate:0.9 use_system_colors:0.02"),
        *_booleans("widget.", "dark_mode:0.35"),
        *_booleans("startup.", "is_cold:0.3"),
        *_booleans("contentblocking.", "cryptomining_blocking_enabled:0.95 fingerprinting_blocking_enabled:0.95"),
        _string("gfx.status.compositor", "webrender webrender_software"),
        _string("gfx.linux_window_protocol", "x11 wayland xwayland"),
        _string("widget.gtk_version", "3.24.38 3.24.41 3.24.33"),
        _string("startup.profile_selection_reason", "default firstrun-created-default restart arg-profile"),
        _string("a11y.instantiators", "UIA| MSAA|NVDA|"),
        _string("blocklist.mlbf_source", "dump_match cache_match remote_match"),
        *_uints(
            "browser.engagement.navigation.",  # excluded by the job
            "urlbar:3 searchbar:1 about_home:1 about_newtab:2 contextmenu:0.5 webextension:0.2",
            keys=_NAVIGATION_KEYS,
        ),
        *_uints(
            "browser.search.content.",
            "urlbar:3 searchbar:1 urlbar_handoff:2 tabhistory:0.5 reload:0.5 unknown:0.5",
            keys=_SEARCH_KEYS,
        ),
        *_uints("browser.search.", "withads.urlbar:2 adclicks.urlbar:0.5", keys=("google:tagged", "Bing:tagged")),
        *(
            probe
            for area, keys in interaction.items()
            for probe in _uints("browser.ui.interaction.", f"{area}:3", keys=keys.split())
        ),
        *_uints("telemetry.", "event_counts:2", _BOTH, _EVENT_KEYS),
        *_uints(
            "telemetry.",
            "dynamic_event_counts:1",
            keys=("urlbar.dynamic#engagement#result", "webcompat#click#reporter"),
        ),
        *_uints("devtools.", "current_theme:1", keys=("dark", "light", "auto")),
        *_uints(
            "networking.", "data_transferred_v3_kb:2000", keys=_words("Y0_N1Sys Y1_N1Sys Y2_N3Oth Y0_N1 Y1_N1 Y2_N3")
        ),
        *_uints("networking.", "https_rr_presented:20", keys=("none", "presented", "presented_with_http3")),
        *_uints(
            "networking.",
            "speculative_connect_outcome:5",
            keys=("aborted_socket_limit", "aborted_https_not_enabled", "successful"),
        ),
        *_uints(
            "media.",
            "decoder_backend_used:2",
            _CONTENT,
            _words("FFmpegDataDecoder WMFMediaDataDecoder AppleVTDecoder VPXDecoder DAV1DDecoder"),
        ),
        *_uints("power.", "cpu_time_per_process_type_ms:20000 wakeups_per_process_type:5000", keys=_POWER_KEYS),
        *_uints(
            "gfx.advanced.",
            "layers_failure_id:1",
            _GRAPHICS,
            ("FEATURE_FAILURE_D3D11_NEED_HWCOMP", "FEATURE_FAILURE_WEBRENDER_INIT"),
        ),
        *_uints("security.", "client_auth_cert_usage:1", keys=("requested", "sent")),
        *_booleans(
            "devtools.",
            "tool.registered:0.9",
            keys=_words("inspector webconsole jsdebugger styleeditor performance memory netmonitor storage"),
        ),
        *_booleans("a11y.", "theme:0.1", keys=("default", "always", "never")),
        *_booleans(
            "security.",
            "pkcs11_modules_loaded:0.9",
            keys=("NSS Internal PKCS #11 Module", "Builtin Roots Module", "OpenSC smartcard framework"),
        ),
        *_booleans(
            "widget.",
            "ime_name_on_windows:0.5",
            keys=("Microsoft IME", "Microsoft Pinyin", "Google Japanese Input", "ATOK", "Sogou Pinyin"),
        ),
    ]


# Simple measurements: (name, median), with nested groups one level down; the job reads numbers only.
_SIMPLE_MEASURES: tuple[tuple[str, float], ...] = tuple(
    (name, float(median))
    for name, median in (
        pair.split(":")
        for pair in _words(
            "totalTime:7200 uptime:120 start:40 main:60 selectProfile:70 afterProfileLocked:75 "
            "startupCrashDetectionBegin:200 startupCrashDetectionEnd:30000 firstPaint:900 firstPaint2:950 "
            "sessionRestoreInit:700 sessionRestored:1500 createTopLevelWindow:600 delayedStartupStarted:1000 "
            "delayedStartupFinished:1300 AMI_startup_begin:300 AMI_startup_end:350 XPI_startup_begin:310 "
            "XPI_startup_end:340 XPI_bootstrap_addons_begin:320 XPI_bootstrap_addons_end:330 blankWindowShown:500 "
            "firstLoadURI:1100 maximalNumberOfConcurrentThreads:80 activeTicks:900 shutdownDuration:1200 "
            "savedPings:0.5 addonManager.XPIDB_parseDB_MS:12 addonManager.XPIDB_lazy_open_MS:5 "
            "addonManager.XPIDB_async_read_MS:10 addonManager.XPIDB_decode_MS:4 addonManager.XPIDB_saves_total:3 "
            "addonManager.XPIDB_bytes:120000 addonManager.XPIDB_startupScan_MS:20 js.setProto:0.3 js.customIter:0.1"
        )
    )
)
_CHILD_SIMPLE_MEASURES = frozenset(
    ("totalTime", "uptime", "start", "main", "maximalNumberOfConcurrentThreads", "js.setProto", "js.customIter")
)


# ---------------------------------------------------------------------------------------------------------------
# Definitions files.


def _bug_number(name: str) -> int:
    """A stable, plausible bug number per probe (crc32: Python's own hash changes between runs)."""
    return 1_200_000 + zlib.crc32(name.encode()) % 700_000


def _description(name: str) -> str:
    words = name.replace(".", " ").replace("_", " ").lower()
    return f"Synthetic probe: {words} (written by aggregator.generate)."


def _firefox_processes(processes: Sequence[str]) -> list[str]:
    return ["main" if process == "parent" else process for process in processes]


def _histogram_definition(probe: _HistogramProbe) -> dict[str, Any]:
    """The probe's Histograms.json entry, with only the fields Firefox writes for its kind."""
    entry: dict[str, Any] = {
        "record_in_processes": _firefox_processes(probe.processes),
        "products": ["firefox"],
        "alert_emails": ["telemetry-client-dev@mozilla.com"],
        "bug_numbers": [_bug_number(probe.name)],
        "expires_in_version": "never",
        "kind": probe.kind,
    }
    if probe.kind in ("exponential", "linear"):
        if probe.low != 1:
            entry["low"] = probe.low
        entry["high"] = probe.high
        entry["n_buckets"] = probe.n_buckets
    if probe.kind in ("enumerated", "categorical") and probe.n_values is not None:
        entry["n_values"] = probe.n_values
    if probe.labels:
        entry["labels"] = list(probe.labels)
    if probe.keys:
        entry["keyed"] = True
    entry["releaseChannelCollection"] = "opt-out"
    entry["description"] = _description(probe.name)
    return entry


def _histograms_json(probes: Sequence[_HistogramProbe]) -> dict[str, dict[str, Any]]:
    """Histograms.json: the defined probes plus a few expired ones no ping carries any more, as in Firefox."""
    definitions = {probe.name: _histogram_definition(probe) for probe in probes if probe.defined}
    for expired in (
        _exponential("FX_THUMBNAILS_BG_QUEUE_SIZE_ON_CAPTURE", 1, 100, 15),
        _two_valued("SHUMWAY_FALLBACK", "boolean"),
        _enumerated("PLUGINS_NOTIFICATION_USER_ACTION_2", 3),
    ):
        definitions[expired.name] = _histogram_definition(expired) | {"expires_in_version": "60"}
    return definitions


def _scalars_yaml(probes: Sequence[_ScalarProbe]) -> dict[str, dict[str, dict[str, Any]]]:
    """Scalars.yaml: {category: {probe: definition}}; `keyed` appears only when true, as in Firefox."""
    categories: dict[str, dict[str, dict[str, Any]]] = {}
    for probe in probes:
        category, name = probe.name.rsplit(".", 1)
        entry: dict[str, Any] = {
            "bug_numbers": [_bug_number(probe.name)],
            "description": _description(probe.name),
            "expires": "never",
            "kind": probe.kind,
        }
        if probe.keys:
            entry["keyed"] = True
        entry |= {
            "notification_emails": ["telemetry-client-dev@mozilla.com"],
            "release_channel_collection": "opt-out",
            "products": ["firefox"],
            "record_in_processes": _firefox_processes(probe.processes),
        }
        categories.setdefault(category, {})[name] = entry
    return categories


# ---------------------------------------------------------------------------------------------------------------
# The catalogue compiled for numpy: one slot per (probe, key) a process may report.


class _Header(NamedTuple):
    """The fields every packed histogram of a probe shares (a tuple: unpacked once per histogram)."""

    bucket_count: int
    histogram_type: int
    range: list[int]


@dataclass(frozen=True)
class _HistogramSlots:
    """The histograms the processes of a ping shape may report, as columns: a ping draws them all at once."""

    names: list[str]
    keys: list[str | None]
    headers: list[_Header]
    containers: list[int]  # index in the ping shape's processes
    prevalence: np.ndarray  # chance that a ping carries it
    mode: np.ndarray  # typical first non-empty bucket
    spread: np.ndarray  # standard deviation of that first bucket
    log_run: np.ndarray  # _log_failure_chance of the number of buckets after the first
    log_count: np.ndarray  # _log_failure_chance of the count per bucket, minus one
    reach: np.ndarray  # number of leading buckets samples can land in
    bucket_count: np.ndarray
    single: np.ndarray  # flags hold exactly one sample
    offset: np.ndarray  # where the probe's buckets start in the _Catalogue.bucket_* arrays


@dataclass(frozen=True)
class _ScalarSlots:
    """The scalars one process may report, as columns (see _HistogramSlots)."""

    names: list[str]
    keys: list[str | None]
    kinds: list[str]
    typical: list[float]
    choices: list[tuple[str, ...]]
    prevalence: np.ndarray
    median: np.ndarray


# Probes of rare events (crashes, errors, devtools); every other probe is in most pings.
_RARE = (
    "DEVTOOLS_",
    "SUBPROCESS_",
    "PROCESS_CRASH_",
    "FX_SESSION_RESTORE_CORRUPT_FILE",
    "FX_SESSION_RESTORE_ALL_FILES_CORRUPT",
    "MEDIA_DECODING_PROCESS_CRASH",
    "CANVAS_WEBGL_FAILURE_ID",
    "BROWSER_IS_USER_DEFAULT_ERROR",
)


def _behaviour(rng: np.random.Generator, probe: _HistogramProbe) -> tuple[float, float, float, float, float]:
    """(prevalence, mode, spread, mean run, mean count) of a probe: drawn once per seed, so probes differ."""
    reach = probe.reach()
    u = rng.random(5).tolist()
    prevalence = 0.03 + 0.2 * u[0] if probe.name.startswith(_RARE) else 0.55 + 0.43 * u[0]
    if probe.name.startswith("USE_COUNTER2_"):
        return 0.15 + 0.5 * u[0], 1.0, 0.0, 0.0, 1 + 4 * u[3]
    if probe.kind == "flag":
        return prevalence, u[2], 0.6, 0.0, 1.0
    if probe.kind == "boolean":
        return prevalence, u[2], 0.7, 0.6, 1 + 30 * u[3]
    if probe.kind == "count":
        return prevalence, 0.0, 0.0, 0.0, 2 + 150 * u[3] ** 2
    if probe.kind in ("enumerated", "categorical"):
        return prevalence, (reach - 1) * u[2] ** 2, max(1.0, 0.15 * reach), min(3.0, reach / 2) * u[4], 1 + 15 * u[3]
    return prevalence, reach * (0.1 + 0.5 * u[2]), 0.08 * reach, 2 + min(6.0, reach / 4) * u[4], 1 + 20 * u[3] ** 2


def _log_failure_chance(mean: float) -> float:
    """log(q) of the geometric distribution (failures before a success, each with chance q) of that mean."""
    return math.log(mean / (1 + mean)) if mean > 0 else -math.inf


def _failures(uniform: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """Geometric draws by inversion, uniform in (0, 1]; numpy's own checks its parameters at every call."""
    return np.floor(np.log(uniform) / log_q).astype(np.int64)


def _bucket_samples(probe: _HistogramProbe) -> tuple[list[int], list[int]]:
    """Per bucket, the smallest sample it holds and by how much a sample may exceed it: sums stay consistent."""
    bounds = probe.bounds()
    if probe.kind == "count":  # every sample is 1 and lands in bucket 0
        return [1] * len(bounds), [0] * len(bounds)
    if probe.kind in ("exponential", "linear"):
        uppers = [*bounds[1:], 2 * bounds[-1]]
        return bounds, [upper - lower - 1 for lower, upper in zip(bounds, uppers, strict=True)]
    return bounds, [0] * len(bounds)


def _popularity(rank: int) -> float:
    """Keys of a keyed probe are used less and less often down the list, as in real data."""
    return (rank + 1) ** -0.6


class _Catalogue:
    """All probes, and their slots per process; depends on the seed only, so it is built once per corpus."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.histograms = _histogram_probes()
        self.scalars = _scalar_probes()
        behaviours = [_behaviour(rng, probe) for probe in self.histograms]
        labels: list[str] = []
        lows: list[int] = []
        spans: list[int] = []
        offsets = []
        for probe in self.histograms:
            offsets.append(len(lows))
            low, span = _bucket_samples(probe)
            labels += [str(bound) for bound in probe.bounds()]
            lows += low
            spans += span
        self.bucket_label = np.array(labels, dtype=object)  # indexing keeps the very str objects: no copies
        self.bucket_low = np.array(lows, dtype=np.int64)
        self.bucket_span = np.array(spans, dtype=np.int64)
        self.histogram_slots = {
            shape: self._histogram_slots(shape, behaviours, offsets)
            for shape in (
                ("parent", "content", "gpu", "extension"),
                ("parent", "content", "extension"),
                *(("parent",) + ("content",) * children for children in (1, 2, 3)),  # legacy: child payloads
            )
        }
        scalar_prevalence = (0.5 + 0.48 * rng.random(len(self.scalars))).tolist()
        self.scalar_slots = {
            process: self._scalar_slots(process, scalar_prevalence) for process in ("parent", "content", "gpu")
        }
        self.simple_medians = np.array([median for _, median in _SIMPLE_MEASURES])
        self.child_simple = np.array([name in _CHILD_SIMPLE_MEASURES for name, _ in _SIMPLE_MEASURES])

    def _histogram_slots(self, shape: tuple[str, ...], behaviours: list, offsets: list[int]) -> _HistogramSlots:
        rows = []
        for container, process in enumerate(shape):
            rows += self._histogram_rows(process, container, behaviours, offsets)
        names, keys, headers, containers, *columns = zip(*rows, strict=True)
        return _HistogramSlots(
            list(names), list(keys), list(headers), list(containers), *(np.array(column) for column in columns)
        )

    def _histogram_rows(self, process: str, container: int, behaviours: list, offsets: list[int]) -> list[tuple]:
        rows = []
        for probe, behaviour, offset in zip(self.histograms, behaviours, offsets, strict=True):
            if process not in probe.processes:
                continue
            bounds = probe.bounds()
            header = _Header(len(bounds), HISTOGRAM_TYPES[probe.kind], [bounds[1], bounds[-1]])
            prevalence, mode, spread, run, mean = behaviour
            for rank, key in enumerate(probe.keys or (None,)):
                weight = _popularity(rank) if key is not None else 1.0
                rows.append(
                    (
                        probe.name,
                        key,
                        header,
                        container,
                        prevalence * weight,
                        mode,
                        spread,
                        _log_failure_chance(run),
                        _log_failure_chance(mean - 1),
                        probe.reach(),
                        len(bounds),
                        probe.kind == "flag",
                        offset,
                    )
                )
        return rows

    def _scalar_slots(self, process: str, prevalence: list[float]) -> _ScalarSlots:
        rows = []
        for probe, chance in zip(self.scalars, prevalence, strict=True):
            if process not in probe.processes:
                continue
            for rank, key in enumerate(probe.keys or (None,)):
                weight = _popularity(rank) if key is not None else 1.0
                rows.append((probe.name, key, probe.kind, probe.typical, probe.choices, chance * weight))
        names, keys, kinds, typical, choices, chances = zip(*rows, strict=True)
        return _ScalarSlots(
            list(names), list(keys), list(kinds), list(typical), list(choices), np.array(chances), np.array(typical)
        )


# ---------------------------------------------------------------------------------------------------------------
# Drawing the measurements of one process.


def _pack(
    first: np.ndarray,
    end: np.ndarray,
    bucket_count: np.ndarray,
    offset: np.ndarray,
    owner: np.ndarray,
    bucket: np.ndarray,
    counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Firefox's packing of many histograms at once: the non-empty buckets of each, plus an empty bucket just
    before the first and just after the last non-empty one where the layout has them.

    Histogram i filled buckets first[i]..end[i]-1 of its layout (offset[i] in the catalogue arrays); `owner`,
    `bucket` and `counts` list those buckets end to end. Returns the packed buckets and counts end to end, and
    where each histogram's entries stop.
    """
    nonzero = counts > 0
    kept = np.bincount(owner[nonzero], minlength=first.size)
    before = (first > 0).astype(np.int64)
    after = (end < bucket_count).astype(np.int64)
    stop = np.cumsum(before + kept + after)
    begin = stop - (before + kept + after)
    packed_bucket = np.empty(int(stop[-1]), dtype=np.int64)
    packed_count = np.zeros(int(stop[-1]), dtype=np.int64)
    has_before, has_after = before == 1, after == 1
    packed_bucket[begin[has_before]] = offset[has_before] + first[has_before] - 1
    packed_bucket[stop[has_after] - 1] = offset[has_after] + end[has_after]
    rank = np.cumsum(nonzero) - 1  # among the non-empty buckets of all histograms
    where = (begin + before - (np.cumsum(kept) - kept))[owner[nonzero]] + rank[nonzero]
    packed_bucket[where] = bucket[nonzero]
    packed_count[where] = counts[nonzero]
    return packed_bucket, packed_count, stop


def _draw_histograms(
    rng: np.random.Generator, slots: _HistogramSlots, catalogue: _Catalogue, containers: int, activity: float
) -> list[tuple[dict, dict]]:
    """(histograms, keyedHistograms) of each process, packed exactly as Firefox's TelemetryUtils packs them.

    `activity` scales how many probes are present: short sessions record fewer of them.

    Each present histogram fills a run of buckets from a first one (mode +- spread); the run's ends are
    non-empty, buckets inside may be empty. Sums lie within what the bucket counts allow.
    """
    drawn: list[tuple[dict, dict]] = [({}, {}) for _ in range(containers)]
    present = np.flatnonzero(rng.random(len(slots.names)) < slots.prevalence * activity)
    if not present.size:
        return drawn
    reach, offset = slots.reach[present], slots.offset[present]
    first = np.rint(slots.mode[present] + slots.spread[present] * rng.standard_normal(present.size))
    first = np.clip(first, 0, reach - 1).astype(np.int64)
    length = np.minimum(1 + _failures(1.0 - rng.random(present.size), slots.log_run[present]), reach - first)
    starts = np.cumsum(length) - length
    owner = np.repeat(np.arange(present.size), length)
    bucket = offset[owner] + first[owner] + np.arange(owner.size) - starts[owner]
    uniform = rng.random((3, owner.size))
    counts = 1 + _failures(1.0 - uniform[0], slots.log_count[present][owner])
    gaps = uniform[1] < GAP_FRACTION
    gaps[starts] = gaps[starts + length - 1] = False
    counts[gaps] = 0
    counts[slots.single[present][owner]] = 1
    extra = (uniform[2] * (counts * catalogue.bucket_span[bucket] + 1)).astype(np.int64)
    sums = np.add.reduceat(counts * catalogue.bucket_low[bucket] + extra, starts)
    packed_bucket, packed_count, stops = _pack(
        first, first + length, slots.bucket_count[present], offset, owner, bucket, counts
    )
    labels = catalogue.bucket_label[packed_bucket].tolist()
    values = packed_count.tolist()

    names, keys, headers, containers = slots.names, slots.keys, slots.headers, slots.containers
    begin = 0
    for slot, total, stop in zip(present.tolist(), sums.tolist(), stops.tolist(), strict=True):
        bucket_count, histogram_type, bucket_range = headers[slot]
        histogram = {
            "bucket_count": bucket_count,
            "histogram_type": histogram_type,
            "sum": total,
            "range": bucket_range,
            "values": dict(zip(labels[begin:stop], values[begin:stop], strict=False)),  # equal by construction
        }
        begin = stop
        histograms, keyed = drawn[containers[slot]]
        key = keys[slot]
        if key is None:
            histograms[names[slot]] = histogram
        else:
            keyed.setdefault(names[slot], {})[key] = histogram
    return drawn


def _draw_scalars(rng: np.random.Generator, slots: _ScalarSlots) -> tuple[dict, dict]:
    """(scalars, keyedScalars) of one process; a few uint values come out float or negative, as from buggy code."""
    present = np.flatnonzero(rng.random(len(slots.names)) < slots.prevalence)
    magnitudes = np.floor(slots.median[present] * np.exp(0.8 * rng.standard_normal(present.size)))
    scalars: dict[str, Any] = {}
    keyed: dict[str, dict[str, Any]] = {}
    for slot, magnitude, uniform in zip(
        present.tolist(), magnitudes.tolist(), rng.random(present.size).tolist(), strict=True
    ):
        kind = slots.kinds[slot]
        value: Any
        if kind == "boolean":
            value = uniform < slots.typical[slot]
        elif kind == "string":
            choices = slots.choices[slot]
            value = choices[int(uniform * len(choices))]
        elif uniform < SCALAR_FLOAT_FRACTION:
            value = magnitude + 0.5
        elif uniform < SCALAR_FLOAT_FRACTION + SCALAR_NEGATIVE_FRACTION:
            value = -int(magnitude) - 1
        else:
            value = int(magnitude)
        key = slots.keys[slot]
        if key is None:
            scalars[slots.names[slot]] = value
        else:
            keyed.setdefault(slots.names[slot], {})[key] = value
    return scalars, keyed


_UI_TELEMETRY = {  # deeper nesting the job ignores
    "toolbars": {
        "countableEvents": {"__DEFAULT__": {"click-builtin-item": {"back-button": {"left": 3}, "urlbar-input": 5}}},
        "durations": {"customization": []},
    }
}


def _simple_measurements(rng: np.random.Generator, catalogue: _Catalogue, child: bool) -> dict[str, Any]:
    """Startup timings and counters; numbers nested one level deep at most, except the ones the job ignores."""
    values = np.floor(catalogue.simple_medians * np.exp(0.7 * rng.standard_normal(len(_SIMPLE_MEASURES))))
    uniform = rng.random(3).tolist()
    measurements: dict[str, Any] = {}
    for (name, _), value, for_child in zip(
        _SIMPLE_MEASURES, values.astype(np.int64).tolist(), catalogue.child_simple.tolist(), strict=True
    ):
        if child and not for_child:
            continue
        group, _, sub = name.partition(".")
        if sub:
            measurements.setdefault(group, {})[sub] = value
        else:
            measurements[name] = value
    measurements["debuggerAttached"] = uniform[0] < 0.01
    if child:
        return measurements
    measurements["startupInterrupted"] = int(uniform[1] < 0.02)
    if uniform[2] < 0.05:
        measurements["sessionRestored"] = -1  # Firefox reports -1 when the step never happened
    measurements["addonManager"]["XPIDB_startup_load_reasons"] = ["appChanged"]
    measurements["UITelemetry"] = _UI_TELEMETRY
    measurements["shutdownPhase"] = "profile-before-change"
    return measurements


# ---------------------------------------------------------------------------------------------------------------
# Who sends the ping: application, build, operating system, environment.


@dataclass(frozen=True)
class _Weighted:
    """Options with weights, for drawing by bisection of a cumulative distribution."""

    options: tuple[Any, ...]
    cdf: tuple[float, ...]


def _weighted(weights: dict[Any, float]) -> _Weighted:
    total = sum(weights.values())
    cdf = list(np.cumsum(list(weights.values())) / total)
    cdf[-1] = 1.0
    return _Weighted(tuple(weights), tuple(float(c) for c in cdf))


class _Dice:
    """Uniform draws fetched from numpy in bulk, for the many small choices of a ping."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._values: list[float] = []

    def uniform(self) -> float:
        if not self._values:
            self._values = self._rng.random(512).tolist()
            self._values.reverse()
        return self._values.pop()

    def below(self, n: int) -> int:
        return int(self.uniform() * n)

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.below(len(options))]

    def weighted(self, table: _Weighted) -> Any:
        return table.options[bisect_right(table.cdf, self.uniform())]


_CHANNELS = _weighted({"release": 46, "beta": 20, "nightly": 16, "aurora": 12, "esr": 4, "default": 2})
_AGGREGATED = _weighted({"release": 46, "beta": 20, "nightly": 16, "aurora": 12})
_OPERATING_SYSTEMS = _weighted({"Windows_NT": 70, "Darwin": 14, "Linux": 16})
_OS_VERSIONS = {
    "Windows_NT": _weighted({"10.0": 90, "6.1": 7, "6.3": 3}),
    "Darwin": _weighted({"24.1.0": 35, "23.1.0": 30, "22.6.0": 20, "21.6.0": 15}),
    "Linux": _weighted(
        {
            "6.5.0-14-generic": 25,
            "6.8.0-48-generic": 25,
            "5.15.0-91-generic": 20,
            "4.15.0": 10,
            "6.1.0-27-amd64": 10,
            "6.11.5-arch1-1": 10,
        }
    ),
}
_ARCHITECTURES = {
    "Windows_NT": _weighted({"x86-64": 85, "x86": 10, "aarch64": 5}),
    "Darwin": _weighted({"aarch64": 60, "x86-64": 40}),
    "Linux": _weighted({"x86-64": 95, "aarch64": 5}),
}
_LOCALES = _weighted(
    {
        "en-US": 45,
        "de": 10,
        "fr": 7,
        "es-ES": 5,
        "ru": 5,
        "pt-BR": 5,
        "ja": 4,
        "pl": 4,
        "zh-CN": 4,
        "it": 3,
        "en-GB": 3,
        "nl": 2,
        "tr": 2,
        "uk": 1,
    }
)
_XPCOM_ABIS = {"x86-64": "x86_64-msvc", "x86": "x86-msvc", "aarch64": "aarch64-msvc", "arm64-v8a": "aarch64-gcc3"}


@dataclass(frozen=True)
class _Client:
    """The ping's dimensions, plus what the environment derives from them."""

    name: str
    channel: str
    version: str
    build_id: str
    architecture: str
    os: str
    os_version: str
    locale: str
    sample_id: int


def _major(day: date) -> int:
    """Nightly's major version on a day."""
    return max(_REFERENCE_MAJOR + (day - _REFERENCE_DAY).days // 28, 10)


def _build_id(day: date, channel: str, version: str) -> str:
    """A build time for a day, stable per (channel, version): a build keeps one id in every ping."""
    spin = zlib.crc32(f"{channel}/{version}/{day}".encode())
    return f"{day:%Y%m%d}{spin % 24:02d}{spin // 24 % 60:02d}{spin // 1440 % 60:02d}"


def _builds_in_use(day: date) -> dict[str, _Weighted]:
    """(version, build id) per channel on a submission day, newest most used, all built on or before that day."""
    major = _major(day)
    cycle_day = (day - _REFERENCE_DAY).days % 28
    cycle_start = day - timedelta(days=cycle_day)
    nightly = {}
    for lag in range(7):
        built = day - timedelta(days=lag)
        for half in ("am", "pm"):
            version = f"{_major(built)}.0a1"
            nightly[version, _build_id(built, f"nightly-{half}", version)] = 1 / (lag + 1)
    beta, aurora = {}, {}
    current_beta = cycle_day // 4 + 1
    for number in range(max(1, current_beta - 2), current_beta + 1):
        built = cycle_start + timedelta(days=4 * (number - 1))
        version = f"{major - 1}.0b{number}"
        beta[version, _build_id(built, "beta", version)] = 2.0 ** (number - current_beta)
        aurora[version, _build_id(built, "aurora", version)] = 2.0 ** (number - current_beta)
    release = {
        (f"{major - 2}.0", _build_id(cycle_start - timedelta(days=3), "release", "")): 1.0,
        (f"{major - 3}.0.3", _build_id(cycle_start - timedelta(days=10), "release", "")): 0.1,
    }
    for dot, released in ((1, 7), (2, 17)):
        if cycle_day >= released:
            release[f"{major - 2}.0.{dot}", _build_id(cycle_start + timedelta(days=released), "release", "")] = (
                2.0 * dot
            )
    esr_version = f"{major - 6}.{major % 8}.0esr"
    return {
        "nightly": _weighted(nightly),
        "beta": _weighted(beta),
        "aurora": _weighted(aurora),
        "release": _weighted(release),
        "esr": _weighted({(esr_version, _build_id(cycle_start, "esr", esr_version)): 1}),
        "default": _weighted({(f"{major}.0a1", _build_id(day - timedelta(days=1), "default", "")): 1}),
    }


def _client(dice: _Dice, builds: dict[str, _Weighted], aggregatable: bool) -> _Client:
    """Draw the dimensions; `aggregatable` rules out what the job filters (Fennec, sampled out, other channels)."""
    channel = dice.weighted(_AGGREGATED if aggregatable else _CHANNELS)
    version, build_id = dice.weighted(builds[channel])
    sample_id = dice.below(100)
    if not aggregatable and dice.uniform() < SAMPLED_OUT_FRACTION:
        sample_id += 100
    locale = dice.weighted(_LOCALES)
    if not aggregatable and dice.uniform() < FENNEC_FRACTION:
        return _Client("Fennec", channel, version, build_id, "arm64-v8a", "Android", "33", locale, sample_id)
    os_name = dice.weighted(_OPERATING_SYSTEMS)
    architecture = dice.weighted(_ARCHITECTURES[os_name])
    return _Client(
        "Firefox",
        channel,
        version,
        build_id,
        architecture,
        os_name,
        dice.weighted(_OS_VERSIONS[os_name]),
        locale,
        sample_id,
    )


_SYSTEM_ADDONS = (
    ("formautofill@mozilla.org", "Form Autofill", "1.0.1"),
    ("pictureinpicture@mozilla.org", "Picture-In-Picture", "1.0.0"),
    ("screenshots@mozilla.org", "Firefox Screenshots", "39.0.1"),
    ("webcompat-reporter@mozilla.org", "WebCompat Reporter", "2.1.0"),
    ("webcompat@mozilla.org", "Web Compatibility Interventions", "135.2.0"),
    ("addons-search-detection@mozilla.com", "Add-ons Search Detection", "2.0.0"),
    ("newtab@mozilla.org", "New Tab", "146.0.0"),
)
_USER_ADDONS = (
    ("uBlock0@raymondhill.net", "uBlock Origin", "1.60.0"),
    ("{446900e4-71c2-419f-a6a7-df9c091e268b}", "Bitwarden Password Manager", "2024.10.1"),
    ("addon@darkreader.org", "Dark Reader", "4.9.94"),
    ("jid1-MnnxcxisBPnSXQ@jetpack", "Privacy Badger", "2024.7.17"),
    ("@testpilot-containers", "Firefox Multi-Account Containers", "8.2.0"),
    ("firefox@tampermonkey.net", "Tampermonkey", "5.3.1"),
    ("{d7742d87-e61d-4b78-b8a1-b469842139fa}", "Vimium", "2.1.2"),
    ("sponsorBlocker@ajay.app", "SponsorBlock for YouTube \u2013 Skip Sponsorships", "5.9.5"),
    ("{762f9885-5a13-4abd-9c77-433dcd38b8fd}", "Return YouTube Dislike", "3.0.0.17"),
    ("{74145f27-f039-47ce-a470-a662b129930a}", "ClearURLs", "1.27.1"),
    ("CookieAutoDelete@kennydo.com", "Cookie AutoDelete", "3.8.2"),
    ("{73a6fe31-595d-460b-a920-fcc0f8843232}", "NoScript Security Suite", "11.4.42"),
    ("{036a55b4-5e72-4d05-a06c-cba2dfcc134a}", "Traduire les pages web \u2013 \u00e9dition", "10.1.1.0"),
    ("{7a7a4a92-a2a0-41d1-9fd7-1e92480d612d}", "Stylus", "1.5.51"),
    ("{aecec67f-0d10-4fa7-b7c7-609a2db280cf}", "Violentmonkey", "2.20.0"),
    (
        "plugin@gosuslugi.ru",
        "\u041f\u043b\u0430\u0433\u0438\u043d \u0413\u043e\u0441\u0443\u0441\u043b\u0443\u0433",
        "1.2.8",
    ),
)


def _addon(addon_id: str, name: str, version: str, system: bool) -> dict[str, Any]:
    spin = zlib.crc32(addon_id.encode())
    return {
        "version": version,
        "scope": 1,
        "type": "extension",
        "updateDay": 20300 + spin % 300,
        "isSystem": system,
        "isWebExtension": True,
        "multiprocessCompatible": True,
        "blocklisted": False,
        "description": f"{name}: a browser extension. Reported by the environment, never read by the job.",
        "name": name,
        "userDisabled": False,
        "appDisabled": False,
        "foreignInstall": False,
        "hasBinaryComponents": False,
        "installDay": 18000 + spin % 2300,
        "signedState": 3 if system else 2,
        "signedTypes": "[3,1]" if system else "[2,1]",
        "quarantineIgnoredByApp": system,
        "quarantineIgnoredByUser": False,
    }


_SYSTEM_ADDON_ENTRIES = {addon[0]: _addon(*addon, system=True) for addon in _SYSTEM_ADDONS}
_USER_ADDON_ENTRIES = [(addon[0], _addon(*addon, system=False)) for addon in _USER_ADDONS]
_THEME = {
    "id": "default-theme@mozilla.org",
    "blocklisted": False,
    "description": "A theme with the operating system color scheme.",
    "name": "System theme \u2014 auto",
    "userDisabled": False,
    "appDisabled": False,
    "version": "1.3",
    "scope": 4,
    "foreignInstall": False,
    "hasBinaryComponents": False,
    "installDay": 19000,
    "updateDay": 20100,
}
_GMP_PLUGINS = {
    "gmp-gmpopenh264": {"version": "2.3.2", "userDisabled": False, "applyBackgroundUpdates": 1},
    "gmp-widevinecdm": {"version": "4.10.2830.0", "userDisabled": False, "applyBackgroundUpdates": 1},
}
_CPU_EXTENSIONS = _words("hasMMX hasSSE hasSSE2 hasSSE3 hasSSSE3 hasSSE4_1 hasSSE4_2 hasAVX hasAVX2 hasAES")
_EXPERIMENTS = (
    "long-term-holdback-2026-growth-desktop",
    "new-tab-layout-rollout",
    "urlbar-trending-suggestions",
    "tab-groups-onboarding",
)


def _addons(dice: _Dice) -> dict[str, Any]:
    """The sizable, never aggregated addons section: system addons plus a few of the user ones."""
    active = dict(_SYSTEM_ADDON_ENTRIES)
    for _ in range(dice.below(11)):
        addon_id, entry = dice.pick(_USER_ADDON_ENTRIES)
        active[addon_id] = entry
    return {"activeAddons": active, "theme": _THEME, "activePlugins": [], "activeGMPlugins": _GMP_PLUGINS}


def _system(dice: _Dice, client: _Client) -> dict[str, Any]:
    os_section: dict[str, Any] = {"name": client.os, "version": client.os_version, "locale": client.locale}
    if client.os == "Windows_NT":
        os_section |= {
            "servicePackMajor": 0,
            "servicePackMinor": 0,
            "windowsBuildNumber": dice.pick((19045, 22631, 26100)),
            "windowsUBR": dice.below(5000),
            "installYear": 2018 + dice.below(8),
            "hasPrefetch": True,
            "hasSuperfetch": True,
        }
    elif client.os == "Linux":
        distro, distro_version = dice.pick((("Ubuntu", "24.04"), ("Fedora", "40"), ("Debian", "12"), ("Arch", "")))
        os_section |= {"distro": distro, "distroVersion": distro_version}
    cores = dice.pick((2, 4, 4, 6, 8, 8, 12, 16))
    system: dict[str, Any] = {
        "memoryMB": dice.pick((4096, 8192, 16384, 16384, 32768, 65536)),
        "virtualMaxMB": 134217728,
        "isWow64": client.architecture == "x86",
        "isWowARM64": False,
        "cpu": {
            "count": cores * 2,
            "cores": cores,
            "vendor": dice.pick(("GenuineIntel", "AuthenticAMD")),
            "family": 6,
            "model": dice.pick((142, 154, 165, 183)),
            "stepping": dice.below(12),
            "l2cacheKB": 1280,
            "l3cacheKB": 24576,
            "speedMHz": dice.pick((2400, 2900, 3200, 3600)),
            "extensions": _CPU_EXTENSIONS,
        },
        "os": os_section,
        "hdd": {
            "profile": {"model": "Samsung SSD 980 PRO 1TB", "revision": "5B2QGXA7", "type": "SSD"},
            "binary": {"model": "Samsung SSD 980 PRO 1TB", "revision": "5B2QGXA7", "type": "SSD"},
            "system": {"model": "Samsung SSD 980 PRO 1TB", "revision": "5B2QGXA7", "type": "SSD"},
        },
        "gfx": {
            "D2DEnabled": client.os == "Windows_NT",
            "DWriteEnabled": client.os == "Windows_NT",
            "ContentBackend": "Skia",
            "Headless": False,
            "TargetFrameRate": dice.pick((60, 60, 120, 144)),
            "textScaleFactor": 1.0,
            "adapters": [
                {
                    "description": dice.pick(
                        ("Intel(R) UHD Graphics 620", "NVIDIA GeForce RTX 3060", "AMD Radeon RX 6600")
                    ),
                    "vendorID": dice.pick(("0x8086", "0x10de", "0x1002")),
                    "deviceID": f"0x{dice.below(65536):04x}",
                    "subsysID": f"{dice.below(2**32):08x}",
                    "RAM": dice.pick((0, 4096, 8192)),
                    "driver": "igdumdim64 igd10iumd64 igd12umd64",
                    "driverVendor": None,
                    "driverVersion": "31.0.101.4502",
                    "driverDate": "6-15-2024",
                    "GPUActive": True,
                }
            ],
            "monitors": [{"screenWidth": 1920, "screenHeight": 1080, "refreshRate": 60, "pseudoDisplay": False}],
            "features": {
                "compositor": "webrender",
                "hwCompositing": {"status": "available"},
                "gpuProcess": {"status": "available"},
                "webrender": {"status": "available"},
                "wrCompositor": {"status": "blocked"},
                "openglCompositing": {"status": "unavailable"},
                "omtp": {"status": "unused"},
            },
        },
    }
    if client.os == "Darwin":
        system["appleModelId"] = dice.pick(("MacBookPro18,3", "Mac14,2", "MacBookAir10,1", "iMac21,1"))
    if client.os == "Windows_NT":
        system["sec"] = {"antivirus": ["Windows Defender"], "antispyware": ["Windows Defender"], "firewall": None}
    return system


def _settings(dice: _Dice, client: _Client) -> dict[str, Any]:
    locales = [client.locale] if client.locale == "en-US" else [client.locale, "en-US"]
    return {
        "blocklistEnabled": True,
        "e10sEnabled": True,
        "e10sMultiProcesses": 8,
        "fissionEnabled": True,
        "telemetryEnabled": client.channel != "release" or dice.uniform() < 0.05,
        "locale": client.locale,
        "intl": {
            "requestedLocales": [client.locale],
            "availableLocales": locales,
            "appLocales": locales,
            "systemLocales": [client.locale],
            "regionalPrefsLocales": [client.locale],
            "acceptLanguages": [client.locale, "en"],
        },
        "update": {"channel": client.channel, "enabled": True, "autoDownload": True, "background": True},
        "userPrefs": {
            "browser.search.widget.inNavBar": False,
            "browser.startup.homepage": "<user-set>",
            "extensions.InstallTrigger.enabled": True,
            "network.trr.mode": dice.pick((0, 0, 2, 3, 5)),
            "privacy.fingerprintingProtection": False,
        },
        "sandbox": {"effectiveContentProcessLevel": 6, "contentWin32kLockdownState": 3},
        "addonCompatibilityCheckEnabled": True,
        "isDefaultBrowser": dice.uniform() < 0.4,
        "defaultSearchEngine": "google-b-d",
        "defaultSearchEngineData": {
            "loadPath": "[app]google@search.mozilla.org",
            "name": "Google",
            "origin": "default",
            "submissionURL": "https://www.google.com/search?client=firefox-b-d&q=",
        },
        "launcherProcessState": 0,
        "attribution": {"source": "www.google.com", "medium": "referral", "campaign": "(not set)"},
        "services": {"accountEnabled": dice.uniform() < 0.3, "syncEnabled": dice.uniform() < 0.2},
    }


def _environment(dice: _Dice, client: _Client, profile_day: int) -> dict[str, Any]:
    return {
        "build": {
            "applicationId": "{ec8030f7-c20a-464f-9b0e-13a3a9e97384}",
            "applicationName": client.name,
            "architecture": client.architecture,
            "buildId": client.build_id,
            "version": client.version,
            "vendor": "Mozilla",
            "displayVersion": client.version,
            "platformVersion": client.version,
            "xpcomAbi": _XPCOM_ABIS.get(client.architecture, "x86_64-gcc3"),
            "updaterAvailable": True,
        },
        "partner": {
            "distributionId": None,
            "distributionVersion": None,
            "partnerId": None,
            "distributor": None,
            "distributorChannel": None,
            "partnerNames": [],
        },
        "system": _system(dice, client),
        "settings": _settings(dice, client),
        "profile": {"creationDate": profile_day, "firstUseDate": profile_day + dice.below(3)},
        "addons": _addons(dice),
        "experiments": {
            slug: {"branch": dice.pick(("control", "treatment")), "type": "nimbus-nimbus"}
            for slug in _EXPERIMENTS
            if dice.uniform() < 0.3
        },
    }


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    """Random version-4 UUIDs, formatted by hand (uuid.UUID costs ten times more)."""
    digits = rng.bytes(16 * n).hex()
    uuids = []
    for i in range(0, 32 * n, 32):
        h = digits[i : i + 32]
        uuids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}")
    return uuids


_SLOW_SQL = (
    "SELECT h.id FROM moz_places h WHERE h.url_hash = hash(:url) AND h.url = :url",
    "UPDATE moz_origins SET frecency = (SELECT MAX(frecency) FROM moz_places WHERE origin_id = :id)",
    "INSERT INTO moz_historyvisits (from_visit, place_id, visit_date, visit_type) VALUES (:f, :p, :d, :t)",
    "SELECT b.id FROM moz_bookmarks b JOIN moz_places h ON b.fk = h.id WHERE h.url_hash = hash(:url)",
    "DELETE FROM moz_icons WHERE id IN (SELECT id FROM moz_icons WHERE root = 0 LIMIT 100)",
)


# ---------------------------------------------------------------------------------------------------------------
# Whole pings, damaged histograms and malformed lines.


class _PingMaker:
    """Makes the pings of one file: one random stream, one submission day."""

    def __init__(self, catalogue: _Catalogue, rng: np.random.Generator, day: date) -> None:
        self.catalogue = catalogue
        self.rng = rng
        self.dice = _Dice(rng)
        self.day = day
        self.builds = _builds_in_use(day)

    def ping(self, aggregatable: bool) -> dict[str, Any]:
        """A v4 main ping; `aggregatable` rules out the pings the job filters, for making malformed ones."""
        dice, rng = self.dice, self.rng
        client = _client(dice, self.builds, aggregatable)
        ping_id, client_id, session, subsession, previous, previous_sub, profile_group = _uuids(rng, 7)
        created = datetime.combine(self.day, time(), tzinfo=UTC) + timedelta(seconds=dice.below(86000))
        legacy = dice.uniform() < LEGACY_FRACTION
        payload = self._payload(client, legacy)
        payload["info"] = {
            "reason": dice.pick(("shutdown", "shutdown", "environment-change", "daily")),
            "revision": f"https://hg.mozilla.org/mozilla-central/rev/{rng.bytes(20).hex()}",
            "timezoneOffset": dice.pick((-480, -300, 0, 60, 120, 330, 540)),
            "previousBuildId": client.build_id,
            "sessionId": session,
            "subsessionId": subsession,
            "previousSessionId": previous,
            "previousSubsessionId": previous_sub,
            "subsessionCounter": 1 + dice.below(5),
            "profileSubsessionCounter": 1 + dice.below(3000),
            "sessionStartDate": f"{self.day:%Y-%m-%d}T00:00:00.0+00:00",
            "subsessionStartDate": f"{self.day:%Y-%m-%d}T00:00:00.0+00:00",
            "sessionLength": dice.below(86400),
            "subsessionLength": dice.below(86400),
            "addons": ",".join(f"{addon_id.replace('@', '%40')}:1.0" for addon_id in _SYSTEM_ADDON_ENTRIES),
        }
        return {
            "type": "main",
            "id": ping_id,
            "creationDate": f"{created:%Y-%m-%dT%H:%M:%S}.{dice.below(1000):03d}Z",
            "version": 4,
            "application": {
                "architecture": client.architecture,
                "buildId": client.build_id,
                "channel": client.channel,
                "name": client.name,
                "platformVersion": client.version,
                "version": client.version,
                "displayVersion": client.version,
                "vendor": "Mozilla",
                "xpcomAbi": _XPCOM_ABIS.get(client.architecture, "x86_64-gcc3"),
            },
            "clientId": client_id,
            "profileGroupId": profile_group,
            "environment": _environment(dice, client, 17000 + dice.below(3400)),
            "payload": payload,
            "meta": {
                "submissionDate": f"{self.day:%Y%m%d}",
                "sampleId": client.sample_id,
                "normalizedChannel": client.channel if client.channel != "default" else "Other",
                "appName": client.name,
                "appVersion": client.version,
                "appBuildId": client.build_id,
                "appUpdateChannel": client.channel,
                "docType": "main",
                "sourceName": "telemetry",
                "sourceVersion": "4",
                "geoCountry": dice.pick(("US", "DE", "FR", "BR", "IN", "JP", "PL", "RU", "GB", "CN")),
                "geoCity": "??",
                "documentId": ping_id,
                "Timestamp": int(created.timestamp() + 60 + dice.below(3600)) * 1_000_000_000,
            },
        }

    def _payload(self, client: _Client, legacy: bool) -> dict[str, Any]:
        """Measurements of every process; legacy pings carry content ones as payload.childPayloads."""
        rng, catalogue, dice = self.rng, self.catalogue, self.dice
        if legacy:
            shape = ("parent",) + ("content",) * (1 + dice.below(3))
        elif dice.uniform() < (0.9 if client.os == "Windows_NT" else 0.4):
            shape = ("parent", "content", "gpu", "extension")
        else:
            shape = ("parent", "content", "extension")  # no GPU process
        activity = 0.45 + 0.6 * dice.uniform()
        (histograms, keyed_histograms), *others = _draw_histograms(
            rng, catalogue.histogram_slots[shape], catalogue, len(shape), activity
        )
        processes: dict[str, Any] = {"parent": self._scalars("parent")}
        payload: dict[str, Any] = {
            "ver": 4,
            "simpleMeasurements": _simple_measurements(rng, catalogue, child=False),
            "histograms": histograms,
            "keyedHistograms": keyed_histograms,
            "processes": processes,
        }
        if legacy:
            payload["childPayloads"] = [
                {
                    "histograms": child,
                    "keyedHistograms": keyed_child,
                    "simpleMeasurements": _simple_measurements(rng, catalogue, child=True),
                }
                for child, keyed_child in others
            ]
        else:
            for process, (process_histograms, keyed) in zip(shape[1:], others, strict=True):
                scalars = {"scalars": {}} if process == "extension" else self._scalars(process)
                processes[process] = {"histograms": process_histograms, "keyedHistograms": keyed} | scalars
            processes["dynamic"] = {"scalars": {}, "keyedScalars": {}}
        if dice.uniform() < SPOILED_FRACTION:
            _spoil_histogram(dice, others[0][0] if dice.uniform() < 0.3 else histograms)
        payload["slowSQL"] = {
            "mainThread": {sql: [1 + dice.below(5), 100 + dice.below(900)] for sql in _SLOW_SQL[: dice.below(3)]},
            "otherThreads": {sql: [1 + dice.below(20), 100 + dice.below(400)] for sql in _SLOW_SQL[2:]},
        }
        payload["lateWrites"] = {"memoryMap": [], "stacks": []}
        return payload

    def _scalars(self, process: str) -> dict[str, Any]:
        scalars, keyed = _draw_scalars(self.rng, self.catalogue.scalar_slots[process])
        return {"scalars": scalars, "keyedScalars": keyed}


def _spoil_histogram(dice: _Dice, histograms: dict[str, Any]) -> None:
    """Damage one exponential histogram as buggy clients do: the job must skip the damage, not the ping."""
    names = [name for name, histogram in histograms.items() if histogram["histogram_type"] == 0]
    if not names:
        return
    name = dice.pick(names)
    histogram, values = histograms[name], histograms[name]["values"]
    damage = dice.pick(HISTOGRAM_JUNK)
    if damage == "null":
        histograms[name] = None
    elif damage == "negative_sum":
        histogram["sum"] = -histogram["sum"] - 1
    elif damage == "float_sum":
        histogram["sum"] += 0.5
    elif damage == "non_integer_key":
        values["abc"] = 1
    elif damage == "non_integer_value":
        key = next(key for key, count in values.items() if count)
        values[key] += 0.5
    else:  # high - 1 lies strictly between the two top bounds of every exponential layout here
        values[str(histogram["range"][1] - 1)] = 1


_NOT_JSON = (
    b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    b"{'type': 'main', 'version': 4, 'payload': None}",
    b"main ping lost in transit",
)


def _malformed_line(kind: str, ping: dict[str, Any], dice: _Dice) -> bytes:
    """One line the job must count as malformed, made from an otherwise aggregatable ping."""
    application, payload = ping["application"], ping["payload"]
    if kind == "not_json":
        return dice.pick(_NOT_JSON)
    if kind == "truncated":
        data = orjson.dumps(ping)
        cut = data[: int(len(data) * (0.2 + 0.6 * dice.uniform()))]
        return cut.decode("utf-8", "ignore").encode()  # never ends inside a multi-byte character
    if kind == "not_object":
        return orjson.dumps([ping["id"], ping["type"]]) if dice.uniform() < 0.5 else b"404"
    if kind == "application_string":
        ping["application"] = "Firefox"
    elif kind == "missing_build_id":
        del application["buildId"]
    elif kind == "bad_build_id":
        application["buildId"] = application["buildId"][:4] + "abc1" + application["buildId"][8:]
    elif kind == "numeric_version":
        application["version"] = int(application["version"].split(".")[0])
    elif kind == "null_processes":
        payload["processes"] = None
    elif kind == "child_payloads_string":
        payload["childPayloads"] = "x"
    else:
        ping["meta"]["sampleId"] = str(ping["meta"]["sampleId"])
    return orjson.dumps(ping)


# ---------------------------------------------------------------------------------------------------------------
# The corpus.


def _even_split(total: int, parts: int) -> list[int]:
    """Split total into parts that differ by at most one, larger ones first."""
    return [total // parts + (index < total % parts) for index in range(parts)]


def _file_lines(maker: _PingMaker, pings: int, malformed: int, first_kind: int) -> Iterator[bytes]:
    """The lines of one file: `malformed` of them, at random places, cycle through MALFORMED_KINDS."""
    bad = set(maker.rng.choice(pings, size=malformed, replace=False).tolist()) if malformed else set()
    kind = first_kind
    for index in range(pings):
        if index in bad:
            yield _malformed_line(MALFORMED_KINDS[kind % len(MALFORMED_KINDS)], maker.ping(True), maker.dice)
            kind += 1
        else:
            yield orjson.dumps(maker.ping(False))


def _batches(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    iterator = iter(lines)
    while batch := list(islice(iterator, size)):
        yield batch


def _write_lines(path: str, lines: Iterable[bytes], compress: bool) -> int:
    """Write newline-terminated lines and return their size; gzip with mtime 0 and no name, for identical bytes.

    Batches are written by a second thread: zlib releases the GIL, so compressing one batch overlaps making the
    next one. A single thread writes them in order, so the bytes are those of a plain sequential write.
    """
    size = 0
    with open(path, "wb") as raw:
        stream = (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) if compress else raw
        )
        with stream, ThreadPoolExecutor(max_workers=1) as writer:
            pending: Future | None = None
            for batch in _batches(lines, WRITE_BATCH):
                data = b"\n".join(batch) + b"\n"
                size += len(data)
                if pending is not None:
                    pending.result()  # one batch waits at most: memory stays bounded
                pending = writer.submit(stream.write, data)
            if pending is not None:
                pending.result()
    return size


def _check_arguments(pings: int, days: int, seed: int, start_date: str, files_per_day: int, fraction: float) -> date:
    if pings < 0 or days < 1 or files_per_day < 1 or seed < 0:
        raise ValueError("pings and seed must be >= 0, days and files_per_day >= 1")
    if not 0 <= fraction <= 1:
        raise ValueError(f"malformed_fraction must be within [0, 1], not {fraction}")
    if len(start_date) != 8 or not start_date.isdigit():
        raise ValueError(f"start_date must be YYYYMMDD, not {start_date!r}")
    return datetime.strptime(start_date, "%Y%m%d").date()


def generate_corpus(
    output: str,
    pings: int,
    days: int = 1,
    seed: int = 0,
    start_date: str = "20261101",
    files_per_day: int = 2,
    malformed_fraction: float = 0.02,
    compress: bool = True,
) -> GenerateSummary:
    """Write `pings` lines spread evenly over `days` submission dates and their files, plus the definitions.

    round(pings * malformed_fraction) of the lines are malformed, spread over the files the same way. Each file
    has its own random stream seeded by (seed, day, part), and the catalogue depends on the seed alone.
    """
    first_day = _check_arguments(pings, days, seed, start_date, files_per_day, malformed_fraction)
    catalogue = _Catalogue(seed)
    os.makedirs(output, exist_ok=True)
    histograms_path = os.path.join(output, "Histograms.json")
    with open(histograms_path, "wb") as definitions:
        definitions.write(orjson.dumps(_histograms_json(catalogue.histograms), option=orjson.OPT_INDENT_2) + b"\n")
    scalars_path = os.path.join(output, "Scalars.yaml")
    with open(scalars_path, "w", encoding="utf-8") as definitions:
        definitions.write("# Scalar definitions of the synthetic corpus, in Firefox's Scalars.yaml format.\n")
        yaml.safe_dump(_scalars_yaml(catalogue.scalars), definitions, sort_keys=False, width=110)

    malformed = round(pings * malformed_fraction)
    dates, files, size, kind = [], [], 0, 0
    for day_index, (day_pings, day_malformed) in enumerate(
        zip(_even_split(pings, days), _even_split(malformed, days), strict=True)
    ):
        day = first_day + timedelta(days=day_index)
        dates.append(f"{day:%Y%m%d}")
        folder = os.path.join(output, f"submission_date={day:%Y%m%d}")
        os.makedirs(folder, exist_ok=True)
        for part, (file_pings, file_malformed) in enumerate(
            zip(_even_split(day_pings, files_per_day), _even_split(day_malformed, files_per_day), strict=True)
        ):
            path = os.path.join(folder, f"part-{part:04d}.ndjson" + (".gz" if compress else ""))
            maker = _PingMaker(catalogue, np.random.default_rng([seed, day_index, part]), day)
            size += _write_lines(path, _file_lines(maker, file_pings, file_malformed, kind), compress)
            kind += file_malformed
            files.append(path)
    return GenerateSummary(output, dates, files, pings, malformed, size, histograms_path, scalars_path)
