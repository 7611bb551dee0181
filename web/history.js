// The log beyond the lines the page holds: earlier lines (scroll to the top, or "Load
// earlier"), a permalinked line shown in its context (`#file=…&line=<id>`), and the stream
// reopened at a time (`since`). Lines come from `api/files/{name}/lines` by line id, so
// paging goes on through rotated and compressed generations until the start of history.

import { KIND_LINE } from "./buffer.js";
import { compileFilter } from "./filter.js";
import { splitId } from "./lineids.js";
import { installLinks } from "./permalink.js";
import { installSearch } from "./search.js";
import { errorMessage, parseRetryAfter } from "./stream.js";

const PAGE = 200; // lines per "load earlier" / "load later"
const CONTEXT = 100; // lines each side of a permalinked line
const EDGE_ROWS = 2; // this close to the top (or bottom) loads more by itself
const BUSY_TRIES = 3; // a lookup refused as busy (429/503) is tried this often, after Retry-After
const QUICK = { "15m": "15 minutes", "1h": "1 hour", "1d": "1 day" };
const fmt = new Intl.NumberFormat("en");

function plural(n, noun) {
  return `${fmt.format(n)} ${noun}${n === 1 ? "" : "s"}`;
}

/** An ISO 8601 time in UTC from a datetime-local value (the browser's local time). */
function isoFromLocal(value) {
  const t = new Date(value);
  if (Number.isNaN(t.getTime())) return null;
  return t.toISOString().replace(/\.000Z$/, "Z");
}

/** How a `since` value reads: "the last 15 minutes", or "from <the time>". */
export function describeSince(since) {
  const m = /^(\d+)([smhd])$/.exec(since);
  if (m) {
    const unit = { s: "second", m: "minute", h: "hour", d: "day" }[m[2]];
    return Number(m[1]) === 1 ? `the last ${unit}` : `the last ${plural(Number(m[1]), unit)}`;
  }
  const t = new Date(since);
  return `from ${Number.isNaN(t.getTime()) ? since : t.toLocaleString()}`;
}

/**
 * Wire the history features to the viewer. `view` is the address state (file, line,
 * since, filter); `connect()` applies it (the app's); `writeAddress()` writes it.
 * Returns {beforeStream}: the app calls it when it (re)connects; true means "a permalink:
 * no stream now".
 */
export function installHistory({ root, model, list, view, connect, writeAddress, announce,
  setConnState }) {
  const $ = (id) => document.getElementById(id);
  const ui = {
    earlier: $("load-earlier"), later: $("load-later"), status: $("history-status"),
    banner: $("place-banner"), bannerText: $("place-text"), back: $("back-live"),
    copyTarget: $("copy-target"), jumpForm: $("jump-form"), jumpTime: $("jump-time"),
    viewport: $("viewport"), file: $("file"),
  };

  let epoch = 0; // bumped at every (re)connect: answers for an older view are dropped
  let busy = false;
  let startSeq = null; // the oldest entry when the start of history was reached
  let endReached = false; // a permalink's context reached the end of the file
  let stalled = false; // an automatic load failed: wait for the button
  let targetId = null; // the permalinked line on show
  // where the last page of earlier lines began, and the oldest entry after it: with the
  // server filter on, lines that do not match are not kept, so the next page starts there
  let cursor = null; // {seq, id}

  const links = installLinks({ model, list, view, announce });
  installSearch({ root, view, announce, openLine: (id) => go({ line: id, since: null }) });

  /** Change where the view is (a line, a time, or live) and reconnect. */
  function go(changes) {
    Object.assign(view, changes);
    writeAddress();
    connect();
  }

  function setStatus(text) {
    if (ui.status.textContent !== text) ui.status.textContent = text;
  }

  function atStart() {
    return startSeq !== null && model.ring.head === startSeq;
  }

  function updateButtons() {
    const start = atStart();
    ui.earlier.disabled = busy || start || !view.file;
    ui.earlier.textContent = start ? "Start of history" : "↑ Load earlier";
    ui.earlier.title = view.files.length > 1 ?
      "Earlier lines load for one file at a time: choose one file to load its earlier lines" :
      "Load the lines before the oldest one here (or scroll to the top)";
    ui.later.hidden = !view.line || endReached || targetId === null;
    ui.later.disabled = busy;
  }

  /** The oldest (or newest) retained log line: {seq, id}, or null. */
  function edgeLine(newest) {
    const { ring } = model;
    if (newest) {
      for (let seq = ring.tail - 1; seq >= ring.head; seq--) {
        if (!ring.isNotice(seq)) return { seq, id: ring.lineId(seq) };
      }
    } else {
      for (let seq = ring.head; seq < ring.tail; seq++) {
        if (!ring.isNotice(seq)) return { seq, id: ring.lineId(seq) };
      }
    }
    return null;
  }

  async function fetchLines(at, before, after) {
    const p = new URLSearchParams({ at, before: String(before), after: String(after) });
    const url = new URL(`api/files/${encodeURIComponent(view.file)}/lines?${p}`, root).href;
    let res;
    for (let attempt = 1; ; attempt++) {
      try {
        res = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      } catch {
        return { ok: false, status: 0, message: "cannot reach the server" };
      }
      if ((res.status !== 429 && res.status !== 503) || attempt >= BUSY_TRIES) break;
      // a search of this client's may hold the history slots for a moment
      const wait = parseRetryAfter(res.headers.get("retry-after")) ?? 1000 * attempt;
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, Math.max(250, wait))));
    }
    if (res.ok) {
      try {
        return { ok: true, data: await res.json() };
      } catch {
        return { ok: false, status: res.status, message: "a bad answer from the server" };
      }
    }
    return { ok: false, status: res.status, message: await errorMessage(res) };
  }

  function failure(r, what) {
    if (r.status === 410) return `${what}: that part of the history is gone (rotated out or deleted)`;
    if (r.status === 429 || r.status === 503) return `${what}: the server is busy; try again`;
    return `${what}: ${r.message}`;
  }

  /** History lines ({id, line}) as the model takes them. */
  function entries(rows) {
    return rows.map(({ id, line }) => {
      const parts = splitId(id);
      return { text: line, key: parts ? parts.key : null, offset: parts ? parts.offset : 0 };
    });
  }

  /** Append history lines at the end, each with its own id (they may span generations). */
  function appendRows(rows) {
    let i = 0;
    const now = Date.now();
    while (i < rows.length) {
      const first = splitId(rows[i].id);
      let j = i + 1;
      while (j < rows.length) {
        const next = splitId(rows[j].id);
        if (!first || !next || next.key !== first.key) break;
        j++;
      }
      const group = rows.slice(i, j);
      const ids = first ? { key: first.key, offsets: group.map((r) => splitId(r.id).offset) } : null;
      model.append(group.map((r) => r.line), now, KIND_LINE, ids);
      i = j;
    }
  }

  // -- earlier lines --------------------------------------------------------------------

  async function loadEarlier(byHand) {
    if (busy || !view.file || atStart()) return;
    const first = edgeLine(false);
    if (!first) {
      if (byHand) setStatus("No lines yet to load earlier ones from");
      return;
    }
    const at = cursor && cursor.seq === first.seq ? cursor.id : first.id;
    if (at === null) {
      setStatus("Earlier lines cannot be loaded: the oldest line here has no id");
      return;
    }
    const room = model.ring.room();
    if (room <= 0) {
      setStatus(`The page keeps at most ${fmt.format(model.cap)} lines: raise "Lines kept" (?) to load earlier ones`);
      if (byHand) announce(ui.status.textContent);
      return;
    }
    const my = epoch;
    busy = true;
    stalled = false;
    updateButtons();
    setStatus("Loading earlier lines…");
    const r = await fetchLines(at, Math.min(PAGE, room), 0);
    if (my !== epoch) return;
    busy = false;
    if (!r.ok) {
      stalled = true;
      setStatus(failure(r, "Could not load earlier lines"));
      announce(ui.status.textContent);
      updateButtons();
      return;
    }
    const now = edgeLine(false);
    if (!now || now.seq !== first.seq) {
      // the oldest line was dropped meanwhile (newer lines came in): these no longer join
      setStatus("");
      updateButtons();
      return;
    }
    const { lines, more_before: more, limited } = r.data;
    let earlier = entries(lines.slice(0, r.data.at));
    const got = earlier.length;
    let note = "";
    if (view.server && view.q) {
      // only matching lines come from the stream: the same for these
      const f = compileFilter({ q: view.q, regex: view.regex, caseSensitive: view.caseSensitive,
        invert: view.invert });
      if (!f.error) {
        earlier = earlier.filter((e) => f.test(e.text));
        note = `, ${fmt.format(earlier.length)} matching the server filter`;
      }
    }
    if (!list.follow) list.keepAnchor();
    const seqs = model.prepend(earlier, Date.now());
    const oldest = edgeLine(false);
    cursor = oldest && seqs.length === earlier.length && got ? { seq: oldest.seq, id: lines[0].id } : null;
    if (!more && seqs.length === earlier.length) startSeq = model.ring.head;
    let text = got ? `${plural(got, "earlier line")} loaded${note}` : "";
    if (atStart()) text = text ? `${text}; start of history` : "Start of history";
    else if (limited) {
      stalled = true;
      text = `${text ? text + "; " : ""}the server stopped reading (history.max_scan_bytes)`;
    }
    setStatus(text);
    if (byHand || atStart()) announce(text);
    updateButtons();
  }

  // -- a permalinked line in its context ------------------------------------------------

  async function openContext() {
    const my = epoch;
    const id = view.line;
    ui.banner.hidden = false;
    ui.banner.dataset.kind = "line";
    ui.copyTarget.hidden = true;
    ui.bannerText.textContent = "Loading the linked line…";
    setConnState("history", { message: "showing a linked line in its context; not following" });
    const r = await fetchLines(id, CONTEXT, CONTEXT);
    if (my !== epoch) return;
    if (!r.ok) {
      ui.bannerText.textContent = r.status === 410 ?
        `This line is no longer in the history of ${view.file} (rotated out, deleted or rewritten).` :
        `Cannot show the linked line: ${r.message}`;
      announce(ui.bannerText.textContent);
      updateButtons();
      return;
    }
    const { lines, at, more_before: moreBefore, more_after: moreAfter } = r.data;
    const firstSeq = model.ring.tail;
    appendRows(lines);
    // appended in order with no notice between: entry k is firstSeq + k
    model.target = firstSeq + at;
    targetId = lines[at].id;
    model.touch();
    list.showSeq(model.target);
    if (!moreBefore) startSeq = model.ring.head;
    endReached = !moreAfter;
    ui.bannerText.textContent = "Linked line, in its context";
    ui.copyTarget.hidden = false;
    announce("Showing the linked line in its context");
    updateButtons();
  }

  async function loadLater() {
    if (busy || !view.line || endReached) return;
    const last = edgeLine(true);
    if (!last || last.id === null) return;
    const my = epoch;
    busy = true;
    stalled = false;
    updateButtons();
    setStatus("Loading later lines…");
    const r = await fetchLines(last.id, 0, PAGE);
    if (my !== epoch) return;
    busy = false;
    if (!r.ok) {
      stalled = true;
      setStatus(failure(r, "Could not load later lines"));
      announce(ui.status.textContent);
      updateButtons();
      return;
    }
    const { lines, at, more_after: more } = r.data;
    const later = lines.slice(at + 1);
    list.hold(); // stay on the line being read
    appendRows(later);
    list.pauseSeq = model.ring.tail; // not "new lines": the view asked for them
    list.schedule();
    endReached = !more;
    const text = `${plural(later.length, "later line")} loaded${endReached ? "; end of the file" : ""}`;
    setStatus(text);
    announce(text);
    updateButtons();
  }

  // -- since: the stream from a time on ---------------------------------------------------

  function showSince() {
    ui.banner.hidden = false;
    ui.banner.dataset.kind = "since";
    ui.copyTarget.hidden = true;
    const what = describeSince(view.since);
    ui.bannerText.textContent = `${what[0].toUpperCase()}${what.slice(1)}, then following`;
  }

  function jump(since) {
    if (!view.files.length) return; // (a merged view too: its stream takes `since`)
    go({ since, line: null });
    announce(`Showing ${describeSince(since)}, then following`);
  }

  // -- the app's hook ---------------------------------------------------------------------

  /** Called by connect() after the view was cleared; true: a permalink, no stream. */
  function beforeStream() {
    epoch++;
    busy = false;
    startSeq = null;
    endReached = false;
    stalled = false;
    targetId = null;
    cursor = null;
    setStatus("");
    ui.banner.hidden = !view.line && !view.since;
    links.reset();
    if (view.line) {
      openContext();
      return true;
    }
    if (view.since) {
      showSince();
      list.toStart(); // read from the first line at that time on; new ones gather below
    }
    updateButtons();
    return false;
  }

  // -- wiring -----------------------------------------------------------------------------

  ui.earlier.addEventListener("click", () => loadEarlier(true));
  ui.later.addEventListener("click", () => loadLater());
  ui.back.addEventListener("click", () => {
    go({ line: null, since: null });
    announce("Back to live: following the end of the file");
    ui.viewport.focus();
  });
  ui.copyTarget.addEventListener("click", () => {
    if (targetId) links.copy(targetId);
  });
  ui.jumpForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const since = isoFromLocal(ui.jumpTime.value);
    if (since) jump(since);
  });
  for (const b of ui.jumpForm.querySelectorAll("button[data-since]")) {
    b.title = `Show the last ${QUICK[b.dataset.since] || b.dataset.since}, then follow`;
    b.addEventListener("click", () => jump(b.dataset.since));
  }
  // choosing another file leaves a permalink of this one (the app reconnects)
  ui.file.addEventListener("change", () => {
    view.line = null;
  });
  ui.viewport.addEventListener("scroll", () => {
    if (busy || stalled) return;
    const el = ui.viewport;
    const edge = EDGE_ROWS * list.rowH;
    if (view.line && !endReached && el.scrollTop + el.clientHeight >= el.scrollHeight - edge) {
      loadLater(); // a permalink's context: reading on down
    } else if (!list.follow && el.scrollTop <= edge) loadEarlier(false);
  }, { passive: true });

  updateButtons();
  return { beforeStream };
}
