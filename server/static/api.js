// Calls to this service's API: the same routes and parameters as every other client (README, "The API").
// Answers are kept per URL for the page's lifetime, so switching views or scales asks for nothing again.

const KEPT = 64; // answers kept; keyed metrics can be megabytes
const answers = new Map();
let token = "";

/** A non-2xx answer (its JSON `code` and `description`), or status 0 when the service could not be reached. */
export class ApiError extends Error {
  constructor(status, code, description) {
    super(description);
    this.status = status;
    this.code = code;
  }
}

/** Send this bearer token from now on (the answers kept so far were for another caller). */
export function setToken(value) {
  token = value.trim();
  answers.clear();
}

/** The JSON answer of a GET, once per URL (failures are not kept, so a retry asks again). */
export function getJSON(path) {
  if (!answers.has(path)) {
    const answer = request(path);
    answers.set(path, answer);
    answer.catch(() => answers.delete(path));
    if (answers.size > KEPT) answers.delete(answers.keys().next().value);
  }
  return answers.get(path);
}

async function request(path) {
  let response;
  try {
    response = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  } catch {
    throw new ApiError(0, "network", "The service could not be reached.");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, body?.code ?? "error", body?.description ?? response.statusText);
  }
  if (body === null) throw new ApiError(response.status, "not_json", "The answer was not JSON.");
  return body;
}

export const channelsPath = (kind) => `/aggregates_by/${kind}/channels/`;
export const datesPath = (kind, channel) => `/aggregates_by/${kind}/channels/${encodeURIComponent(channel)}/dates/`;
export const filtersPath = (channel, version) => `/filters/?${new URLSearchParams({ channel, version })}`;

/** The metric route for some dates and filters (a repeated key is OR), with the mean and percentiles; per client
 * when asked (per ping, the API's default, is not said). */
export function metricPath(kind, channel, version, metric, dates, filters, aggregation = "pings") {
  const query = new URLSearchParams([["version", version], ["dates", dates.join(",")], ["metric", metric]]);
  for (const [key, value] of filters) query.append(key, value);
  if (aggregation !== "pings") query.append("aggregation", aggregation);
  query.append("stats", "true");
  return `/aggregates_by/${kind}/channels/${encodeURIComponent(channel)}/?${query}`;
}

const sentence = (text) => (/[.!?]$/.test(text) ? text : `${text}.`);

/** What to tell the reader about a failure: the page's state and a few sentences. */
export function explain(error) {
  if (!(error instanceof ApiError)) {
    return { state: "error", text: `Something went wrong in the page: ${sentence(error.message)}` };
  }
  const said = sentence(error.message);
  if (error.status === 404) {
    const what = said.startsWith("No data") ? said : `No data: ${said}`;
    return { state: "nodata", text: `${what} Try fewer filters, other dates or another metric.` };
  }
  if (error.status === 403) {
    return {
      state: "forbidden",
      text:
        `Not allowed: ${said} The release channel and a few metrics are served only with a bearer token ` +
        "(scope read:aggregates): paste one under Access token.",
    };
  }
  if (error.status === 0) return { state: "error", text: `${said} Check the connection and try again.` };
  return { state: "error", text: `The service could not answer (${error.status}): ${said} Try again shortly.` };
}
