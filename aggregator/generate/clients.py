"""Who sends the synthetic pings: clients, the builds in use on a day, and each ping's environment (channel, os,
architecture, addons, settings), drawn with the weights real populations have.
"""

import hashlib
import zlib
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from aggregator.generate.probes import tokens

_REFERENCE_DAY = date(2026, 11, 1)  # Firefox 146 is on nightly that day; a new major every 28 days
_REFERENCE_MAJOR = 146
FENNEC_FRACTION = 0.015
SAMPLED_OUT_FRACTION = 0.01  # meta.sampleId >= 100


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


class Dice:
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


XPCOM_ABIS = {"x86-64": "x86_64-msvc", "x86": "x86-msvc", "aarch64": "aarch64-msvc", "arm64-v8a": "aarch64-gcc3"}


@dataclass(frozen=True)
class Client:
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


def builds_in_use(day: date) -> dict[str, _Weighted]:
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


def draw_client(dice: Dice, builds: dict[str, _Weighted], aggregatable: bool) -> Client:
    """Draw the dimensions; `aggregatable` rules out what the job filters (Fennec, sampled out, other channels)."""
    channel = dice.weighted(_AGGREGATED if aggregatable else _CHANNELS)
    version, build_id = dice.weighted(builds[channel])
    sample_id = dice.below(100)
    if not aggregatable and dice.uniform() < SAMPLED_OUT_FRACTION:
        sample_id += 100
    locale = dice.weighted(_LOCALES)
    if not aggregatable and dice.uniform() < FENNEC_FRACTION:
        return Client("Fennec", channel, version, build_id, "arm64-v8a", "Android", "33", locale, sample_id)
    os_name = dice.weighted(_OPERATING_SYSTEMS)
    architecture = dice.weighted(_ARCHITECTURES[os_name])
    return Client(
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


SYSTEM_ADDON_ENTRIES = {addon[0]: _addon(*addon, system=True) for addon in _SYSTEM_ADDONS}
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


_CPU_EXTENSIONS = tokens("hasMMX hasSSE hasSSE2 hasSSE3 hasSSSE3 hasSSE4_1 hasSSE4_2 hasAVX hasAVX2 hasAES")
_EXPERIMENTS = (
    "long-term-holdback-2026-growth-desktop",
    "new-tab-layout-rollout",
    "urlbar-trending-suggestions",
    "tab-groups-onboarding",
)


def _addons(dice: Dice) -> dict[str, Any]:
    """The sizable, never aggregated addons section: system addons plus a few of the user ones."""
    active = dict(SYSTEM_ADDON_ENTRIES)
    for _ in range(dice.below(11)):
        addon_id, entry = dice.pick(_USER_ADDON_ENTRIES)
        active[addon_id] = entry
    return {"activeAddons": active, "theme": _THEME, "activePlugins": [], "activeGMPlugins": _GMP_PLUGINS}


def _system(dice: Dice, client: Client) -> dict[str, Any]:
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


def _settings(dice: Dice, client: Client) -> dict[str, Any]:
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


def draw_environment(dice: Dice, client: Client, profile_day: int) -> dict[str, Any]:
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
            "xpcomAbi": XPCOM_ABIS.get(client.architecture, "x86_64-gcc3"),
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


# ---- client ids: who sent each ping, and how often --------------------------------------------------------------

HEAVY_CLIENT_SHARE = 0.2  # of a day's pings, sent by heavy clients (by default)
NO_CLIENT_ID_FRACTION = 0.01  # pings whose clientId is missing, not a string or empty
_ORDINARY_STOP = 0.6  # chance that an ordinary client's day ends after each ping: 1 (60%), 2 (24%), 3 (10%)...
_HEAVY_MIN_PINGS = 10  # a heavy client sends at least this many a day,
_HEAVY_TAIL = 1.3  # ... and more with a Pareto tail of this index: a median of 17, one in a hundred past 300,
_HEAVY_MAX_PINGS = 1000  # ... up to one every minute and a half, all day
_ACTIVE = 0.7  # of the client population, those who send pings on a given day
_CLIENT_STREAM = 0x636C6965  # spawn key of the client ids' random stream, apart from the files' streams


class _Missing:
    """A clientId left out of the ping altogether."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
NO_CLIENT_IDS: tuple[Any, ...] = (MISSING, None, "", 1234567)  # missing, null, empty, a number: used in turn


def client_uuid(seed: int, population: str, index: int) -> str:
    """The clientId of client `index` of a population: a version-4 UUID, the same on every day of a corpus."""
    h = hashlib.blake2b(f"{seed}/{population}/{index}".encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _ordinary_counts(rng: np.random.Generator, pings: int) -> np.ndarray:
    """Pings per ordinary client (geometric: most send one to three a day), adding up to `pings`."""
    return _fill(lambda n: rng.geometric(_ORDINARY_STOP, n), pings, 1 / _ORDINARY_STOP)


def _heavy_counts(rng: np.random.Generator, pings: int) -> np.ndarray:
    """Pings per heavy client (a Pareto tail above _HEAVY_MIN_PINGS, cut at _HEAVY_MAX_PINGS), adding up to
    `pings`."""

    def draw(n: int) -> np.ndarray:
        tail = np.floor(_HEAVY_MIN_PINGS * (1 - rng.random(n)) ** (-1 / _HEAVY_TAIL))
        return np.minimum(tail, _HEAVY_MAX_PINGS).astype(np.int64)

    return _fill(draw, pings, _HEAVY_MIN_PINGS * _HEAVY_TAIL / (_HEAVY_TAIL - 1))


def _fill(draw: Callable[[int], np.ndarray], pings: int, mean: float) -> np.ndarray:
    """Counts drawn in bulk until they reach `pings`; the last one cut so that they add up to it exactly."""
    counts = np.zeros(0, dtype=np.int64)
    if pings <= 0:
        return counts
    while counts.sum() < pings:
        counts = np.concatenate([counts, draw(int((pings - counts.sum()) / mean) + 8)])
    ends = np.cumsum(counts)
    clients = int(np.searchsorted(ends, pings)) + 1  # the first client whose pings reach the total
    counts = counts[:clients]
    counts[-1] -= int(ends[clients - 1]) - pings
    return counts


def client_ids(seed: int, day_index: int, pings: int, heavy_share: float = HEAVY_CLIENT_SHARE) -> list[Any]:
    """The clientId of each of a day's `pings` lines, in order: a share `heavy_share` of them from a few heavy
    clients, the rest from ordinary ones; NO_CLIENT_ID_FRACTION of them unusable (NO_CLIENT_IDS in turn).

    Each day's clients are drawn from a population (`_ACTIVE` of it sends pings on a given day), so that most
    clients come back the next day with the same id. The draws have a random stream of their own per
    (seed, day): the rest of the corpus is the same whatever the clients.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, day_index], spawn_key=(_CLIENT_STREAM,)))
    heavy = round(pings * heavy_share)
    ids: list[Any] = []
    for population, counts in (
        ("heavy", _heavy_counts(rng, heavy)),
        ("ordinary", _ordinary_counts(rng, pings - heavy)),
    ):
        members = rng.choice(int(len(counts) / _ACTIVE) + 1, size=len(counts), replace=False)
        for member, count in zip(members.tolist(), counts.tolist(), strict=True):
            ids += [client_uuid(seed, population, member)] * count
    order = rng.permutation(pings)
    ids = [ids[i] for i in order.tolist()]
    unusable = rng.choice(pings, size=round(pings * NO_CLIENT_ID_FRACTION), replace=False)
    for turn, slot in enumerate(sorted(unusable.tolist()), start=day_index * len(unusable)):
        ids[slot] = NO_CLIENT_IDS[turn % len(NO_CLIENT_IDS)]  # in turn over the days too: small corpora get each
    return ids


def usable_client_id(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def set_client_id(ping: dict[str, Any], value: Any) -> None:
    """Put a clientId (one of client_ids') into a ping, where Firefox puts it, or leave it out."""
    if value is MISSING:
        del ping["clientId"]
    else:
        ping["clientId"] = value
