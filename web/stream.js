// The stream client: Server-Sent Events read with fetch(), not EventSource, so that a 429
// or 503 and its Retry-After are visible, Last-Event-ID is ours to send, and a reconnect
// resumes exactly after the last complete event (no gap, no duplicate).

const WATCHDOG_MS = 90_000; // no byte (not even a heartbeat) for this long: reconnect
const MAX_BACKOFF_MS = 30_000;

/** Incremental SSE parser (the WHATWG rules); calls back once per complete event. */
export class SSEParser {
  constructor({ onEvent, onId, onRetry }) {
    this.onEvent = onEvent; // (type, dataLines, lastId, lineIds)
    this.onId = onId || (() => {}); // (lastId): an event without data moved the id
    this.onRetry = onRetry || (() => {});
    this.decoder = new TextDecoder("utf-8");
    this.rest = "";
    this.skipLF = false;
    this.reset();
    this.lastId = null;
    this.idBuf = null;
  }

  reset() {
    this.type = "";
    this.data = [];
    this.lineIds = null; // logtail's `line-ids:` field (streams opened with ids=1)
  }

  /** Feed raw bytes (a Uint8Array); pass `done` to flush the decoder. */
  feedBytes(bytes, done = false) {
    this.feed(this.decoder.decode(bytes, { stream: !done }));
  }

  feed(text) {
    if (this.skipLF && text[0] === "\n") text = text.slice(1);
    this.skipLF = text.endsWith("\r");
    if (text.indexOf("\r") !== -1) text = text.replace(/\r\n?/g, "\n");
    const buf = this.rest + text;
    let start = 0;
    for (let nl = buf.indexOf("\n"); nl !== -1; nl = buf.indexOf("\n", start)) {
      this.line(buf.slice(start, nl));
      start = nl + 1;
    }
    this.rest = buf.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    const c = line.indexOf(":");
    if (c === 0) return; // a comment (heartbeats, the opening line)
    const field = c === -1 ? line : line.slice(0, c);
    let value = c === -1 ? "" : line.slice(c + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "line-ids") this.lineIds = value;
    else if (field === "id") {
      if (value.indexOf("\0") === -1) this.idBuf = value;
    } else if (field === "retry" && /^\d+$/.test(value)) this.onRetry(Number(value));
  }

  dispatch() {
    const moved = this.idBuf !== null && this.idBuf !== this.lastId;
    if (this.idBuf !== null) this.lastId = this.idBuf;
    if (this.data.length === 0) {
      this.reset();
      if (moved) this.onId(this.lastId);
      return;
    }
    const type = this.type || "message";
    const data = this.data;
    const lineIds = this.lineIds;
    this.reset();
    this.onEvent(type, data, this.lastId, lineIds);
  }
}

export function parseRetryAfter(value) {
  if (!value) return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, when - Date.now());
}

export async function errorMessage(res) {
  try {
    const body = await res.json();
    if (body && typeof body.error === "string") return body.error;
  } catch {
    // not JSON: the status says enough
  }
  return `HTTP ${res.status}`;
}

/**
 * One followed stream (a file, or several merged). States passed to onState(state, info):
 *   connecting, live, reconnecting, resumed, limited, error.
 * info: {message, until (ms epoch of the next attempt), status, attempt}.
 */
export class LogStream {
  constructor({ url, lastId = null, onLines, onNotice, onState }) {
    this.url = url;
    this.lastId = lastId;
    // (lines, id, lineIds, file): lineIds is the `line-ids` field or null; file is the
    // batch's file on a merged stream, else null
    this.onLines = onLines;
    this.onNotice = onNotice; // (name, data)
    this.onState = onState;
    this.retryMs = 3000;
    this.stopped = false;
    this.controller = null;
    this.wake = null;
    this.connections = 0;
  }

  start() {
    this.run().catch((e) => this.onState("error", { message: String(e && e.message ? e.message : e) }));
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
    if (this.wake) this.wake();
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  backoff(failures) {
    const ms = Math.min(MAX_BACKOFF_MS, this.retryMs * 2 ** Math.max(0, failures - 1));
    return Math.round(ms * (0.9 + Math.random() * 0.2));
  }

  async waitAndRetry(state, ms, info) {
    this.onState(state, { ...info, until: Date.now() + ms });
    await this.sleep(ms);
  }

  async run() {
    let failures = 0;
    this.onState("connecting", {});
    while (!this.stopped) {
      const resuming = this.lastId !== null && this.connections > 0;
      let res;
      this.controller = new AbortController();
      try {
        const headers = { Accept: "text/event-stream" };
        if (this.lastId !== null) headers["Last-Event-ID"] = this.lastId;
        res = await fetch(this.url, {
          headers, credentials: "same-origin", cache: "no-store", signal: this.controller.signal,
        });
      } catch (e) {
        if (this.stopped) return;
        failures++;
        await this.waitAndRetry("reconnecting", this.backoff(failures),
          { message: "cannot reach the server", attempt: failures });
        continue;
      }
      const type = res.headers.get("content-type") || "";
      if (res.ok && type.startsWith("text/event-stream")) {
        failures = 0;
        this.connections++;
        this.onState(resuming ? "resumed" : "live", {});
        const why = await this.read(res);
        if (this.stopped) return;
        await this.waitAndRetry("reconnecting", this.retryMs, { message: why });
        continue;
      }
      const message = await errorMessage(res);
      if (res.status === 429 || res.status === 503) {
        const wait = parseRetryAfter(res.headers.get("retry-after")) ?? this.backoff(++failures);
        await this.waitAndRetry("limited", Math.max(1000, wait), { message, status: res.status });
      } else if (res.status >= 500 || (res.ok && !type.startsWith("text/event-stream"))) {
        failures++;
        await this.waitAndRetry("reconnecting", this.backoff(failures),
          { message, status: res.status, attempt: failures });
      } else {
        this.onState("error", { message, status: res.status });
        return;
      }
    }
  }

  /** Read one response to its end; returns why it ended. */
  async read(res) {
    const parser = new SSEParser({
      onEvent: (type, data, id, lineIds) => {
        if (id !== null) this.lastId = id;
        if (type === "message") this.onLines(data, id, lineIds, null);
        else if (type === "lines") {
          // a merged stream (api/stream): one file's batch, {"file", "lines"}, as JSON
          let batch = null;
          try {
            batch = JSON.parse(data.join("\n"));
          } catch {
            batch = null;
          }
          if (batch && Array.isArray(batch.lines) && typeof batch.file === "string") {
            this.onLines(batch.lines, id, lineIds, batch.file);
          }
        } else {
          let payload = {};
          try {
            payload = JSON.parse(data.join("\n"));
          } catch {
            payload = { text: data.join("\n") };
          }
          this.onNotice(type, payload);
        }
      },
      onId: (id) => {
        this.lastId = id;
      },
      onRetry: (ms) => {
        this.retryMs = Math.max(250, Math.min(ms, MAX_BACKOFF_MS));
      },
    });
    parser.lastId = this.lastId;
    const reader = res.body.getReader();
    let watchdog = setTimeout(() => this.controller.abort(), WATCHDOG_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        clearTimeout(watchdog);
        if (done) return "the server ended the stream";
        watchdog = setTimeout(() => this.controller.abort(), WATCHDOG_MS);
        parser.feedBytes(value);
      }
    } catch (e) {
      return this.stopped ? "stopped" : "the connection broke";
    } finally {
      clearTimeout(watchdog);
    }
  }
}
