// The page's state, and its query string: everything a view depends on is here, so a copied link reproduces
// the view. Pure functions only (no DOM), so the rules are easy to read in one place.

export const KINDS = ["build_id", "submission_date"];
export const FILTERS = ["application", "architecture", "os", "osVersion", "child"];
export const STATISTICS = ["mean", "5", "25", "50", "75", "95"];
export const AGGREGATIONS = ["pings", "clients"]; // the API's `aggregation`: each ping, or each client, counts once
const VIEWS = ["distribution", "evolution"];
const SCALES = ["count", "percent"];
const TEXTS = ["channel", "version", "metric", "label", "from", "to"];
const DEFAULT_STATS = ["mean", "50"];

/** The order of a filter's values everywhere (checkboxes, series, links): numbers by value, "6.1" before "10.0". */
export const byValue = (a, b) => a.localeCompare(b, "en", { numeric: true });

/** The state a query string describes; unknown or malformed values fall back to the defaults. */
export function parseState(search) {
  const query = new URLSearchParams(search);
  const choice = (key, allowed, fallback) => (allowed.includes(query.get(key)) ? query.get(key) : fallback);
  const state = {
    view: choice("view", VIEWS, VIEWS[0]),
    kind: choice("kind", KINDS, "submission_date"),
    compare: choice("compare", FILTERS, ""),
    scale: choice("scale", SCALES, SCALES[0]),
    aggregation: choice("aggregation", AGGREGATIONS, AGGREGATIONS[0]),
    stats: query.has("stats") ? STATISTICS.filter((s) => query.get("stats").split(",").includes(s)) : DEFAULT_STATS,
    filters: Object.fromEntries(FILTERS.map((key) => [key, [...new Set(query.getAll(key))].sort(byValue)])),
  };
  for (const key of TEXTS) state[key] = (query.get(key) ?? "").trim();
  return state;
}

/** The query string of a state: fixed key order, empty values left out, a filter's values as repeated keys; the
 * aggregation only when it is not per ping, so links made before it existed are still the same. */
export function stateQuery(state) {
  const query = new URLSearchParams();
  for (const key of ["view", "kind", ...TEXTS, "compare", "scale"]) {
    if (state[key]) query.append(key, state[key]);
  }
  if (state.aggregation !== AGGREGATIONS[0]) query.append("aggregation", state.aggregation);
  query.append("stats", state.stats.join(","));
  for (const key of FILTERS) for (const value of state.filters[key]) query.append(key, value);
  return `?${query}`;
}

/** The series a state asks for: one, or one per checked value of the filter compared by (two or more). */
export function seriesOf(state) {
  const pairs = FILTERS.flatMap((key) => state.filters[key].map((value) => [key, value]));
  const split = state.compare && state.filters[state.compare].length > 1 ? state.filters[state.compare] : null;
  if (!split) return [{ name: describe(pairs), filters: pairs }];
  const others = pairs.filter(([key]) => key !== state.compare);
  return split.map((value) => ({ name: `${state.compare}=${value}`, filters: [...others, [state.compare, value]] }));
}

/** "os=Linux|Darwin child=parent", or "all" without filters. */
function describe(pairs) {
  const byKey = new Map();
  for (const [key, value] of pairs) byKey.set(key, [...(byKey.get(key) ?? []), value]);
  return [...byKey].map(([key, values]) => `${key}=${values.join("|")}`).join(" ") || "all";
}

/** The dates of the range [from, to] (YYYYMMDD strings compare as dates). */
export function datesBetween(dates, from, to) {
  return dates.filter((d) => d >= from && d <= to);
}
