// HTTP to the tickcast API: the page's settings (ui-config), the API key, JSON calls with
// the server's error message surfaced as-is (it says what to do).

const KEY_STORE = "tickcast.apiKey";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body || {};
  }
}

export const api = {
  config: null,
  onAuthProblem: () => {},

  key() {
    return localStorage.getItem(KEY_STORE) || (this.config && this.config.api_key) || "";
  },
  setKey(value) {
    if (value) localStorage.setItem(KEY_STORE, value);
    else localStorage.removeItem(KEY_STORE);
  },
  needsKey() {
    return Boolean(this.config && this.config.auth_required && !this.key());
  },

  async loadConfig() {
    this.config = await this.get("/api/ui-config");
    return this.config;
  },

  url(path, params) {
    const u = new URL(path, window.location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
    }
    return u.toString();
  },

  async request(method, path, { params, body, timeoutMs = 15000 } = {}) {
    const headers = { Accept: "application/json" };
    const key = this.key();
    if (key) headers["X-API-Key"] = key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    let res;
    try {
      res = await fetch(this.url(path, params), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        signal: ctl.signal, cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(0, `network: ${err.name === "AbortError" ? "timeout" : err.message}`);
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    if (!res.ok) {
      const message = (data && data.error) || `${method} ${path}: HTTP ${res.status}`;
      // Ask for a key only if this request used the current one: a late 401 for a request
      // sent before the user entered a key must not reopen the dialog over the page.
      if ((res.status === 401 || res.status === 403) && key === this.key()) this.onAuthProblem(message);
      throw new ApiError(res.status, message, data);
    }
    return data;
  },

  get(path, params) { return this.request("GET", path, { params }); },
  post(path, body) { return this.request("POST", path, { body: body || {} }); },
};
