"""One synthetic ping: its histograms, scalars and simple measurements drawn in bulk with numpy and packed the way
Firefox packs them, legacy childPayloads, and the damaged histograms and malformed lines real clients send.
"""

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

import numpy as np
import orjson

from aggregator.generate.clients import (
    SYSTEM_ADDON_ENTRIES,
    XPCOM_ABIS,
    Client,
    Dice,
    builds_in_use,
    draw_client,
    draw_environment,
)
from aggregator.generate.probes import (
    CHILD_SIMPLE_MEASURES,
    HISTOGRAM_TYPES,
    SIMPLE_MEASURES,
    HistogramProbe,
    histogram_probes,
    scalar_probes,
)

# Lines counted as malformed, used in turn (see malformed_line).
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


LEGACY_FRACTION = 0.1  # pings with payload.childPayloads instead of processes.content histograms
SPOILED_FRACTION = 0.1  # pings with one damaged histogram
SCALAR_FLOAT_FRACTION = 0.002
SCALAR_NEGATIVE_FRACTION = 0.001
GAP_FRACTION = 0.15  # empty buckets between a histogram's first and last non-empty ones


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
    offset: np.ndarray  # where the probe's buckets start in the Catalogue.bucket_* arrays


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


def _behaviour(rng: np.random.Generator, probe: HistogramProbe) -> tuple[float, float, float, float, float]:
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


def _bucket_samples(probe: HistogramProbe) -> tuple[list[int], list[int]]:
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


class Catalogue:
    """All probes, and their slots per process; depends on the seed only, so it is built once per corpus."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.histograms = histogram_probes()
        self.scalars = scalar_probes()
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
        self.simple_medians = np.array([median for _, median in SIMPLE_MEASURES])
        self.child_simple = np.array([name in CHILD_SIMPLE_MEASURES for name, _ in SIMPLE_MEASURES])

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
    rng: np.random.Generator, slots: _HistogramSlots, catalogue: Catalogue, containers: int, activity: float
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


def _simple_measurements(rng: np.random.Generator, catalogue: Catalogue, child: bool) -> dict[str, Any]:
    """Startup timings and counters; numbers nested one level deep at most, except the ones the job ignores."""
    values = np.floor(catalogue.simple_medians * np.exp(0.7 * rng.standard_normal(len(SIMPLE_MEASURES))))
    uniform = rng.random(3).tolist()
    measurements: dict[str, Any] = {}
    for (name, _), value, for_child in zip(
        SIMPLE_MEASURES, values.astype(np.int64).tolist(), catalogue.child_simple.tolist(), strict=True
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


class PingMaker:
    """Makes the pings of one file: one random stream, one submission day."""

    def __init__(self, catalogue: Catalogue, rng: np.random.Generator, day: date) -> None:
        self.catalogue = catalogue
        self.rng = rng
        self.dice = Dice(rng)
        self.day = day
        self.builds = builds_in_use(day)

    def ping(self, aggregatable: bool) -> dict[str, Any]:
        """A v4 main ping; `aggregatable` rules out the pings the job filters, for making malformed ones."""
        dice, rng = self.dice, self.rng
        client = draw_client(dice, self.builds, aggregatable)
        # the clientId drawn here is replaced by the corpus's (clients.client_ids), drawn apart: it is still drawn,
        # so that the stream, and every other field of every ping, stays as it was before clients repeated
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
            "addons": ",".join(f"{addon_id.replace('@', '%40')}:1.0" for addon_id in SYSTEM_ADDON_ENTRIES),
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
                "xpcomAbi": XPCOM_ABIS.get(client.architecture, "x86_64-gcc3"),
            },
            "clientId": client_id,
            "profileGroupId": profile_group,
            "environment": draw_environment(dice, client, 17000 + dice.below(3400)),
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

    def _payload(self, client: Client, legacy: bool) -> dict[str, Any]:
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


def _spoil_histogram(dice: Dice, histograms: dict[str, Any]) -> None:
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


def malformed_line(kind: str, ping: dict[str, Any], dice: Dice) -> bytes:
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
