// Live updates: one EventSource per stream, reconnected by us (not the browser) with
// exponential backoff + jitter and `last_event_id`, so the server replays what was missed
// even when the process restarted. When SSE keeps failing (a proxy or firewall that blocks
// event streams: seed troubleshooting), the hub falls back to polling the REST endpoints
// and keeps trying SSE in the background; `transport = poll` forces polling.

const BASE_DELAY_MS = 1000;
const MAX_DELAY_MS = 10000;
const FAILURES_BEFORE_POLLING = 3;
const POLL_MS = 4000;

class Stream {
  constructor(hub, name, params, handlers) {
    this.hub = hub;
    this.name = name;
    this.params = params || {};
    this.handlers = handlers;
    this.lastId = null;
    this.es = null;
    this.timer = null;
    this.failures = 0; // consecutive failed attempts
    this.everOpened = false;
    this.open = false;
    this.reconnecting = false;
    this.nextAttemptAt = 0;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    const params = { ...this.params, api_key: this.hub.api.key() || undefined };
    if (this.lastId) params.last_event_id = this.lastId;
    const es = new EventSource(this.hub.api.url(`/stream/${this.name}`, params));
    this.es = es;
    es.onopen = () => {
      const recovered = this.failures > 0 || this.reconnecting;
      this.open = true;
      this.failures = 0;
      this.reconnecting = false;
      if (recovered) this.hub.reconnects += 1;
      this.everOpened = true;
      this.hub.changed();
      if (recovered && this.handlers.reconnected) this.handlers.reconnected();
    };
    es.addEventListener(this.name, (ev) => this.deliver(ev));
    // `resync`: our id was unknown to the server (ahead of it) or too much was missed. The
    // event's id is where the stream restarts: resume from there, reload state from REST.
    es.addEventListener("resync", (ev) => {
      if (ev.lastEventId) this.lastId = ev.lastEventId;
      if (this.handlers.resync) this.handlers.resync();
    });
    es.onerror = () => {
      // Our own reconnect (not the browser's): it carries last_event_id and backs off.
      es.close();
      if (this.es !== es) return;
      this.es = null;
      const wasOpen = this.open;
      this.open = false;
      this.reconnecting = true;
      this.failures = wasOpen ? 1 : this.failures + 1;
      this.schedule();
      this.hub.changed();
    };
  }

  deliver(ev) {
    if (ev.lastEventId) this.lastId = ev.lastEventId;
    let data;
    try { data = JSON.parse(ev.data); } catch { return; }
    this.hub.lastMessageAt = Date.now();
    this.handlers.message(data, ev.lastEventId);
  }

  schedule() {
    clearTimeout(this.timer);
    const exp = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** Math.max(0, this.failures - 1));
    const delay = Math.round(exp * (0.75 + Math.random() * 0.25));
    this.nextAttemptAt = Date.now() + delay;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
    this.es = null;
    this.open = false;
  }
}

export class LiveHub {
  constructor(api, onState) {
    this.api = api;
    this.onState = onState;
    this.streams = new Map();
    this.pollers = new Set();
    this.transport = localStorage.getItem("tickcast.transport") || "auto";
    this.reconnects = 0;
    this.lastMessageAt = 0;
    this.pollTimer = null;
    this.pollOk = true;
    this.state = "connecting";
    this.ticker = setInterval(() => this.changed(), 1000);
  }

  /** Open (or replace) stream `key`; handlers: {message(data, id), resync(), reconnected()}. */
  open(key, name, params, handlers, { lastId = null } = {}) {
    this.close(key);
    const stream = new Stream(this, name, params, handlers);
    stream.lastId = lastId;
    this.streams.set(key, stream);
    if (this.transport !== "poll") stream.start();
    this.changed();
    return () => this.close(key);
  }

  close(key) {
    const s = this.streams.get(key);
    if (s) s.stop();
    this.streams.delete(key);
  }

  addPoller(fn) {
    this.pollers.add(fn);
    return () => this.pollers.delete(fn);
  }

  setTransport(value) {
    this.transport = value;
    localStorage.setItem("tickcast.transport", value);
    for (const s of this.streams.values()) {
      s.stop();
      s.failures = 0;
      if (value !== "poll") s.start();
    }
    this.changed();
  }

  polling() {
    if (this.transport === "poll") return true;
    if (this.transport === "sse") return false;
    return [...this.streams.values()].some((s) => !s.open && s.failures >= FAILURES_BEFORE_POLLING);
  }

  async pollOnce() {
    const results = await Promise.allSettled([...this.pollers].map((fn) => fn()));
    this.pollOk = results.every((r) => r.status === "fulfilled" || (r.reason && r.reason.status > 0));
    this.changed();
  }

  changed() {
    const polling = this.polling();
    if (polling && !this.pollTimer) {
      this.pollTimer = setInterval(() => this.pollOnce(), POLL_MS);
      this.pollOnce();
    } else if (!polling && this.pollTimer) {
      clearInterval(this.pollTimer);
      this.pollTimer = null;
      this.pollOk = true;
    }
    const streams = [...this.streams.values()];
    let state;
    if (polling) state = this.pollOk ? "polling" : "offline";
    else if (streams.length && streams.every((s) => s.open)) state = "live";
    else if (streams.some((s) => s.failures > 0)) state = "reconnecting";
    else state = "connecting";
    const waiting = streams.filter((s) => !s.open && s.nextAttemptAt > Date.now());
    const retryInMs = waiting.length ? Math.min(...waiting.map((s) => s.nextAttemptAt)) - Date.now() : 0;
    this.state = state;
    this.onState({ state, retryInMs, transport: this.transport, reconnects: this.reconnects });
  }
}
