// The search panel: the whole history of the file on show (the file and its rotated,
// compressed generations), searched on the server (`api/files/{name}/search`, RE2). Matches
// stream in as they are found, with the bytes scanned and the generation being read; Stop
// aborts the request, which stops the scan on the server. A match opens in its context.

import { showControls, stripAnsi } from "./ansi.js";
import { compileFilter } from "./filter.js";
import { errorMessage, parseRetryAfter, SSEParser } from "./stream.js";

const PER_FRAME = 200; // results put on the page per animation frame
const SHOWN_CHARS = 400; // of a long line, in the list (the context view shows it whole)
const MAX_RETRIES = 5; // on 429/503, waiting for Retry-After each time
const fmt = new Intl.NumberFormat("en");

function plural(n, noun) {
  return `${fmt.format(n)} ${noun}${n === 1 ? "" : "s"}`;
}

export function formatBytes(n) {
  if (!(n >= 0)) return "?";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${fmt.format(n)} bytes` : `${n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${units[i]}`;
}

function isoFromLocal(value) {
  if (!value) return null;
  const t = new Date(value);
  return Number.isNaN(t.getTime()) ? null : t.toISOString().replace(/\.000Z$/, "Z");
}

function typingIn(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

/** `text` with what `marks` ([start, end] pairs) covers in <mark>, as DOM nodes. */
function marked(text, marks) {
  const frag = document.createDocumentFragment();
  let at = 0;
  for (const [s, e] of marks) {
    if (s < at || e > text.length) continue;
    if (s > at) frag.append(text.slice(at, s));
    const m = document.createElement("mark");
    m.textContent = text.slice(s, e);
    frag.append(m);
    at = e;
  }
  if (at < text.length) frag.append(text.slice(at));
  return frag;
}

export function installSearch({ root, view, openLine, announce }) {
  const $ = (id) => document.getElementById(id);
  const ui = {
    panel: $("search-panel"), toggle: $("search-toggle"), close: $("search-close"),
    form: $("search-form"), q: $("search-q"), regex: $("search-regex"), case: $("search-case"),
    invert: $("search-invert"), since: $("search-since"), until: $("search-until"),
    order: $("search-order"), go: $("search-go"), stop: $("search-stop"),
    bar: $("search-progress"), where: $("search-where"), summary: $("search-summary"),
    error: $("search-error"), results: $("search-results"), dialog: $("help-dialog"),
  };
  const flags = { regex: false, caseSensitive: false, invert: false };
  const FLAG_BUTTONS = { regex: ui.regex, caseSensitive: ui.case, invert: ui.invert };

  let run = null; // the search under way: {controller, matches, ...}
  let ids = []; // line id of each result, by index
  let pending = []; // results not on the page yet
  let frame = 0;
  let highlight = compileFilter({ q: "" });
  let active = null; // the result that has the tab stop (and was opened last)

  // -- the panel ----------------------------------------------------------------------------

  function open() {
    ui.panel.hidden = false;
    ui.toggle.setAttribute("aria-expanded", "true");
    if (!ui.q.value && view.q && !view.invert) {
      // start from the filter on show
      ui.q.value = view.q;
      setFlag("regex", view.regex);
      setFlag("caseSensitive", view.caseSensitive);
    }
    ui.q.focus();
    ui.q.select();
  }

  function close() {
    stop(false);
    ui.panel.hidden = true;
    ui.toggle.setAttribute("aria-expanded", "false");
    ui.toggle.focus();
  }

  function setFlag(prop, on) {
    flags[prop] = on;
    FLAG_BUTTONS[prop].setAttribute("aria-pressed", String(on));
  }

  function setError(text) {
    ui.error.hidden = !text;
    ui.error.textContent = text || "";
  }

  // -- results ------------------------------------------------------------------------------

  function clearResults() {
    cancelAnimationFrame(frame);
    frame = 0;
    ids = [];
    pending = [];
    active = null;
    ui.results.replaceChildren();
  }

  function addResult(id, text) {
    pending.push([id, text]);
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function flush() {
    frame = 0;
    const batch = pending.splice(0, PER_FRAME);
    const frag = document.createDocumentFragment();
    for (const [id, raw] of batch) {
      const line = showControls(stripAnsi(raw)); // as the log shows it
      const i = ids.length;
      ids.push(id);
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "hit";
      b.dataset.i = String(i);
      b.tabIndex = active === null && i === 0 ? 0 : -1;
      const text = line.length > SHOWN_CHARS ? line.slice(0, SHOWN_CHARS) : line;
      b.append(marked(text, highlight.ranges(text)));
      if (text !== line) b.append("…");
      li.append(b);
      frag.append(li);
    }
    ui.results.append(frag);
    if (pending.length) frame = requestAnimationFrame(flush);
  }

  function hitButtons() {
    return ui.results.querySelectorAll("button.hit");
  }

  /** Give result `b` the list's tab stop (arrow keys move it). */
  function makeActive(b, focus) {
    for (const other of ui.results.querySelectorAll('button.hit[tabindex="0"]')) {
      if (other !== b) other.tabIndex = -1;
    }
    b.tabIndex = 0;
    active = b;
    if (focus) b.focus();
  }

  function choose(b) {
    for (const other of ui.results.querySelectorAll('button.hit[aria-current="true"]')) {
      other.removeAttribute("aria-current");
    }
    b.setAttribute("aria-current", "true");
    makeActive(b, false);
    openLine(ids[Number(b.dataset.i)]);
  }

  // -- progress -----------------------------------------------------------------------------

  function showProgress(p) {
    const total = Math.max(p.total_bytes || 0, p.scanned_bytes || 0, 1);
    ui.bar.max = total;
    ui.bar.value = Math.min(p.scanned_bytes || 0, total);
    const where = p.source ? ` · ${p.source}` : "";
    ui.where.textContent = `${formatBytes(p.scanned_bytes)} of ${formatBytes(p.total_bytes)} scanned${where}`;
  }

  function summarize(r, how) {
    const found = `${fmt.format(r.matches)} ${r.matches === 1 ? "match" : "matches"}`;
    let text;
    if (how === "done") {
      text = `Done: ${found}`;
      if (r.done && r.done.limited) text += " (the server's scan limit was reached: narrow the time range)";
      else if (r.matches >= r.limit) text += ` (the first ${fmt.format(r.limit)}: narrow the search for more)`;
    } else if (how === "stopped") text = `Stopped: ${found}`;
    else text = `${how}: ${found}`;
    if (r.errors.length) text += `; ${plural(r.errors.length, "file")} could not be read (${r.errors.join(", ")})`;
    ui.summary.textContent = text;
    return text;
  }

  function setRunning(on) {
    ui.stop.disabled = !on;
    ui.go.disabled = on;
    ui.panel.setAttribute("aria-busy", String(on));
  }

  // -- the request --------------------------------------------------------------------------

  function searchUrl() {
    const p = new URLSearchParams();
    if (ui.q.value) p.set("q", ui.q.value);
    if (flags.regex) p.set("regex", "1");
    if (flags.caseSensitive) p.set("case", "1");
    if (flags.invert) p.set("invert", "1");
    const since = isoFromLocal(ui.since.value);
    const until = isoFromLocal(ui.until.value);
    if (since) p.set("since", since);
    if (until) p.set("until", until);
    p.set("order", ui.order.value);
    p.set("limit", "1000");
    return new URL(`api/files/${encodeURIComponent(view.file)}/search?${p}`, root).href;
  }

  async function start() {
    stop(false);
    setError("");
    clearResults();
    if (!view.file) {
      if (view.files.length > 1) {
        setError("The history is searched one file at a time: choose one file to search it");
      }
      return;
    }
    highlight = flags.invert ? compileFilter({ q: "" }) :
      compileFilter({ q: ui.q.value, regex: flags.regex, caseSensitive: flags.caseSensitive });
    if (highlight.error) highlight = compileFilter({ q: "" }); // RE2 syntax JavaScript lacks
    const r = { controller: new AbortController(), matches: 0, errors: [], done: null, limit: 1000 };
    run = r;
    setRunning(true);
    ui.bar.removeAttribute("value"); // indeterminate until the first progress event
    ui.where.textContent = "";
    ui.summary.textContent = "Searching…";
    announce(`Searching the history of ${view.file}`);
    const url = searchUrl();
    try {
      for (let attempt = 1; ; attempt++) {
        const res = await fetch(url, { credentials: "same-origin", cache: "no-store",
          headers: { Accept: "text/event-stream" }, signal: r.controller.signal });
        if (res.ok) {
          await read(r, res);
          break;
        }
        const message = await errorMessage(res);
        if ((res.status === 429 || res.status === 503) && attempt < MAX_RETRIES) {
          const wait = Math.max(1000, parseRetryAfter(res.headers.get("retry-after")) ?? 2000 * attempt);
          ui.summary.textContent = `The server is busy (${message}); trying again in ${Math.ceil(wait / 1000)} s`;
          await new Promise((resolve, reject) => {
            const timer = setTimeout(resolve, wait);
            r.controller.signal.addEventListener("abort", () => {
              clearTimeout(timer);
              reject(new DOMException("stopped", "AbortError"));
            }, { once: true });
          });
          continue;
        }
        setError(res.status === 400 || res.status === 422 ? message : `Search failed: ${message}`);
        ui.summary.textContent = "";
        announce(ui.error.textContent);
        break;
      }
    } catch {
      if (run === r && !r.controller.signal.aborted) {
        setError("Search failed: the connection broke");
        summarize(r, "Interrupted");
      }
    } finally {
      if (run === r) {
        run = null;
        setRunning(false);
      }
    }
  }

  async function read(r, res) {
    const parser = new SSEParser({
      onEvent: (type, data, id) => {
        if (run !== r) return;
        if (type === "match") {
          r.matches++;
          addResult(id, data.join("\n"));
          if (r.matches === 1) ui.summary.textContent = "Searching… 1 match";
          else if (r.matches % 50 === 0) ui.summary.textContent = `Searching… ${fmt.format(r.matches)} matches`;
          return;
        }
        let payload = {};
        try {
          payload = JSON.parse(data.join("\n"));
        } catch {
          return;
        }
        if (type === "progress") showProgress(payload);
        else if (type === "source_error") r.errors.push(payload.source || "?");
        else if (type === "done") {
          r.done = payload;
          if (r.matches === 0) ui.bar.value = ui.bar.max; // nothing found: show it complete
          announce(summarize(r, "done"));
        }
      },
    });
    const reader = res.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feedBytes(value);
    }
    parser.feedBytes(new Uint8Array(0), true);
    if (!r.done && run === r) {
      setError("The search ended before it was done (the connection was closed)");
      summarize(r, "Interrupted");
    }
  }

  /** Stop the search under way (abort its request: the server stops scanning). */
  function stop(say = true) {
    const r = run;
    if (!r) return;
    run = null;
    r.controller.abort();
    setRunning(false);
    const text = summarize(r, "stopped");
    if (say) announce(text);
  }

  // -- wiring -------------------------------------------------------------------------------

  ui.toggle.addEventListener("click", () => (ui.panel.hidden ? open() : close()));
  ui.close.addEventListener("click", close);
  ui.form.addEventListener("submit", (e) => {
    e.preventDefault();
    start();
  });
  ui.stop.addEventListener("click", () => {
    stop(true);
    ui.go.focus();
  });
  for (const [prop, b] of Object.entries(FLAG_BUTTONS)) {
    b.addEventListener("click", () => setFlag(prop, !flags[prop]));
  }
  ui.results.addEventListener("click", (e) => {
    const b = e.target instanceof Element ? e.target.closest("button.hit") : null;
    if (b) choose(b);
  });
  ui.results.addEventListener("keydown", (e) => {
    const b = e.target instanceof Element ? e.target.closest("button.hit") : null;
    if (!b) return;
    const all = hitButtons();
    const i = Number(b.dataset.i);
    const to = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: all.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    const next = all[Math.max(0, Math.min(all.length - 1, to))];
    if (next) makeActive(next, true);
  });
  ui.panel.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !e.defaultPrevented) {
      e.preventDefault();
      close();
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "s" || e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    if (typingIn(e.target) || ui.dialog.open) return;
    e.preventDefault();
    open();
  });
  // another file: its history is another one
  $("file").addEventListener("change", () => {
    stop(false);
    clearResults();
    ui.summary.textContent = "";
    ui.where.textContent = "";
    ui.bar.value = 0;
  });
}
