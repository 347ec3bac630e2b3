// The explorer page: controls -> state -> API answers -> charts, tables and downloads. The state lives in the
// URL (state.js); the numbers come from data.js, the drawings from chart.js, the answers from api.js.

import { ApiError, channelsPath, datesPath, explain, filtersPath, getJSON, metricPath, setToken } from "./api.js";
import { barChart, lineChart } from "./chart.js";
import {
  bucketNames,
  distributionCsv,
  entriesOf,
  evolutionCsv,
  labelsOf,
  percents,
  shownJson,
  statistic,
  statisticName,
  summed,
  withheldText,
} from "./data.js";
import { FILTERS, STATISTICS, byValue, datesBetween, parseState, seriesOf, stateQuery } from "./state.js";

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
const FILTER_NAMES = {
  application: "Application",
  architecture: "Architecture",
  os: "OS",
  osVersion: "OS version",
  child: "Process",
};
const DATE_NAMES = { build_id: "Build date", submission_date: "Submission date" };
// What a histogram's values are, per aggregation: the words of the charts and tables.
const UNITS = {
  pings: { values: "Samples", percent: "Percent of samples", weighing: "per ping: each sample counts once" },
  clients: {
    values: "Clients",
    percent: "Percent of clients",
    weighing: "per client: each client's histogram normalised to 1, then summed",
  },
};
const STAT_NAMES = { mean: "mean", 5: "5th percentile", 25: "25th percentile", 50: "median", 75: "75th percentile", 95: "95th percentile" };
// What a change of one control makes obsolete: a new channel has other versions, a version other dates...
const RESETS = { kind: ["from", "to"], channel: ["version", "from", "to"], version: ["from", "to"], metric: ["label"] };

let state = parseState(location.search);
let generation = 0; // the newest update; an older one that finishes later is dropped

const showDate = (d) => `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}`;

function setStatus(kind, text) {
  const status = $("status");
  status.dataset.state = kind;
  status.textContent = text;
}

/** Give a select these [value, text] options, rebuilt only when they differ (so focus and scroll stay). */
function setOptions(select, options, value) {
  const key = JSON.stringify(options);
  if (select.dataset.options !== key) {
    select.replaceChildren(...options.map(([v, text]) => new Option(text, v)));
    select.dataset.options = key;
  }
  select.value = value;
}

function element(name, attributes = {}, ...children) {
  const made = document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) made.setAttribute(key, value);
  made.append(...children);
  return made;
}

// ---- the controls ---------------------------------------------------------------------------------------

/** Controls whose choices do not come from the API show the state as it is. */
function showState() {
  $("kind").value = state.kind;
  $("metric").value = state.metric;
  $("compare").value = state.compare;
  for (const input of document.querySelectorAll("input[name=view], input[name=scale], input[name=aggregation]")) {
    input.checked = input.value === state[input.name];
  }
  for (const input of document.querySelectorAll("input[name=stats]")) input.checked = state.stats.includes(input.value);
}

/** One fieldset of checkboxes per filter; values checked but not listed stay, so they can be unchecked. */
function showFilters(options) {
  const pairs = (options.os ?? []).map((v) => [v.slice(0, v.indexOf(",")), v.slice(v.indexOf(",") + 1)]);
  const chosenOs = state.filters.os;
  const osOf = new Map();
  for (const [os, version] of pairs) {
    if (!chosenOs.length || chosenOs.includes(os)) osOf.set(version, [...(osOf.get(version) ?? []), os]);
  }
  const choices = {
    application: (options.application ?? []).map((v) => [v, v]),
    architecture: (options.architecture ?? []).map((v) => [v, v]),
    os: [...new Set(pairs.map(([os]) => os))].map((v) => [v, v]),
    osVersion: [...osOf].map(([version, oses]) => [version, `${version} (${oses.join(", ")})`]),
    child: (options.child ?? []).map((v) => [v, v]),
  };
  for (const key of FILTERS) {
    const listed = new Set(choices[key].map(([v]) => v));
    const all = [...choices[key], ...state.filters[key].filter((v) => !listed.has(v)).map((v) => [v, v])];
    all.sort((a, b) => byValue(a[0], b[0]));
    let group = $(`filter-${key}`);
    if (!group) {
      group = element("fieldset", { id: `filter-${key}`, class: "choices" }, element("legend", {}, FILTER_NAMES[key]));
      $("filters").append(group);
    }
    const signature = JSON.stringify(all);
    if (group.dataset.options !== signature) {
      group.replaceChildren(
        group.querySelector("legend"),
        ...all.map(([value, text]) =>
          element("label", {}, element("input", { type: "checkbox", name: key, value }), ` ${text}`),
        ),
      );
      group.dataset.options = signature;
    }
    for (const box of group.querySelectorAll("input")) box.checked = state.filters[key].includes(box.value);
  }
}

// ---- from the state to the answers ----------------------------------------------------------------------

/** Ask the API for everything the state needs, filling its open choices: nightly, the newest version,
 * every date, GC_MS. Throws the ApiError of the first step that fails. */
async function load(state) {
  const channels = await getJSON(channelsPath(state.kind));
  state.channel ||= channels.includes("nightly") ? "nightly" : (channels[0] ?? "");
  setOptions($("channel"), [...new Set([...channels, state.channel])].filter(Boolean).map((c) => [c, c]), state.channel);
  if (!state.channel) throw new ApiError(404, "not_found", "Nothing has been published yet.");

  const listed = await getJSON(datesPath(state.kind, state.channel));
  const versions = [...new Set(listed.map((d) => d.version))].sort((a, b) => b - a);
  state.version ||= versions[0] ?? "";
  setOptions($("version"), [...new Set([...versions, state.version])].filter(Boolean).map((v) => [v, v]), state.version);
  const dates = listed.filter((d) => d.version === state.version).map((d) => d.date).sort();
  if (!dates.length) {
    const by = DATE_NAMES[state.kind].toLowerCase();
    throw new ApiError(404, "not_found", `No ${by}s of ${state.channel} ${state.version || ""} are published.`);
  }
  if (!dates.includes(state.from)) state.from = dates[0];
  if (!dates.includes(state.to)) state.to = dates.at(-1);
  if (state.from > state.to) [state.from, state.to] = [state.to, state.from];
  const dateOptions = dates.map((d) => [d, showDate(d)]);
  setOptions($("from"), dateOptions, state.from);
  setOptions($("to"), dateOptions, state.to);

  const options = await getJSON(filtersPath(state.channel, state.version));
  const metrics = options.metric ?? [];
  state.metric ||= metrics.includes("GC_MS") ? "GC_MS" : (metrics[0] ?? "");
  $("metric").value = state.metric;
  const list = $("metrics");
  if (list.dataset.for !== `${state.channel}/${state.version}`) {
    list.replaceChildren(...metrics.map((m) => new Option(m)));
    list.dataset.for = `${state.channel}/${state.version}`;
    $("metric-count").textContent = `(${metrics.length} listed)`;
  }
  showFilters(options);
  if (!state.metric) throw new ApiError(404, "not_found", "Choose a metric.");

  const range = datesBetween(dates, state.from, state.to);
  const asked = seriesOf(state).map(async (series) => {
    const url = metricPath(state.kind, state.channel, state.version, state.metric, range, series.filters, state.aggregation);
    const answer = await getJSON(url);
    if (!answer.data.length) throw new ApiError(404, "withheld", `No data: ${withheldText(answer)}`);
    return { ...series, url, answer };
  });
  const settled = await Promise.allSettled(asked);
  const found = settled.filter((s) => s.status === "fulfilled").map((s) => s.value);
  const failures = settled.filter((s) => s.status === "rejected").map((s) => s.reason);
  const serious = failures.find((f) => !(f instanceof ApiError) || f.status !== 404);
  if (serious || !found.length) throw serious ?? failures[0];
  const missing = seriesOf(state)
    .filter((s) => !found.some((f) => f.name === s.name))
    .map((s) => s.name);
  return { range, found, missing };
}

// ---- from the answers to the page -----------------------------------------------------------------------

function legend(id, items) {
  $(id).replaceChildren(
    ...items.map(({ classes, text, line }) => {
      const key = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      key.setAttribute("class", `key ${classes}`);
      key.setAttribute("viewBox", "0 0 28 12");
      key.setAttribute("aria-hidden", "true");
      const mark = document.createElementNS("http://www.w3.org/2000/svg", line ? "line" : "rect");
      const shape = line ? { x1: 0, x2: 28, y1: 6, y2: 6 } : { x: 6, y: 0, width: 16, height: 12 };
      for (const [k, v] of Object.entries(shape)) mark.setAttribute(k, v);
      key.append(mark);
      return element("li", {}, key, ` ${text}`);
    }),
  );
}

function table(id, caption, head, rows) {
  const headRow = element("tr", {}, ...head.map((h) => element("th", { scope: "col" }, h)));
  const body = rows.map(([first, ...rest]) =>
    element("tr", {}, element("th", { scope: "row" }, first), ...rest.map((cell) => element("td", {}, cell))),
  );
  $(id).replaceChildren(element("caption", {}, caption), element("thead", {}, headRow), element("tbody", {}, ...body));
}

function seriesText(s, total) {
  const values = state.aggregation === "clients" ? `${number.format(total.clients)} clients` : `${number.format(total.samples)} samples`;
  return `${s.name}: ${number.format(total.submissions)} submissions, ${values}`;
}

function showDistribution(shown, names) {
  const totals = shown.map((s) => summed(s.entries, names.length));
  const unit = UNITS[state.aggregation];
  const percent = state.scale === "percent";
  $("percent-of").textContent = unit.percent;
  const series = shown.map((s, i) => ({ name: s.name, values: percent ? percents(totals[i].counts) : totals[i].counts }));
  const format = percent ? (v) => `${number.format(v)}%` : (v) => number.format(v);
  const range = `${showDate(state.from)} to ${showDate(state.to)}`;
  legend(
    "distribution-legend",
    shown.map((s, i) => ({ classes: `series-${i % 6}`, text: seriesText(s, totals[i]) })),
  );
  $("distribution-chart").replaceChildren(
    barChart({
      categories: names,
      series,
      format,
      xTitle: "Bucket",
      yTitle: percent ? unit.percent : unit.values,
      label: `Distribution of ${state.metric} over ${range}: ${(percent ? unit.percent : unit.values).toLowerCase()} per bucket`,
    }),
  );
  const shares = totals.map((t) => percents(t.counts));
  table(
    "distribution-table",
    `${unit.values} per bucket, ${range}`,
    ["Bucket", ...shown.flatMap((s) => [`${s.name} ${unit.values.toLowerCase()}`, `${s.name} %`])],
    names.map((name, b) => [
      name,
      ...totals.flatMap((t, i) => [number.format(t.counts[b]), `${shares[i][b].toFixed(2)}%`]),
    ]),
  );
}

function showEvolution(shown, range) {
  const dates = range.map(showDate);
  const byDate = shown.map((s) => new Map(s.entries.map((e) => [e.date, e])));
  const stats = state.stats.filter((stat) => shown.some((s) => s.entries.some((e) => statistic(e, stat) !== null)));
  const lines = shown.flatMap((s, i) =>
    stats.map((stat) => ({
      name: `${s.name} ${STAT_NAMES[stat]}`,
      series: i,
      stat,
      values: range.map((d) => (byDate[i].has(d) ? statistic(byDate[i].get(d), stat) : null)),
    })),
  );
  const what = DATE_NAMES[state.kind];
  const chart = $("evolution-chart");
  if (lines.length) {
    chart.replaceChildren(
      lineChart({
        dates,
        lines,
        format: (v) => compact.format(v),
        xTitle: what,
        yTitle: "Value",
        label: `Evolution of ${state.metric}: ${stats.map((s) => STAT_NAMES[s]).join(", ")} per ${what.toLowerCase()}`,
      }),
    );
  } else {
    const why = state.stats.length
      ? `No mean or percentiles for ${shown[0].answer.kind} histograms: submissions are shown below.`
      : "Check a statistic to chart it.";
    chart.replaceChildren(element("p", { class: "empty" }, why));
  }
  // below: submissions per date, or per client the distinct clients
  const [counted, count] = state.aggregation === "clients" ? ["Clients", (e) => e.clients] : ["Submissions", (e) => e.count];
  $("submissions-chart").replaceChildren(
    lineChart({
      dates,
      lines: shown.map((s, i) => ({
        name: `${s.name} ${counted.toLowerCase()}`,
        series: i,
        stat: "submissions",
        values: range.map((d) => (byDate[i].has(d) ? count(byDate[i].get(d)) : null)),
      })),
      format: (v) => compact.format(v),
      xTitle: what,
      yTitle: counted,
      label: `${counted} of ${state.metric} per ${what.toLowerCase()}`,
      height: 260,
    }),
  );
  legend("evolution-legend", [
    ...shown.map((s, i) => ({ classes: `series-${i % 6}`, text: s.name })),
    ...stats.map((stat) => ({ classes: `stat-${stat}`, text: STAT_NAMES[stat], line: true })),
  ]);
  const rows = [];
  range.forEach((d, n) => {
    shown.forEach((s, i) => {
      const e = byDate[i].get(d);
      if (!e) return;
      const samples = e.histogram.reduce((a, b) => a + b, 0);
      const values = stats.map((stat) => statistic(e, stat));
      const weight = state.aggregation === "clients" ? e.clients : samples;
      rows.push([dates[n], s.name, number.format(e.count), number.format(weight), ...values.map((v) => number.format(v))]);
    });
  });
  table(
    "evolution-table",
    `Per ${what.toLowerCase()}`,
    [what, "Series", "Submissions", UNITS[state.aggregation].values, ...stats.map(statisticName)],
    rows,
  );
}

function setDownload(id, name, text, type) {
  const link = $(id);
  if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
}

function render({ range, found, missing }) {
  const answers = found.map((f) => f.answer);
  const labels = labelsOf(answers);
  const keyed = labels.some((l) => l !== "");
  if (!labels.includes(state.label)) state.label = labels[0];
  $("label-field").hidden = !keyed;
  setOptions($("label"), labels.map((l) => [l, l]), state.label);
  const names = bucketNames(answers);
  const shown = found.map((f) => ({ ...f, entries: entriesOf(f.answer, state.label) }));

  $("title").textContent = keyed ? `${state.metric}, key ${state.label}` : state.metric;
  $("description").textContent = answers[0].description;
  const summary = {
    "Histogram kind": answers[0].kind,
    "Aggregated by": DATE_NAMES[state.kind].toLowerCase(),
    Dates: `${range.length}: ${showDate(state.from)} to ${showDate(state.to)}`,
    Channel: `${state.channel} ${state.version}`,
    Aggregation: UNITS[state.aggregation].weighing,
  };
  $("summary").replaceChildren(
    ...Object.entries(summary).map(([term, value]) => element("div", {}, element("dt", {}, term), element("dd", {}, value))),
  );
  const notes = missing.map((name) => `No data for ${name}.`);
  for (const f of found) {
    const withheld = withheldText(f.answer);
    if (withheld) notes.push(found.length > 1 ? `${f.name}: ${withheld}` : withheld);
  }
  if (state.compare && state.filters[state.compare].length < 2) {
    notes.push(`Check two or more values of ${FILTER_NAMES[state.compare]} to compare them.`);
  }
  $("notes").textContent = notes.join(" ");

  showDistribution(shown, names);
  showEvolution(shown, range);
  const distribution = state.view === "distribution";
  $("distribution").hidden = !distribution;
  $("scale-field").hidden = !distribution;
  $("evolution").hidden = distribution;
  $("stats-field").hidden = distribution;
  const base = state.metric.replace(/[^A-Za-z0-9_.-]+/g, "_");
  const csv = distribution ? distributionCsv(shown, names) : evolutionCsv(shown);
  setDownload("download-csv", `${base}-${state.view}.csv`, csv, "text/csv");
  setDownload("download-json", `${base}.json`, shownJson(state, shown), "application/json");
  $("shown").hidden = false;
  const dateCount = `${range.length} date${range.length === 1 ? "" : "s"}`;
  setStatus("ready", `Showing ${state.metric}: ${dateCount}, ${shown.length} series.`);
}

// ---- updates --------------------------------------------------------------------------------------------

async function update(push) {
  const mine = ++generation;
  const current = state;
  showState();
  setStatus("loading", `Loading ${current.metric || "the lists"}…`);
  document.querySelector(".results").setAttribute("aria-busy", "true");
  try {
    const view = await load(current);
    if (mine === generation) render(view);
  } catch (failure) {
    if (mine !== generation) return;
    const { state: kind, text } = explain(failure);
    $("shown").hidden = true;
    $("title").textContent = current.metric || "Explorer";
    $("description").textContent = "";
    setStatus(kind, text);
  } finally {
    if (mine === generation) {
      document.querySelector(".results").setAttribute("aria-busy", "false");
      history[push ? "pushState" : "replaceState"](null, "", stateQuery(current));
    }
  }
}

document.addEventListener("change", (event) => {
  const { name, value } = event.target;
  if (name === "token") {
    setToken(value);
  } else if (FILTERS.includes(name)) {
    const checked = [...document.querySelectorAll(`input[name=${name}]:checked`)].map((box) => box.value);
    state.filters[name] = checked.sort(byValue);
  } else if (name === "stats") {
    state.stats = STATISTICS.filter((s) => document.querySelector(`input[name=stats][value="${s}"]`).checked);
  } else if (typeof state[name] === "string") {
    if (state[name] === value.trim()) return; // e.g. Enter after a name was picked from the list
    state[name] = value.trim();
  } else {
    return;
  }
  for (const key of RESETS[name] ?? []) state[key] = "";
  update(name !== "token");
});

// A name picked from the metric list is shown at once, without waiting for Enter or leaving the field.
$("metric").addEventListener("input", (event) => {
  const name = event.target.value.trim();
  const listed = [...$("metrics").options].some((option) => option.value === name);
  if (listed && name !== state.metric) event.target.dispatchEvent(new Event("change", { bubbles: true }));
});

$("controls").addEventListener("submit", (event) => event.preventDefault());

$("clear").addEventListener("click", () => {
  state.filters = Object.fromEntries(FILTERS.map((key) => [key, []]));
  state.compare = "";
  update(true);
});

window.addEventListener("popstate", () => {
  state = parseState(location.search);
  update(false);
});

update(false);
