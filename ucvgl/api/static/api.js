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
  const headers = authHeaders(auth);
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  const response = await send(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) {
    return null;
  }
  return response.json();
}

/** Request headers: JSON accepted, and the token when `auth` and one is set. */
function authHeaders(auth) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (auth && token) {
    headers.Authorization = `Bearer ${token}`;
  }
  return headers;
}

/** fetch() that turns network failures and non-2xx answers into ApiErrors. */
async function send(url, init) {
  let response;
  try {
    response = await fetch(url, { cache: "no-store", credentials: "same-origin", ...init });
  } catch {
    throw new ApiError(0, "cannot reach the server; retrying");
  }
  if (!response.ok) {
    const { detail, problem } = await problemOf(response);
    throw new ApiError(response.status, detail, problem);
  }
  return response;
}

/**
 * POST a multipart form (e.g. files for /query) and return the JSON answer.
 * @param {string} base API prefix.
 * @param {string} path path below the prefix.
 * @param {FormData} form the fields; the browser sets the multipart boundary.
 */
export async function apiForm(base, path, form, { auth = true } = {}) {
  const response = await send(base + path, {
    method: "POST",
    headers: authHeaders(auth),
    body: form,
  });
  return response.json();
}

/**
 * GET a file of the API (an image) as a Blob, with the token when one is set (an <img src>
 * could not send it).
 * @param {string} url absolute path, e.g. "/api/v1/indexes/1/tile?satellite_id=s1".
 */
export async function apiBlob(url, { auth = true } = {}) {
  const headers = authHeaders(auth);
  headers.Accept = "image/*";
  const response = await send(url, { headers });
  return response.blob();
}
