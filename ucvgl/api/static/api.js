// The JSON API client of the dashboard: bearer token from sessionStorage, problem+json errors.

const TOKEN_KEY = "ucvgl.apiToken";

/** An API failure carrying the problem document's `detail` (or a network explanation). */
export class ApiError extends Error {
  constructor(status, detail, problem = null) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
  }
}

/** The token saved for this browser tab, or "" when none. */
export function getToken() {
  try {
    return window.sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

/** Save (non-empty) or forget (empty) the token for this browser tab. */
export function setToken(token) {
  try {
    if (token) {
      window.sessionStorage.setItem(TOKEN_KEY, token);
    } else {
      window.sessionStorage.removeItem(TOKEN_KEY);
    }
  } catch {
    // storage disabled: the token lives only as long as the page
  }
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      const body = await response.json();
      if (body && typeof body.detail === "string") {
        return { detail: body.detail, problem: body };
      }
    } catch {
      // fall through to the status text
    }
  }
  return { detail: `${response.status} ${response.statusText || "error"}`.trim(), problem: null };
}

/**
 * Call the API and return its JSON body.
 * @param {string} base API prefix, e.g. "/api/v1".
 * @param {string} path path below the prefix, e.g. "/jobs?limit=25".
 * @param {{method?: string, body?: object, auth?: boolean}} options auth: send the token.
 */
export async function apiRequest(base, path, { method = "GET", body, auth = true } = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (auth && token) {
    headers.Authorization = `Bearer ${token}`;
  }
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "cannot reach the server; retrying");
  }
  if (!response.ok) {
    const { detail, problem } = await problemOf(response);
    throw new ApiError(response.status, detail, problem);
  }
  if (response.status === 204) {
    return null;
  }
  return response.json();
}
