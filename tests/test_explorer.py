"""The explorer page end to end: headless Chromium on the real app, which serves the test corpus published in
Postgres. What the page shows (its tables, which hold the charts' numbers) is compared with the reference
aggregation (tests/reference.py, summed by `summed`), and its downloads with the API's own JSON."""

import csv
import io
import json
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

from server.app import create_app
from server.config import PerChannel
from tests.browser import HAS_CHROMIUM, chromium, served, settled
from tests.conftest import settings_for, summed
from tests.test_api_clients import client_reference
from tests.test_api_clients import client_summed as summed_clients

pytestmark = pytest.mark.skipif(
    not HAS_CHROMIUM, reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)"
)

CHANNEL, VERSION = "nightly", "146"
ROWS = "return [...document.querySelectorAll(`${arguments[0]} tbody tr`)].map(r => [...r.cells].map(c => c.innerText))"


@pytest.fixture(scope="module")
def site(database_url):
    with served(create_app(settings_for(database_url))) as url:
        yield url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    with chromium(downloads) as driver:
        yield driver


def open_page(browser, site: str, **query) -> str:
    browser.get(f"{site}/?{urlencode(query, doseq=True)}")
    return settled(browser)


def api(site: str, path: str):
    with urllib.request.urlopen(site + path) as answer:
        return json.load(answer)


def rows(browser, table: str) -> list[list[str]]:
    return browser.execute_script(ROWS, f"#{table}")


def number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


def reference_distribution(cells, kind: str, metric: str, filters=None, processes=None) -> dict[str, int]:
    """Samples per bucket name over every date, as the reference aggregation counts them."""
    total = summed(cells[kind][(CHANNEL, VERSION, metric)], filters or {}, processes)
    assert total, "the corpus has data for this query"
    layouts = {layout for layout, *_ in total.values()}
    assert len(layouts) == 1
    (_, bounds) = layouts.pop()
    counts = np.sum([counts for _, counts, *_ in total.values()], axis=0)
    return {str(b): int(c) for b, c in zip(bounds, counts, strict=True)}


def shown_distribution(browser, column: int = 1) -> dict[str, int]:
    return {row[0]: int(number(row[column])) for row in rows(browser, "distribution-table")}


def change(browser, element) -> str:
    """Act on a control (its change event starts an update) and wait for the page to settle."""
    element.click()
    return settled(browser)


def choose(browser, select_id: str, value: str) -> str:
    Select(browser.find_element(By.ID, select_id)).select_by_value(value)
    return settled(browser)


def checkbox(browser, name: str, value: str):
    return browser.find_element(By.CSS_SELECTOR, f"input[name={name}][value='{value}']")


radio = checkbox  # the same selector finds a radio button


def test_pickers_come_from_the_api_and_the_distribution_is_the_reference(browser, site, cells):
    assert open_page(browser, site) == "ready"
    listed = api(site, "/aggregates_by/submission_date/channels/")
    options = browser.find_elements(By.CSS_SELECTOR, "#channel option")
    assert (
        [o.get_attribute("value") for o in options]
        == listed
        == sorted({c for c, _, _ in cells["submission_date"]} - {"release"})
    )
    assert choose(browser, "kind", "build_id") == "ready"
    assert choose(browser, "channel", CHANNEL) == "ready"
    assert choose(browser, "version", VERSION) == "ready"
    metrics = api(site, f"/filters/?channel={CHANNEL}&version={VERSION}")["metric"]
    assert (
        browser.execute_script("return [...document.querySelectorAll('#metrics option')].map(o => o.value)") == metrics
    )
    assert len(metrics) > 300

    metric = "SCALARS_BROWSER.ENGAGEMENT.ACTIVE_TICKS"
    field = browser.find_element(By.ID, "metric")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(metric, Keys.ENTER)
    assert settled(browser) == "ready"
    assert browser.find_element(By.ID, "title").text == metric
    assert shown_distribution(browser) == reference_distribution(cells, "build_id", metric)
    bars = browser.find_elements(By.CSS_SELECTOR, "#distribution-chart rect")
    assert len(bars) == len(rows(browser, "distribution-table"))
    assert "percent" not in browser.current_url and f"metric={metric}" in browser.current_url

    assert change(browser, browser.find_element(By.CSS_SELECTOR, "input[name=scale][value=percent]")) == "ready"
    shown = rows(browser, "distribution-table")
    assert sum(number(row[2]) for row in shown) == pytest.approx(100, abs=0.05)


def test_filters_change_the_counts_as_the_reference_does(browser, site, cells):
    assert open_page(browser, site, kind="submission_date", channel=CHANNEL, version=VERSION, metric="GC_MS") == "ready"
    assert shown_distribution(browser) == reference_distribution(cells, "submission_date", "GC_MS")
    assert change(browser, checkbox(browser, "os", "Linux")) == "ready"
    linux = reference_distribution(cells, "submission_date", "GC_MS", {"os": {"Linux"}})
    assert shown_distribution(browser) == linux
    assert change(browser, checkbox(browser, "os", "Darwin")) == "ready"  # two values of one filter: either
    either = reference_distribution(cells, "submission_date", "GC_MS", {"os": {"Linux", "Darwin"}})
    assert shown_distribution(browser) == either != linux
    assert change(browser, checkbox(browser, "child", "content")) == "ready"
    content = reference_distribution(cells, "submission_date", "GC_MS", {"os": {"Linux", "Darwin"}}, {"content"})
    assert shown_distribution(browser) == content != either


def test_evolution_has_a_point_per_date_with_its_submissions(browser, site, cells):
    builds = cells["build_id"]
    version = max(
        (v for c, v, m in builds if (c, m) == (CHANNEL, "GC_MS")),
        key=lambda v: len({r[2] for r in builds[(CHANNEL, v, "GC_MS")]}),
    )
    per_date = summed(builds[(CHANNEL, version, "GC_MS")], {})
    dates = sorted(day for day, _ in per_date)
    assert len(dates) > 2
    query = {"view": "evolution", "kind": "build_id", "channel": CHANNEL, "version": version, "metric": "GC_MS"}
    assert open_page(browser, site, **query, stats="mean,50") == "ready"
    shown = rows(browser, "evolution-table")
    assert [row[0].replace("-", "") for row in shown] == dates
    for row, day in zip(shown, dates, strict=True):
        _, counts, total, submissions = per_date[(day, "")]
        assert int(number(row[2])) == submissions
        assert int(number(row[3])) == counts.sum()
        assert number(row[4]) == pytest.approx(total / counts.sum(), abs=0.006)  # the mean, to 2 decimals
    assert len(browser.find_elements(By.CSS_SELECTOR, "#submissions-chart circle")) == len(dates)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#evolution-chart circle")) == 2 * len(dates)
    # mean and median differ by more than thickness, and the legend shows each one's line as the chart draws it
    dashes = browser.execute_script(
        """const dash = (element) => getComputedStyle(element).strokeDasharray;
           const keys = [...document.querySelectorAll('#evolution-legend li')].filter((li) => li.querySelector('line'));
           return {
             chart: ['mean', '50'].map((stat) => dash(document.querySelector(`#evolution-chart g.stat-${stat} path`))),
             legend: keys.map((li) => [li.textContent.trim(), dash(li.querySelector('line'))]),
           }"""
    )
    mean, median = dashes["chart"]
    assert median == "none" and mean not in ("none", "")
    assert dashes["legend"] == [["mean", mean], ["median", median]]
    assert browser.find_element(By.ID, "distribution").get_attribute("hidden") is not None


def test_comparing_two_values_of_a_filter_gives_two_series(browser, site, cells):
    assert open_page(browser, site, kind="submission_date", channel=CHANNEL, version=VERSION, metric="GC_MS") == "ready"
    assert choose(browser, "compare", "os") == "ready"
    assert "two or more" in browser.find_element(By.ID, "notes").text
    change(browser, checkbox(browser, "os", "Linux"))
    assert change(browser, checkbox(browser, "os", "Windows_NT")) == "ready"
    head = browser.execute_script(
        "return [...document.querySelectorAll('#distribution-table thead th')].map(t => t.textContent)"
    )
    assert head == ["Bucket", "os=Linux samples", "os=Linux %", "os=Windows_NT samples", "os=Windows_NT %"]
    for column, os_name in ((1, "Linux"), (3, "Windows_NT")):
        assert shown_distribution(browser, column) == reference_distribution(
            cells, "submission_date", "GC_MS", {"os": {os_name}}
        )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#distribution-legend li")) == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "#distribution-chart g.bars")) == 2


def controls(browser) -> dict:
    return browser.execute_script(
        """return {
             values: [...document.querySelectorAll('select, input:not([type=checkbox]):not([type=radio])')]
                     .map(e => [e.id, e.value]),
             checked: [...document.querySelectorAll('input:checked')].map(e => [e.name, e.value]),
           }"""
    )


def test_the_url_reproduces_the_view(browser, site):
    assert open_page(browser, site, channel=CHANNEL, version=VERSION, metric="GC_MS") == "ready"
    before = browser.current_url
    change(browser, checkbox(browser, "architecture", "x86-64"))
    change(browser, browser.find_element(By.CSS_SELECTOR, "input[name=view][value=evolution]"))
    change(browser, checkbox(browser, "stats", "95"))
    choose(browser, "kind", "build_id")
    dates = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#from option")]
    assert choose(browser, "from", dates[1]) == "ready"
    view = (controls(browser), rows(browser, "evolution-table"), rows(browser, "distribution-table"))
    assert len(view[1]) == len(dates) - 1
    copied = browser.current_url

    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        browser.get(copied)
        assert settled(browser) == "ready"
        assert (controls(browser), rows(browser, "evolution-table"), rows(browser, "distribution-table")) == view
        assert browser.current_url == copied
    finally:
        browser.close()
        browser.switch_to.window(first)
    for _ in range(5):  # the browser's Back button walks back through the views
        browser.back()
        settled(browser)
    assert browser.current_url == before


def downloaded(folder: Path, name: str, seconds: float = 10) -> bytes:
    """The file once the browser has finished it: Chromium may name it before it has written it."""
    path, partial = folder / name, folder / f"{name}.crdownload"
    deadline = time.monotonic() + seconds
    while not path.exists() or partial.exists() or not path.stat().st_size:
        assert time.monotonic() < deadline, f"{name} was not downloaded"
        time.sleep(0.1)
    return path.read_bytes()


def test_downloads_are_the_api_answer(browser, site, downloads):
    assert (
        open_page(browser, site, kind="submission_date", channel=CHANNEL, version=VERSION, metric="GC_MS", os="Linux")
        == "ready"
    )
    browser.find_element(By.ID, "download-json").click()
    browser.find_element(By.ID, "download-csv").click()
    shown = json.loads(downloaded(downloads, "GC_MS.json"))
    (series,) = shown["series"]
    assert "os=Linux" in series["url"] and series["url"].startswith("/aggregates_by/submission_date/channels/nightly/")
    answer = api(site, series["url"])
    assert {k: series[k] for k in ("buckets", "kind", "description", "data")} == answer
    table = list(csv.DictReader(io.StringIO(downloaded(downloads, "GC_MS-distribution.csv").decode())))
    assert [int(r["count"]) for r in table] == np.sum([e["histogram"] for e in answer["data"]], axis=0).tolist()
    assert [r["bucket"] for r in table] == [str(b) for b in answer["buckets"]]

    change(browser, browser.find_element(By.CSS_SELECTOR, "input[name=view][value=evolution]"))
    browser.find_element(By.ID, "download-csv").click()
    table = list(csv.DictReader(io.StringIO(downloaded(downloads, "GC_MS-evolution.csv").decode())))
    assert [r["date"] for r in table] == [e["date"] for e in answer["data"]]
    for row, entry in zip(table, answer["data"], strict=True):
        assert int(row["submissions"]) == entry["count"] and int(row["samples"]) == sum(entry["histogram"])
        assert float(row["mean"]) == entry["mean"] and float(row["p95"]) == entry["percentiles"]["95"]


def test_no_data_and_forbidden_are_said_not_drawn(browser, site):
    cases = [
        ({"channel": "release", "metric": "GC_MS"}, "forbidden", "Authorization header is expected"),
        (
            {"channel": CHANNEL, "version": VERSION, "metric": "SCALARS_TELEMETRY.EVENT_COUNTS"},
            "forbidden",
            "Not allowed",
        ),
        ({"channel": CHANNEL, "version": VERSION, "metric": "GC_MS", "os": "Plan9"}, "nodata", "No data found"),
        ({"channel": CHANNEL, "version": VERSION, "metric": "NO_SUCH_PROBE"}, "nodata", "Cannot find this histogram"),
    ]
    for query, state, message in cases:
        assert open_page(browser, site, **query) == state, query
        assert message in browser.find_element(By.ID, "status").text
        assert not browser.find_element(By.ID, "shown").is_displayed()


def test_the_pings_and_clients_switch_asks_per_client(browser, site, database_url, corpus, cells):
    """The Aggregation switch asks the metric route again with aggregation=clients: the bars are then the
    client-level sums computed from the pings, and the evolution shows distinct clients. Under the default
    thresholds the corpus has too few clients, and the page says what the API withheld."""
    query = {"kind": "submission_date", "channel": CHANNEL, "version": VERSION, "metric": "GC_MS"}
    assert open_page(browser, site, **query) == "ready"
    assert change(browser, radio(browser, "aggregation", "clients")) == "nodata"
    assert "aggregation=clients" in browser.current_url
    fewest = settings_for(database_url).min_clients.of(CHANNEL)  # the default, more than the corpus has
    assert f"withheld: fewer than {fewest} clients each" in browser.find_element(By.ID, "status").text
    assert change(browser, radio(browser, "aggregation", "pings")) == "ready"
    assert "aggregation" not in browser.current_url
    assert shown_distribution(browser) == reference_distribution(cells, "submission_date", "GC_MS")

    per_client = summed_clients(client_reference(corpus.output)["submission_date"][(CHANNEL, VERSION, "GC_MS")], {})
    with served(create_app(settings_for(database_url, min_clients=PerChannel((), 1)))) as everyone:
        assert open_page(browser, everyone, **query, aggregation="clients") == "ready"
        assert radio(browser, "aggregation", "clients").is_selected()
        shown = {row[0]: number(row[1]) for row in rows(browser, "distribution-table")}
        assert list(shown.values()) == pytest.approx(sum(sums for _, sums in per_client.values()).tolist(), abs=0.006)
        assert (
            browser.find_element(By.ID, "distribution-table")
            .find_element(By.TAG_NAME, "caption")
            .text.startswith("Clients per bucket")
        )
        assert change(browser, browser.find_element(By.CSS_SELECTOR, "input[name=view][value=evolution]")) == "ready"
        head = browser.execute_script(
            "return [...document.querySelectorAll('#evolution-table thead th')].map(t => t.textContent)"
        )
        assert head[2:4] == ["Submissions", "Clients"]
        clients = [int(number(row[3])) for row in rows(browser, "evolution-table")]
        assert clients == [per_client[(day, "")][0] for day in sorted(day for day, _ in per_client)]
        assert "Clients" in browser.find_element(By.ID, "submissions-chart").text
