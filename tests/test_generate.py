"""The synthetic corpus: deterministic, Firefox-shaped, and damaged exactly where it says it is.

Everything is checked from the written files with independent code (decoding, Firefox's packing rule, the
definition lookup rules of docs/semantics.md), never with the generator's own helpers.
"""

import gzip
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from aggregator.buckets import exponential_buckets, linear_buckets
from aggregator.cli import parser
from aggregator.generate import UNDEFINED_HISTOGRAMS, GenerateSummary, generate_corpus
from aggregator.generate.clients import HEAVY_CLIENT_SHARE, MISSING, client_ids

PINGS = 300
MALFORMED_FRACTION = 0.05


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> GenerateSummary:
    return generate_corpus(
        str(tmp_path_factory.mktemp("corpus")),
        pings=PINGS,
        days=2,
        seed=3,
        files_per_day=2,
        malformed_fraction=MALFORMED_FRACTION,
        compress=False,
    )


@pytest.fixture(scope="module")
def pings(corpus: GenerateSummary) -> list[dict[str, Any]]:
    """The corpus's good pings, parsed once."""
    return [orjson.loads(line) for path in corpus.files for line in lines_of(path) if not is_malformed(line)]


def lines_of(path: str) -> list[bytes]:
    data = Path(path).read_bytes()
    return (gzip.decompress(data) if path.endswith(".gz") else data).splitlines()


def parses(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def is_malformed(line: bytes) -> bool:
    """The ping-level checks of docs/semantics.md that the generator's malformed kinds should trip."""
    try:
        ping = orjson.loads(line)
    except orjson.JSONDecodeError:
        return True
    if not isinstance(ping, dict):
        return True
    application, meta, payload = ping.get("application"), ping.get("meta"), ping.get("payload")
    if not (isinstance(application, dict) and isinstance(meta, dict) and isinstance(payload, dict)):
        return True
    build_id = application.get("buildId")
    if not (isinstance(build_id, str) and len(build_id) >= 8 and build_id[:8].isascii() and build_id[:8].isdigit()):
        return True
    if not isinstance(application.get("version"), str) or not isinstance(meta.get("sampleId"), int | float):
        return True
    return not isinstance(payload.get("processes", {}), dict) or not isinstance(payload.get("childPayloads", []), list)


def histograms_of(ping: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(name, histogram) for every histogram the job reads, keyed ones included."""
    payload = ping["payload"]
    processes = payload["processes"]
    containers = [
        payload,
        *(processes[p] for p in ("content", "gpu") if p in processes),
        *payload.get("childPayloads", []),
    ]
    for container in containers:
        yield from container.get("histograms", {}).items()
        for name, by_key in container.get("keyedHistograms", {}).items():
            for histogram in by_key.values():
                yield name, histogram


def firefox_pack(bounds: Sequence[int], counts: list[int]) -> dict[str, int]:
    """TelemetryUtils.packHistogram, step by step: the non-empty buckets, plus an empty bucket just before the
    first and just after the last non-empty one."""
    values: dict[str, int] = {}
    first, last = True, 0
    for i, count in enumerate(counts):
        if not count:
            continue
        if i and first:
            values[str(bounds[i - 1])] = 0
        first = False
        last = i + 1
        values[str(bounds[i])] = count
    if last and last < len(counts):
        values[str(bounds[last])] = 0
    return values


def is_usable(histogram: Any) -> bool:
    """What the job keeps of a histogram (docs/semantics.md): an object, an int sum >= 0, int keys and counts."""
    if not isinstance(histogram, dict) or not isinstance(histogram.get("values"), dict):
        return False
    if not isinstance(histogram["sum"], int) or histogram["sum"] < 0:
        return False
    return all(key.lstrip("-").isdigit() and isinstance(count, int) for key, count in histogram["values"].items())


@cache
def bounds_of(histogram_type: int, low: int, high: int, n_buckets: int) -> tuple[tuple[int, ...], frozenset[str]]:
    """Bucket lower bounds of the layout a ping declares, and the keys they make."""
    bounds = (exponential_buckets if histogram_type == 0 else linear_buckets)(low, high, n_buckets)
    return tuple(bounds), frozenset(map(str, bounds))


def definition_layout(definition: dict[str, Any]) -> tuple[int, int, int]:
    """(low, high, n_buckets) as moztelemetry derives them from a Histograms.json entry."""
    kind = definition["kind"]
    if kind in ("boolean", "flag", "count"):
        return 1, 2, 3
    if kind == "enumerated":
        return 1, definition["n_values"], definition["n_values"] + 1
    if kind == "categorical":
        n = max(len(definition["labels"]), definition.get("n_values") or 0, 50)
        return 1, n, n + 1
    return definition.get("low", 1), definition["high"], definition["n_buckets"]


def resolve(name: str, definitions: dict[str, Any]) -> dict[str, Any] | None:
    """The name rules of docs/semantics.md; None when the job has to take the layout from the ping."""
    if name.startswith(("USE_COUNTER_", "USE_COUNTER2_")):
        return {"kind": "boolean"}
    if name == "EVENTLOOP_UI_LAG_EXP_MS":
        return {"kind": "exponential", "low": 50, "high": 60000, "n_buckets": 20}
    name = name.split("/")[0]
    if name not in definitions and name.startswith("STARTUP_"):
        name = name[len("STARTUP_") :]
    return definitions.get(name)


def test_same_arguments_give_the_same_bytes(tmp_path: Path) -> None:
    def corpus_bytes(folder: str, seed: int) -> dict[str, bytes]:
        generate_corpus(str(tmp_path / folder), pings=40, days=2, seed=seed, files_per_day=2)
        return {str(p.relative_to(tmp_path / folder)): p.read_bytes() for p in (tmp_path / folder).rglob("*.*")}

    first, again, other = corpus_bytes("a", 7), corpus_bytes("b", 7), corpus_bytes("c", 8)
    assert first == again
    assert sorted(first) == sorted(other) and first != other
    gz = [data for path, data in first.items() if path.endswith(".gz")]
    assert len(gz) == 4 and all(data[4:8] == b"\0\0\0\0" for data in gz)  # gzip mtime 0


def test_layout_and_summary(corpus: GenerateSummary, pings: list[dict[str, Any]]) -> None:
    assert corpus.dates == ["20261101", "20261102"]
    assert [Path(f).relative_to(corpus.output).as_posix() for f in corpus.files] == [
        f"submission_date={day}/part-000{part}.ndjson" for day in corpus.dates for part in (0, 1)
    ]
    lines = [len(lines_of(path)) for path in corpus.files]
    assert lines == [75, 75, 75, 75] and corpus.pings == PINGS
    assert corpus.bytes_uncompressed == sum(Path(path).stat().st_size for path in corpus.files)
    for ping in pings:
        assert ping["meta"]["submissionDate"] in corpus.dates


def test_pings_weigh_20_to_100_kb(corpus: GenerateSummary) -> None:
    sizes = [len(line) for path in corpus.files for line in lines_of(path) if not is_malformed(line)]
    assert len(sizes) == PINGS - corpus.malformed
    assert min(sizes) >= 20_000 and max(sizes) <= 100_000


def test_malformed_lines_are_counted_and_spread_over_the_files(corpus: GenerateSummary) -> None:
    per_file = [sum(map(is_malformed, lines_of(path))) for path in corpus.files]
    assert sum(per_file) == corpus.malformed == round(PINGS * MALFORMED_FRACTION)
    assert max(per_file) - min(per_file) <= 1
    unparsable = [line for path in corpus.files for line in lines_of(path) if not parses(line)]
    assert any(line.startswith(b'{"type":"main"') for line in unparsable)  # truncated pings
    assert any(not line.startswith(b"{") for line in unparsable)  # not JSON at all


def test_filtered_but_valid_pings_are_present(pings: list[dict[str, Any]]) -> None:
    assert any(p["application"]["name"] == "Fennec" for p in pings)
    assert any(p["meta"]["sampleId"] >= 100 for p in pings)
    assert {p["application"]["channel"] for p in pings} >= {"nightly", "aurora", "beta", "release", "esr"}
    legacy = [p for p in pings if "childPayloads" in p["payload"]]
    assert 0.05 < len(legacy) / len(pings) < 0.2
    assert all("content" not in p["payload"]["processes"] for p in legacy)


def test_histograms_are_packed_as_firefox_packs_them(pings: list[dict[str, Any]]) -> None:
    checked, junk = 0, 0
    for ping in pings[:100]:  # 20,000 histograms: plenty, and quick
        for _, histogram in histograms_of(ping):
            if not is_usable(histogram):
                junk += 1
                continue
            bounds, keys = bounds_of(histogram["histogram_type"], *histogram["range"], histogram["bucket_count"])
            values = histogram["values"]
            if not keys.issuperset(values):
                junk += 1  # a bucket key that is not a lower bound
                continue
            counts = [values.get(str(bound), 0) for bound in bounds]
            assert list(values.items()) == list(firefox_pack(bounds, counts).items())
            assert histogram["range"] == [bounds[1], bounds[-1]]
            if histogram["histogram_type"] == 4:  # count: every sample is 1, in bucket 0
                assert histogram["sum"] == counts[0]
            else:
                uppers = [*bounds[1:], 2 * bounds[-1]]
                low = sum(c * b for c, b in zip(counts, bounds, strict=True))
                high = sum(c * (u - 1) for c, u in zip(counts, uppers, strict=True))
                assert low <= histogram["sum"] <= high
            checked += 1
    assert checked > 15_000
    assert 0 < junk < checked / 500  # damaged histograms exist, and are rare


def test_definitions_cover_every_histogram_but_the_intended_unknown_ones(
    corpus: GenerateSummary, pings: list[dict[str, Any]]
) -> None:
    definitions = orjson.loads(Path(corpus.histograms_definitions).read_bytes())
    unknown = set()
    for ping in pings:
        for name, histogram in histograms_of(ping):
            definition = resolve(name, definitions)
            if definition is None:
                unknown.add(name)
            elif isinstance(histogram, dict):
                low, high, n = definition_layout(definition)
                assert (histogram["range"], histogram["bucket_count"]) == ([low, high], n), name
    assert unknown == set(UNDEFINED_HISTOGRAMS)
    assert {"EVENTLOOP_UI_LAG_EXP_MS", "STARTUP_HTTP_PAGE_DNS_ISSUE_TIME", "GC_MS/parallel"}.isdisjoint(definitions)


def test_scalars_are_defined_with_their_kind(corpus: GenerateSummary, pings: list[dict[str, Any]]) -> None:
    categories = yaml.safe_load(Path(corpus.scalars_definitions).read_text())
    kinds = {
        f"{category}.{name}": probe["kind"] for category, probes in categories.items() for name, probe in probes.items()
    }
    types = {"uint": (int, float), "boolean": (bool,), "string": (str,)}
    seen = set()
    for ping in pings:
        for process in ping["payload"]["processes"].values():
            values = [*process.get("scalars", {}).items()]
            values += [(name, v) for name, by_key in process.get("keyedScalars", {}).items() for v in by_key.values()]
            for name, value in values:
                assert isinstance(value, types[kinds[name]]), name
                seen.add(name)
    assert "telemetry.event_counts" in seen and any(name.startswith("browser.engagement.navigation.") for name in seen)


def job_metric_names(ping: dict[str, Any]) -> set[str]:
    """Metric names as the job names them (docs/semantics.md), before the DB-stage character check."""
    names = set()
    for name, histogram in histograms_of(ping):
        if is_usable(histogram):
            names.add(f"[[COUNT]]_{name}" if histogram["histogram_type"] == 4 else name)
    for process in ping["payload"]["processes"].values():
        scalars = [*process.get("scalars", {}).items()]
        scalars += [(name, v) for name, by_key in process.get("keyedScalars", {}).items() for v in by_key.values()]
        for name, value in scalars:
            if isinstance(value, int | float) and not name.startswith("browser.engagement.navigation"):
                names.add("SCALARS_" + name.upper())
    for name, value in ping["payload"]["simpleMeasurements"].items():
        subs = value.items() if isinstance(value, dict) else [("", value)]
        names |= {f"SIMPLE_MEASURES_{name}_{sub}".rstrip("_").upper() for sub, v in subs if isinstance(v, int | float)}
    return names


def test_catalogue_has_300_plus_metrics_and_the_special_ones(pings: list[dict[str, Any]]) -> None:
    names: set[str] = set()
    ipc_keys: set[str] = set()
    for ping in pings:
        names |= job_metric_names(ping)
        ipc_keys |= set(ping["payload"]["keyedHistograms"].get("IPC_READ_MAIN_THREAD_LATENCY_MS", {}))
    assert len(names) >= 320, len(names)
    assert {
        "MESSAGE_MANAGER_MESSAGE_SIZE",
        "VIDEO_DETAILED_DROPPED_FRAMES_PROPORTION",
        "STARTUP_HTTP_PAGE_DNS_ISSUE_TIME",
        "GC_MS/parallel",
        "EVENTLOOP_UI_LAG_EXP_MS",
        "[[COUNT]]_CONTENT_DOCUMENTS_DESTROYED",
        "[[COUNT]]_TOP_LEVEL_CONTENT_DOCUMENTS_DESTROYED",
        "SCALARS_TELEMETRY.EVENT_COUNTS",
        "SIMPLE_MEASURES_ADDONMANAGER_XPIDB_PARSEDB_MS",
    } <= names
    assert sum(name.startswith("USE_COUNTER2_") for name in names) >= 30
    assert len(ipc_keys) >= 40 and any(key != key.lower() for key in ipc_keys)


# ---- clients: who sent each ping ----------------------------------------------------------------------------

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ABSENT = object()


def day_lines(corpus: GenerateSummary, date: str) -> list[bytes]:
    return [line for path in corpus.files if f"submission_date={date}/" in path for line in lines_of(path)]


def senders(ids: list[Any]) -> Counter:
    """Pings per usable clientId (a non-empty string)."""
    return Counter(i for i in ids if isinstance(i, str) and i)


def test_each_ping_carries_a_client_id_and_some_none_usable(corpus: GenerateSummary) -> None:
    usable, unusable = set(), []
    for day_index, date in enumerate(corpus.dates):
        lines = day_lines(corpus, date)
        drawn = client_ids(3, day_index, len(lines))  # the corpus's: line i of a day is sent by client i
        for line, expected in zip(lines, drawn, strict=True):
            if is_malformed(line):
                continue
            sent = orjson.loads(line).get("clientId", ABSENT)
            assert sent == expected or (sent is ABSENT and expected is MISSING)
            if isinstance(sent, str) and sent:
                assert UUID4.fullmatch(sent), sent
                usable.add(sent)
            else:
                unusable.append(sent)
    assert corpus.clients == len(usable) and corpus.no_client_id == len(unusable)
    assert unusable and all(i is ABSENT or i is None or i == "" or type(i) is int for i in unusable)


@pytest.mark.parametrize("share", [0.0, 0.2, 0.5])
def test_most_clients_send_a_few_pings_a_day_and_a_few_send_many(share: float) -> None:
    for day in range(2):
        ids = client_ids(1, day, 20_000, share)
        assert 0.005 < sum(not (isinstance(i, str) and i) for i in ids) / len(ids) < 0.02  # one in a hundred
        counts = sorted(senders(ids).values(), reverse=True)
        assert sum(c <= 3 for c in counts) / len(counts) > 0.85  # most send one to three
        top = sum(counts[: len(counts) // 100]) / sum(counts)  # the share of the top 1%
        heavy = sum(c for c in counts if c >= 10) / sum(counts)
        assert abs(heavy - share) < 0.02
        if share:
            assert top > 0.15 and 100 < counts[0] <= 1000
        else:
            assert top < 0.06 and counts[0] < 20


def test_most_clients_come_back_the_next_day() -> None:
    first, second = (set(senders(client_ids(1, day, 5_000))) for day in range(2))
    assert 0.5 < len(first & second) / len(first) < 0.9


def without_client_ids(folder: Path) -> dict[str, list]:
    """Every line of a corpus with its clientId taken out: parsed pings, or the bytes of the other lines (a
    truncated ping up to 500 bytes: its cut follows its length)."""
    lines = {}
    for path in sorted(folder.rglob("*.ndjson*")):
        kept = []
        for line in lines_of(str(path)):
            ping = orjson.loads(line) if parses(line) else None
            if isinstance(ping, dict):
                ping.pop("clientId", None)
                kept.append(list(ping.items()))  # the keys' order too
            else:
                kept.append(re.sub(rb'"clientId":("[^"]*"|null|\d+),?', b"", line)[:500])
        lines[path.relative_to(folder).as_posix()] = kept
    return lines


def test_client_ids_change_nothing_else(tmp_path: Path) -> None:
    """Client ids come from a stream of their own: whatever they are, the rest of every line is the same."""
    for share in (0.0, 0.5):
        generate_corpus(str(tmp_path / str(share)), pings=60, days=2, seed=7, malformed_fraction=0.1,
                        heavy_client_share=share)  # fmt: skip
    assert without_client_ids(tmp_path / "0.0") == without_client_ids(tmp_path / "0.5")


def test_the_command_documents_the_default_share() -> None:
    commands = next(a for a in parser()._actions if a.dest == "command")
    (option,) = [a for a in commands.choices["generate"]._actions if a.dest == "heavy_client_share"]
    assert f"default {HEAVY_CLIENT_SHARE}" in option.help
