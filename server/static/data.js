// From the API's answers to what the page shows: a distribution summed over dates, the evolution per date, and
// the CSV and JSON downloads. Pure functions of the answers (no DOM), the numbers the charts and tables share.

import { STATISTICS } from "./state.js";

/** A series' entries of one label, oldest date first. */
export function entriesOf(answer, label) {
  return answer.data.filter((e) => e.label === label).sort((a, b) => a.date.localeCompare(b.date));
}

/** The labels of the answers, most submissions first ("" alone for a metric without keys). */
export function labelsOf(answers) {
  const submissions = new Map();
  for (const answer of answers) {
    for (const e of answer.data) submissions.set(e.label, (submissions.get(e.label) ?? 0) + e.count);
  }
  return [...submissions].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([label]) => label);
}

/** One name per histogram value. Flag histograms have three values over two bucket labels (as the original
 * served them): a value past the last label is named by continuing the labels' step. */
export function bucketNames(answers) {
  const buckets = answers[0].buckets;
  const width = Math.max(buckets.length, ...answers.flatMap((a) => a.data.map((e) => e.histogram.length)));
  const names = buckets.map(String);
  const numeric = buckets.length > 1 && buckets.every((b) => typeof b === "number");
  for (let i = names.length; i < width; i++) {
    names.push(numeric ? String(buckets.at(-1) + (i - buckets.length + 1) * (buckets.at(-1) - buckets.at(-2))) : `#${i}`);
  }
  return names;
}

/** The histogram summed over entries (bucket by bucket), with its submissions, samples and (client-level
 * answers) clients. */
export function summed(entries, width) {
  const counts = new Array(width).fill(0);
  let submissions = 0;
  let clients = 0;
  for (const e of entries) {
    e.histogram.forEach((value, i) => (counts[i] += value));
    submissions += e.count;
    clients += e.clients ?? 0;
  }
  return { counts, submissions, clients, samples: counts.reduce((a, b) => a + b, 0) };
}

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

/** What a client-level answer withheld, in a sentence ("" when nothing). */
export function withheldText(answer) {
  if (!answer.withheld) return "";
  const entries = plural(answer.withheld, "entry", "entries");
  return `${entries} withheld: fewer than ${plural(answer.min_clients, "client", "clients")} each.`;
}

export function percents(counts) {
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((c) => (total ? (100 * c) / total : 0));
}

/** A statistic of an entry: its mean or one of its percentiles (null where the kind has none). */
export function statistic(entry, name) {
  return name === "mean" ? entry.mean : (entry.percentiles?.[name] ?? null);
}

export const statisticName = (name) => (name === "mean" ? "mean" : `p${name}`);

/** A text cell a spreadsheet would run as a formula (it begins with =, +, -, @, a tab or a carriage return),
 * unless it is a plain number: such a cell gets a leading quote, which spreadsheets show as text. */
const FORMULA = /^[=+\-@\t\r]/;
const NUMBER = /^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$/;

/** CSV as RFC 4180: CRLF ends every row, a cell holding a comma, a quote, a CR or a LF is quoted (its quotes
 * doubled), and dimension values that would run as formulas are neutralised. */
function csv(rows) {
  const cell = (v) => {
    let text = v === null || v === undefined ? "" : String(v);
    if (FORMULA.test(text) && !NUMBER.test(text)) text = `'${text}`;
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  return `${rows.map((row) => row.map(cell).join(",")).join("\r\n")}\r\n`;
}

/** The distribution as CSV: a row per series and bucket. `shown` is [{name, entries}]. */
export function distributionCsv(shown, names) {
  const rows = [["series", "bucket", "count", "percent"]];
  for (const { name, entries } of shown) {
    const { counts } = summed(entries, names.length);
    const shares = percents(counts);
    counts.forEach((count, i) => rows.push([name, names[i], count, shares[i].toFixed(4)]));
  }
  return csv(rows);
}

/** The evolution as CSV: a row per series and date, every statistic the API gives, and the clients of a
 * client-level answer last. */
export function evolutionCsv(shown) {
  const byClients = shown.some(({ entries }) => entries.some((e) => "clients" in e));
  const more = byClients ? ["clients"] : [];
  const rows = [["series", "date", "submissions", "samples", "sum", ...STATISTICS.map(statisticName), ...more]];
  for (const { name, entries } of shown) {
    for (const e of entries) {
      const samples = e.histogram.reduce((a, b) => a + b, 0);
      const clients = byClients ? [e.clients] : [];
      rows.push([name, e.date, e.count, samples, e.sum, ...STATISTICS.map((s) => statistic(e, s)), ...clients]);
    }
  }
  return csv(rows);
}

/** The JSON download: the query, and per series the API URL asked and the answer's entries shown. */
export function shownJson(state, shown) {
  const { kind, channel, version, metric, label, from, to } = state;
  const series = shown.map(({ name, url, answer, entries }) => ({
    name,
    url,
    buckets: answer.buckets,
    kind: answer.kind,
    description: answer.description,
    data: entries,
  }));
  return `${JSON.stringify({ kind, channel, version, metric, label, from, to, series }, null, 1)}\n`;
}
