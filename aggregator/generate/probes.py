"""The probe catalogue of the synthetic pings: every histogram and scalar they carry, with its shape and
behaviour, and the Histograms.json and Scalars.yaml that define them.
"""

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


Processes = tuple[str, ...]  # where a probe is recorded: parent, content, gpu, extension
Keys = Sequence[str]  # the keys of a keyed probe
_PARENT = ("parent",)
_CONTENT = ("content",)
_BOTH = ("parent", "content")
_GRAPHICS = ("parent", "gpu")
_ALL = ("parent", "content", "gpu")
_SCRIPT = ("parent", "content", "extension")


@dataclass(frozen=True)
class HistogramProbe:
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
) -> HistogramProbe:
    return HistogramProbe(name, "exponential", low, high, n, processes, tuple(keys), defined=defined)


def _linear(
    name: str, low: int, high: int, n: int, processes: Processes = _PARENT, keys: Keys = (), defined: bool = True
) -> HistogramProbe:
    return HistogramProbe(name, "linear", low, high, n, processes, tuple(keys), defined=defined)


def _two_valued(
    name: str, kind: str, processes: Processes = _PARENT, keys: Keys = (), defined: bool = True
) -> HistogramProbe:
    """Boolean, flag and count histograms all have Firefox's (1, 2, 3) layout."""
    return HistogramProbe(name, kind, 1, 2, 3, processes, tuple(keys), defined=defined)


def _enumerated(name: str, n_values: int, processes: Processes = _PARENT, keys: Keys = ()) -> HistogramProbe:
    return HistogramProbe(name, "enumerated", 1, n_values, n_values + 1, processes, tuple(keys), n_values=n_values)


def _categorical(
    name: str,
    labels: Sequence[str],
    n_values=None,
    processes: Processes = _PARENT,
    keys: Keys = (),
    defined: bool = True,
) -> HistogramProbe:
    """Layout as moztelemetry resolves it; n_values is only ever >= 50, where Firefox agrees with it."""
    n = max(len(labels), n_values or 0, 50)
    return HistogramProbe(name, "categorical", 1, n, n + 1, processes, tuple(keys), tuple(labels), n_values, defined)


def tokens(text: str) -> tuple[str, ...]:
    """Names written as one space-separated string: long lists of them stay readable."""
    return tuple(text.split())


def _family(prefix: str, suffixes: str, make: Callable[[str], HistogramProbe]) -> list[HistogramProbe]:
    return [make(prefix + suffix) for suffix in suffixes.split()]


_IPC_MESSAGES = tuple(  # 50 mixed-case keys
    f"{protocol}::Msg_{message}"
    for protocol in tokens(
        "PContent PBrowser PHttpChannel PCompositorBridge PAPZ PWindowGlobal PBackground PDocAccessible PNecko PGPU"
    )
    for message in ("AsyncMessage", "Destroy", "UpdateDimensions", "RealKeyEvent", "OnStartRequest")
)


_WEBEXT_APIS = tuple(  # 55 labels: more than the default 50 buckets of a categorical histogram
    f"{namespace}.{method}"
    for namespace in tokens(
        "tabs runtime storage webRequest contextMenus scripting bookmarks history downloads cookies windows"
    )
    for method in ("get", "set", "query", "onEvent", "remove")
)


_USE_COUNTER_FEATURES = tokens(
    "CUSTOMELEMENTREGISTRY_DEFINE DOCUMENT_OPEN ELEMENT_ATTACHSHADOW CONSOLE_LOG WINDOW_OPEN XMLHTTPREQUEST_SYNC "
    "DOCUMENT_EXECCOMMAND NAVIGATOR_GETBATTERY WINDOW_SIDEBAR SVGSVGELEMENT_GETELEMENTBYID CSS_ZOOM "
    "DOCUMENT_CARETRANGEFROMPOINT MUTATIONEVENT_DOMNODEINSERTED WEBSOCKET_CONSTRUCTOR INDEXEDDB_OPEN "
    "SERVICEWORKER_REGISTER CLIPBOARD_READTEXT OFFSCREENCANVAS_CONSTRUCTOR FULLSCREEN_REQUEST DOCUMENT_DOMAIN_SET"
)


def _network_probes() -> list[HistogramProbe]:
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


def _javascript_probes() -> list[HistogramProbe]:
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


def _memory_and_browser_probes() -> list[HistogramProbe]:
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
            tokens("dnsNotFound netTimeout connectionFailure nssFailure2 certError netReset redirectLoop other"),
            n_values=60,
        ),
        _categorical(
            "FX_URLBAR_SELECTED_RESULT_TYPE_2",
            tokens(
                "autofill bookmark history keyword searchengine searchsuggestion switchtab tag visiturl remotetab "
                "extension preloaded-top-site tip topsite formhistory"
            ),
        ),
        _categorical(
            "COOKIE_BEHAVIOR",
            tokens("accept reject-foreign reject limit-foreign reject-trackers reject-trackers-and-partition"),
        ),
        _categorical("WEBEXT_API_CALLED", _WEBEXT_APIS, processes=("parent", "extension")),
    ]


def _content_and_graphics_probes() -> list[HistogramProbe]:
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
            tokens("UTF8 gb18030 Big5 UTF16 windows-1252 Shift_JIS EUC-KR Other"),
            processes=_CONTENT,
        ),
        *(
            _two_valued(f"USE_COUNTER2_{feature}_{scope}", "boolean", _CONTENT, defined=False)
            for feature in _USE_COUNTER_FEATURES
            for scope in ("DOCUMENT", "PAGE")
        ),
    ]


def _keyed_probes() -> list[HistogramProbe]:
    return [
        _exponential("IPC_READ_MAIN_THREAD_LATENCY_MS", 1, 10000, 50, _BOTH, _IPC_MESSAGES),
        _exponential(  # excluded by the job when keyed
            "MESSAGE_MANAGER_MESSAGE_SIZE",
            1,
            8000000,
            50,
            _BOTH,
            tokens("Content:LoadURI SessionStore:update PageMetadata:GetPageData RemoteLogins:findLogins"),
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
            keys=tokens("mozilla.cloudflare-dns.com dns.nextdns.io doh.xfinity.com private.canadianshield.cira.ca"),
        ),
        _exponential("SSL_TIME_UNTIL_HANDSHAKE_FINISHED_KEYED_BY_KA", 1, 60000, 200, keys=("ecdhe", "dhe", "rsa")),
        _linear("MEMORY_DISTRIBUTION_AMONG_CONTENT", 1, 100, 50, keys=("0-10 tabs", "11-20 tabs", "21+ tabs")),
        _two_valued(
            "QM_FIRST_INITIALIZATION_ATTEMPT",
            "boolean",
            keys=tokens("Storage TemporaryStorage DefaultRepository PersistentRepository TemporaryGroup"),
        ),
        _two_valued("NETWORK_HTTP_REDIRECT_TO_SCHEME", "boolean", keys=("http", "https", "moz-extension", "about")),
        _enumerated("URLCLASSIFIER_UPDATE_ERROR", 16, keys=("google4", "mozilla")),
        _categorical(
            "HTTP3_CONNECTION_CLOSE_REASON", ("NoError", "TransportError", "AppError", "Timeout"), keys=("h3", "h3-29")
        ),
        _two_valued(
            "SEARCH_COUNTS",
            "count",
            keys=tokens("google.urlbar Bing.searchbar DuckDuckGo.contextmenu google.newtab other-Ecosia.urlbar"),
        ),
        _two_valued("SUBPROCESS_ABNORMAL_ABORT", "count", keys=("content", "gpu", "rdd", "gmplugin", "socket")),
        _two_valued("SUBPROCESS_CRASHES_WITH_DUMP", "count", keys=("content", "gpu", "gmplugin")),
        _two_valued("PROCESS_CRASH_SUBMIT_ATTEMPT", "count", keys=("main-crash", "content-crash", "gpu-crash")),
        _two_valued(
            "MEDIA_CODEC_USED",
            "count",
            _CONTENT,
            tokens("video/avc video/vp9 video/av1 audio/mp4a-latm audio/opus"),
        ),
        _two_valued(
            "CANVAS_WEBGL_FAILURE_ID",
            "count",
            _BOTH,
            ("FEATURE_FAILURE_WEBGL_EXHAUSTED_DRIVERS", "FEATURE_FAILURE_GLXTEST_FAILED", "SUCCESS"),
        ),
    ]


def _special_probes() -> list[HistogramProbe]:
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


def histogram_probes() -> list[HistogramProbe]:
    """Every histogram the generator sends, in ping order; the same for every seed."""
    return [
        *_network_probes(),
        *_javascript_probes(),
        *_memory_and_browser_probes(),
        *_content_and_graphics_probes(),
        *_keyed_probes(),
        *_special_probes(),
    ]


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


_NAVIGATION_KEYS = tokens("search search_enter search_formhistory search_suggestion search_urlbar")
_SEARCH_KEYS = tokens("google:tagged:firefox-b-d google:organic:none bing:tagged:MOZI DuckDuckGo:organic:none")
_POWER_KEYS = tokens(
    "parent.active parent.inactive parent.active.playing-audio content.foreground content.background gpu"
)


_EVENT_KEYS = tokens(
    "navigation#search#urlbar pwmgr#open_management#mainmenu security.ui.protections#show#protection_report "
    "normandy#enroll#preference_study addonsManager#install#extension pictureinpicture#create#player "
    "devtools.main#open#tools fxa_avatar_menu#click#toolbar_icon"
)


def scalar_probes() -> list[_ScalarProbe]:
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
            "networking.",
            "data_transferred_v3_kb:2000",
            keys=tokens("Y0_N1Sys Y1_N1Sys Y2_N3Oth Y0_N1 Y1_N1 Y2_N3"),
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
            tokens("FFmpegDataDecoder WMFMediaDataDecoder AppleVTDecoder VPXDecoder DAV1DDecoder"),
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
            keys=tokens("inspector webconsole jsdebugger styleeditor performance memory netmonitor storage"),
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
SIMPLE_MEASURES: tuple[tuple[str, float], ...] = tuple(
    (name, float(median))
    for name, median in (
        pair.split(":")
        for pair in tokens(
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


CHILD_SIMPLE_MEASURES = frozenset(
    ("totalTime", "uptime", "start", "main", "maximalNumberOfConcurrentThreads", "js.setProto", "js.customIter")
)


def _bug_number(name: str) -> int:
    """A stable, plausible bug number per probe (crc32: Python's own hash changes between runs)."""
    return 1_200_000 + zlib.crc32(name.encode()) % 700_000


def _description(name: str) -> str:
    words = name.replace(".", " ").replace("_", " ").lower()
    return f"Synthetic probe: {words} (written by aggregator.generate)."


def _firefox_processes(processes: Sequence[str]) -> list[str]:
    return ["main" if process == "parent" else process for process in processes]


def _histogram_definition(probe: HistogramProbe) -> dict[str, Any]:
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


def histograms_json(probes: Sequence[HistogramProbe]) -> dict[str, dict[str, Any]]:
    """Histograms.json: the defined probes plus a few expired ones no ping carries any more, as in Firefox."""
    definitions = {probe.name: _histogram_definition(probe) for probe in probes if probe.defined}
    for expired in (
        _exponential("FX_THUMBNAILS_BG_QUEUE_SIZE_ON_CAPTURE", 1, 100, 15),
        _two_valued("SHUMWAY_FALLBACK", "boolean"),
        _enumerated("PLUGINS_NOTIFICATION_USER_ACTION_2", 3),
    ):
        definitions[expired.name] = _histogram_definition(expired) | {"expires_in_version": "60"}
    return definitions


def scalars_yaml(probes: Sequence[_ScalarProbe]) -> dict[str, dict[str, dict[str, Any]]]:
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
