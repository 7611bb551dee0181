// The viewer: wires the file list, the stream, the filter and the virtual list together,
// keeps the files and filter in the page address, and handles the keyboard. One file is
// followed on its own stream; several are merged over one connection (`api/stream`).

import { stripAnsi } from "./ansi.js";
import { KIND_LINE, KIND_NOTICE, NOTICE_WARN } from "./buffer.js";
import { Legend, fileLabel, installPicker } from "./files.js";
import { compileFilter, sameSpec } from "./filter.js";
import { installHistory } from "./history.js";
import { batchIds } from "./lineids.js";
import { Model } from "./model.js";
import { parseJsonLine } from "./render.js";
import { LogStream } from "./stream.js";
import { Sparkline, minuteClock } from "./timeline.js";
import { LogView } from "./view.js";

const $ = (id) => document.getElementById(id);
// The app's root, wherever it is mounted (/, /logs/, ...): one level above static/app.js.
const ROOT = new URL("../", import.meta.url);
const SERVER_FILTER_DELAY_MS = 400;
const CAPS = [10_000, 50_000, 100_000, 250_000, 500_000];
const fmt = new Intl.NumberFormat("en");
const NO_FILTER = compileFilter({ q: "" });
const MAX_FILES_PER_STREAM = 16; // the server's default; /api/files may say otherwise

// -- preferences (this browser) and view state (the address) -------------------------------

function loadPrefs() {
  const prefs = { theme: "auto", wrap: false, gutter: "num", cap: 100_000 };
  try {
    Object.assign(prefs, JSON.parse(localStorage.getItem("logtail.prefs") || "{}"));
  } catch {
    // private mode or a broken entry: defaults
  }
  if (!CAPS.includes(Number(prefs.cap))) prefs.cap = 100_000;
  prefs.cap = Number(prefs.cap);
  return prefs;
}

function savePrefs() {
  try {
    localStorage.setItem("logtail.prefs", JSON.stringify(prefs));
  } catch {
    // not persisted: fine
  }
}

const FLAG_KEYS = { regex: "regex", case: "caseSensitive", invert: "invert", server: "server" };

function readAddress() {
  const p = new URLSearchParams(location.hash.slice(1) || location.search.slice(1));
  const files = [...new Set(p.getAll("file").filter((f) => f))];
  const s = { files, file: files[0] || null, q: p.get("q") || "", regex: false,
    caseSensitive: false, invert: false, server: false, n: null };
  for (const [key, prop] of Object.entries(FLAG_KEYS)) s[prop] = p.get(key) === "1";
  const n = p.get("n");
  if (n !== null && /^\d+$/.test(n)) s.n = Number(n);
  s.since = p.get("since") || null; // the stream from this time on (history.js)
  s.line = p.get("line") || null; // a permalink: this line in its context (history.js)
  if (s.line && files.length > 1) s.files = [files[0]]; // a line is in one file
  return s;
}

let addressTimer = 0;

/** Update the address soon (typing a filter rewrites it once, not per keystroke). */
function writeAddressSoon() {
  clearTimeout(addressTimer);
  addressTimer = setTimeout(writeAddress, 250);
}

function writeAddress() {
  clearTimeout(addressTimer);
  const p = new URLSearchParams();
  for (const f of view.files) p.append("file", f);
  if (view.q) p.set("q", view.q);
  for (const [key, prop] of Object.entries(FLAG_KEYS)) if (view[prop]) p.set(key, "1");
  if (view.n !== null) p.set("n", String(view.n));
  if (view.since) p.set("since", view.since);
  if (view.line) p.set("line", view.line);
  const hash = "#" + p.toString().replace(/%3A/gi, ":");
  if (location.hash !== hash) history.replaceState(null, "", location.pathname + location.search + hash);
}

const prefs = loadPrefs();
// files and filter: what a shared link reproduces. `files` are the files on show, `file`
// the one file when there is one (history, search and permalinks work on one file), else null.
const view = readAddress();

// -- parts ---------------------------------------------------------------------------------

const ui = {
  file: $("file"), filter: $("filter"), filterBox: $("filter-box"), filterError: $("filter-error"),
  count: $("count"), regex: $("opt-regex"), case: $("opt-case"), invert: $("opt-invert"),
  server: $("opt-server"), pause: $("pause"), end: $("end"), wrap: $("wrap"), gutter: $("gutter"),
  download: $("download"), clear: $("clear"), theme: $("theme"), help: $("help"),
  conn: $("conn"), connText: $("conn-text"), connDetail: $("conn-detail"),
  followState: $("follow-state"), evicted: $("evicted"), newLines: $("new-lines"),
  announce: $("announce"), detail: $("detail"), detailBody: $("detail-body"),
  detailClose: $("detail-close"), dialog: $("help-dialog"), helpClose: $("help-close"),
  cap: $("cap"), viewport: $("viewport"), filesBtn: $("files-btn"),
  filesDialog: $("files-dialog"), legend: $("legend"), spark: $("spark"),
};

let spark = null; // the per-minute overview (below)
const model = new Model(prefs.cap, (data) => {
  if (data) list.scheduleData();
  else list.schedule();
  if (spark) spark.schedule();
});
const list = new LogView({
  viewport: ui.viewport, sizer: $("sizer"), rows: $("rows"), model,
  onFollow: (state) => {
    updateFollowUi();
    announce(state === "following" ? "Following new lines" :
      state === "paused" ? "Paused; new lines are kept" : "Scrolled up; following stopped");
  },
  onRender: () => updateCounts(),
});
const hist = installHistory({ root: ROOT, model, list, view, connect, writeAddress, announce,
  setConnState });
spark = new Sparkline({ el: ui.spark, hist: model.hist, onPick: goToMinute });
const legend = new Legend(ui.legend, (name, shown) => {
  const hidden = new Set(model.hiddenNames);
  if (shown) hidden.delete(name);
  else hidden.add(name);
  model.setHidden(hidden);
  announce(`${shown ? "Showing" : "Hiding"} the lines of ${name}`);
});

let files = [];
let maxPerStream = MAX_FILES_PER_STREAM;
let stream = null;
let streamSpec = null; // the server-side filter the current stream was opened with
let serverTimer = 0;
let lastState = "";

// -- announcements and status ------------------------------------------------------------

let announceTimer = 0;
let countToSay = false; // after a filter change, say the count once it settles
let countTimer = 0;
let announcing = ""; // said in the next moment: what comes meanwhile is added, not lost
function announce(text) {
  clearTimeout(announceTimer);
  ui.announce.textContent = "";
  announcing = announcing && announcing !== text ? `${announcing}. ${text}` : text;
  announceTimer = setTimeout(() => {
    ui.announce.textContent = announcing;
    announcing = "";
  }, 50);
}

function lines(n, noun = "line") {
  return `${fmt.format(n)} ${noun}${n === 1 ? "" : "s"}`;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function updateCounts() {
  const { ring, list: shown } = model;
  const total = ring.lines;
  const matching = shown.length - shown.notices;
  let text;
  if (model.filtering) text = `filtering… ${Math.round(model.progress * 100)}%`;
  else if (view.server && view.q) text = `${lines(total, "matching line")} (server filter)`;
  else if (model.filter.active || model.anyHidden) text = `${fmt.format(matching)} of ${lines(total)}`;
  else text = lines(total);
  setText(ui.count, text);
  if (countToSay && !model.filtering) {
    countToSay = false;
    clearTimeout(countTimer);
    countTimer = setTimeout(() => announce(ui.count.textContent), 800);
  }

  const fresh = list.newCount();
  ui.newLines.hidden = list.follow || fresh === 0;
  setText(ui.newLines, `↓ ${lines(fresh, "new line")}`);
  const state = list.state;
  setText(ui.followState, state === "following" ? "following" :
    `${state === "paused" ? "paused" : "scrolled up"} · ${lines(fresh, "new line")}`);

  ui.evicted.hidden = ring.evicted === 0;
  if (ring.evicted) {
    setText(ui.evicted, `${fmt.format(ring.evicted)} older lines dropped (keeping the newest ${fmt.format(ring.cap)})`);
  }
}

function updateFollowUi() {
  const paused = list.state !== "following";
  setText(ui.pause, paused ? "Resume" : "Pause");
  ui.pause.setAttribute("aria-pressed", String(list.state === "paused"));
  ui.pause.title = paused ? "Resume (p): show every line and follow" :
    "Pause (p): keep receiving, stop showing new lines";
  updateCounts();
}

const STATE_TEXT = { connecting: "connecting", live: "live", reconnecting: "reconnecting",
  resumed: "resumed", limited: "limited", error: "error" };
let countdown = 0;
let resumedTimer = 0;

function setConnState(state, info = {}) {
  clearInterval(countdown);
  clearTimeout(resumedTimer);
  ui.conn.dataset.state = state;
  setText(ui.connText, STATE_TEXT[state] || state);
  const detail = () => {
    let text = info.message || "";
    if (info.until) {
      const s = Math.max(0, Math.ceil((info.until - Date.now()) / 1000));
      text = `${text ? text + "; " : ""}retrying in ${s} s`;
    }
    if (state === "live") text = "live";
    if (state === "resumed") text = "reconnected; resumed with nothing missed";
    setText(ui.connDetail, text);
    ui.conn.title = text || state;
  };
  detail();
  if (info.until) countdown = setInterval(detail, 1000);
  if (state === "resumed") {
    resumedTimer = setTimeout(() => {
      if (ui.conn.dataset.state === "resumed") setConnState("live");
    }, 5000);
  }
  if (state !== lastState) {
    const spoken = {
      connecting: "Connecting", live: "Live", reconnecting: "Connection lost; reconnecting",
      resumed: "Reconnected; nothing missed", limited: "Server busy; will retry by itself",
      error: `Error: ${info.message || "stream failed"}`,
    };
    announce(spoken[state] || state);
    lastState = state;
  }
  if (state === "error" && info.status === 400 && view.server) showFilterError(info.message);
}

// -- notices ------------------------------------------------------------------------------

function noticeText(name, data) {
  switch (name) {
    case "rotated":
      return [data.reason === "created" ? "file created" : data.reason === "recreated" ?
        "file deleted and created again; following the new one" :
        "file rotated; following the new file", false];
    case "truncated":
      return ["file truncated; reading from its start", true];
    case "missing":
      return ["file is missing; waiting for it to appear", true];
    case "reset":
      return [`could not resume (${data.reason || "unknown position"}); showing recent lines`, true];
    case "dropped": {
      const what = typeof data.lines === "number" ? `${fmt.format(data.lines)} lines` :
        typeof data.bytes === "number" ? `${fmt.format(data.bytes)} bytes` : "some lines";
      return [`${what} skipped: ${data.reason || "the client fell behind"}`, true];
    }
    case "limited":
      return [`older lines not loaded: the backlog reads at most ${
        fmt.format(data.max_backlog_bytes || 0)} bytes back`, false];
    case "bye":
      return ["server shutting down; will reconnect and resume", true];
    default:
      return [`${name}: ${JSON.stringify(data)}`, false];
  }
}

function addNotice(text, warn, file = 0) {
  model.append([text], Date.now(), KIND_NOTICE | (warn ? NOTICE_WARN : 0), null, file);
}

function merged() {
  return view.files.length > 1;
}

// -- the stream ---------------------------------------------------------------------------

function streamUrl() {
  const p = new URLSearchParams();
  if (view.n !== null) p.set("n", String(view.n));
  if (view.server && view.q) {
    p.set("q", view.q);
    if (view.regex) p.set("regex", "1");
    if (view.caseSensitive) p.set("case", "1");
    if (view.invert) p.set("invert", "1");
  }
  if (view.since) p.set("since", view.since);
  p.set("ids", "1"); // every line gets its id: permalinks, "load earlier"
  if (merged()) {
    // several files, one connection: browsers allow few per server
    const files = new URLSearchParams();
    for (const f of view.files) files.append("file", f);
    return new URL(`api/stream?${files}&${p}`, ROOT).href;
  }
  const qs = p.toString();
  return new URL(`api/files/${encodeURIComponent(view.file)}/stream${qs ? "?" + qs : ""}`, ROOT).href;
}

function serverSpec() {
  return view.server && view.q ? { q: view.q, regex: view.regex, caseSensitive: view.caseSensitive,
    invert: view.invert } : { q: "" };
}

function connect() {
  clearTimeout(serverTimer); // this connection already carries the current filter
  if (stream) stream.stop();
  stream = null;
  model.clear();
  model.ring.lineNo = 0;
  model.resetFiles(merged() ? view.files : []);
  list.setMerged(merged());
  legend.show(merged() ? view.files : [], model.hiddenNames, model.colours);
  list.toEnd();
  hideDetail();
  if (!view.files.length) return;
  streamSpec = serverSpec();
  if (hist.beforeStream()) return; // a permalink: its lines in context, no stream
  const many = merged();
  stream = new LogStream({
    url: streamUrl(),
    onLines: (lines, id, lineIds, file) => model.append(lines, Date.now(), KIND_LINE,
      batchIds(lineIds, lines), many && file ? model.fileNo(file) : 0),
    onNotice: (name, data) => {
      let [text, warn] = noticeText(name, data);
      const file = many && typeof data.file === "string" ? data.file : null;
      if (file) text = `${file}: ${text}`;
      addNotice(text, warn, file ? model.fileNo(file) : 0);
      if (name !== "bye") announce(text);
    },
    onState: (state, info) => {
      if (state === "resumed") addNotice("reconnected; resumed where the stream stopped", false);
      setConnState(state, info);
    },
  }).start();
}

// -- filter -------------------------------------------------------------------------------

function showFilterError(message) {
  ui.filterError.hidden = !message;
  setText(ui.filterError, message || "");
  ui.filterBox.classList.toggle("invalid", !!message);
  ui.filter.setAttribute("aria-invalid", String(!!message));
}

function applyFilter() {
  const spec = { q: view.q, regex: view.regex, caseSensitive: view.caseSensitive, invert: view.invert };
  const compiled = compileFilter(spec);
  if (view.server) {
    // the server decides which lines come; here only the marking
    showFilterError(null);
    model.refilter(NO_FILTER, compiled.error ? NO_FILTER : compiled);
    clearTimeout(serverTimer);
    if (!sameSpec(serverSpec(), streamSpec || { q: "" })) {
      serverTimer = setTimeout(connect, SERVER_FILTER_DELAY_MS);
    }
    return;
  }
  if (streamSpec && streamSpec.q) {
    clearTimeout(serverTimer);
    connect(); // leaving server-side filtering: everything again, filtered here
  }
  if (compiled.error) {
    showFilterError(`Invalid regular expression: ${compiled.error}`);
    return; // keep showing the last good filter
  }
  showFilterError(null);
  if (!sameSpec(spec, model.filter.spec) || model.filter.active !== compiled.active) {
    if (!list.follow) list.keepAnchor();
    countToSay = true;
    clearTimeout(countTimer);
    model.refilter(compiled);
  } else {
    model.touch();
  }
}

function syncFilterUi() {
  if (ui.filter.value !== view.q) ui.filter.value = view.q;
  for (const [key, prop] of Object.entries(FLAG_KEYS)) {
    ui[key].setAttribute("aria-pressed", String(!!view[prop]));
  }
}

function setFlag(prop, value) {
  view[prop] = value;
  syncFilterUi();
  applyFilter();
  writeAddress();
}

// -- files --------------------------------------------------------------------------------

async function fetchFiles() {
  for (let attempt = 1; ; attempt++) {
    let res;
    try {
      res = await fetch(new URL("api/files", ROOT).href, { credentials: "same-origin", cache: "no-store" });
    } catch {
      setConnState("reconnecting", { message: "cannot reach the server", until: Date.now() + 3000 });
      await new Promise((r) => setTimeout(r, 3000));
      continue;
    }
    if (res.ok) return await res.json();
    let message = `HTTP ${res.status}`;
    try {
      message = (await res.json()).error || message;
    } catch {
      // keep the status
    }
    if (res.status === 429 || res.status === 503) {
      const after = Number(res.headers.get("retry-after")) || Math.min(30, 2 ** attempt);
      setConnState("limited", { message, until: Date.now() + after * 1000 });
      await new Promise((r) => setTimeout(r, after * 1000));
      continue;
    }
    setConnState("error", { message, status: res.status });
    return null;
  }
}

function fillFiles() {
  const options = files.map((f) => {
    const o = new Option(fileLabel(f, true), f.name);
    return o;
  });
  // the file on show stays selectable after the server stopped listing it
  if (view.file && !files.some((f) => f.name === view.file)) {
    options.push(new Option(`${view.file} (gone)`, view.file));
  }
  if (merged()) options.unshift(new Option(`${fmt.format(view.files.length)} files, merged`, ""));
  ui.file.replaceChildren(...options);
  ui.file.value = merged() ? "" : view.file || "";
  ui.file.disabled = options.length < 2;
  ui.filesBtn.disabled = files.length < 2;
}

/** Keep the list current while files come and go (globs, directories): the server
 *  sends the whole list on `api/files?watch=1` at once and after every change. */
function watchFiles() {
  new LogStream({
    url: new URL("api/files?watch=1", ROOT).href,
    onLines: () => {},
    onNotice: (name, data) => {
      if (name === "files" && Array.isArray(data.files)) updateFiles(data.files);
    },
    onState: () => {}, // the badge belongs to the log stream
  }).start();
}

function updateFiles(listed) {
  const key = (list) => JSON.stringify(list.map((f) => [f.name, f.title, f.exists]));
  if (key(listed) === key(files)) return;
  const before = new Set(files.map((f) => f.name));
  const added = listed.filter((f) => !before.has(f.name));
  files = listed;
  fillFiles();
  if (!stream && !view.line && files.length) { // (a permalink on show has no stream)
    selectFiles(view.files); // the first file to appear
    return;
  }
  if (added.length === 1) announce(`New file: ${added[0].title || added[0].name}`);
  else if (added.length > 1) announce(`${fmt.format(added.length)} new files`);
}

/** Show `names` (one file, or several merged): the ones the server lists, else its first. */
function selectFiles(names) {
  const known = names.filter((n) => files.some((f) => f.name === n)).slice(0, maxPerStream);
  const unknown = names.filter((n) => !files.some((f) => f.name === n));
  const chosen = known.length ? known : files.length ? [files[0].name] : [];
  if (chosen.join("\n") !== view.files.join("\n")) model.hiddenNames = new Set(); // a new set
  view.files = chosen;
  view.file = chosen.length === 1 ? chosen[0] : null;
  fillFiles();
  const f = files.find((x) => x.name === view.file);
  document.title = merged() ? `${fmt.format(chosen.length)} files · logtail` :
    f ? `${f.title || f.name} · logtail` : "logtail";
  writeAddress();
  connect();
  if (unknown.length === 1) announce(`No file named ${unknown[0]}; showing ${chosen.join(", ")}`);
  else if (unknown.length > 1) announce(`No files named ${unknown.join(", ")}; showing ${chosen.join(", ")}`);
  else if (merged()) announce(`Showing ${fmt.format(chosen.length)} files merged`);
}

function selectFile(name) {
  selectFiles(name ? [name] : []);
}

/** The overview's bar for `minute` was chosen: the first line on show from that minute. */
function goToMinute(minute) {
  const seq = model.firstShownIn(minute);
  const when = minuteClock(minute);
  if (seq < 0) {
    announce(`No line on show from ${when}`);
    return;
  }
  list.showSeq(seq, true);
  announce(`Showing the lines from ${when}`);
}

// -- reading aids -------------------------------------------------------------------------

const systemDark = matchMedia("(prefers-color-scheme: dark)");

function effectiveTheme() {
  return prefs.theme === "auto" ? (systemDark.matches ? "dark" : "light") : prefs.theme;
}

function applyTheme() {
  if (prefs.theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = prefs.theme;
  const other = effectiveTheme() === "dark" ? "light" : "dark";
  ui.theme.setAttribute("aria-label", `Switch to ${other} theme`);
  ui.theme.title = `Switch to ${other} theme`;
}

function toggleTheme() {
  const next = effectiveTheme() === "dark" ? "light" : "dark";
  prefs.theme = next === (systemDark.matches ? "dark" : "light") ? "auto" : next;
  savePrefs();
  applyTheme();
  announce(`${next} theme`);
}

const GUTTERS = ["num", "time", "none"];
const GUTTER_LABEL = { num: ["#", "line numbers"], time: ["⏱", "arrival times"], none: ["–", "none"] };

function applyGutter() {
  const [text, label] = GUTTER_LABEL[prefs.gutter];
  setText(ui.gutter, text);
  ui.gutter.setAttribute("aria-label", `Gutter: ${label}`);
  list.setGutter(prefs.gutter);
}

function applyWrap() {
  ui.wrap.setAttribute("aria-pressed", String(prefs.wrap));
  list.setWrap(prefs.wrap);
}

function togglePause() {
  if (list.state === "following") list.pause();
  else list.toEnd();
}

function download() {
  const lines = model.shownLines();
  const blob = new Blob([lines.join("\n") + (lines.length ? "\n" : "")], { type: "text/plain;charset=utf-8" });
  const stamp = new Date().toISOString().replace(/[:]/g, "").replace(/\..*$/, "");
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${merged() ? "merged" : view.file || "log"}${model.filter.active ? "-filtered" : ""}-${stamp}.log`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
  announce(`Saved ${fmt.format(lines.length)} lines`);
}

function clearLines() {
  model.clear();
  list.toEnd();
  hideDetail();
  announce("Cleared");
}

function showDetail(seq) {
  if (!model.ring.has(seq)) return; // evicted (or cleared) since it was drawn
  const value = parseJsonLine(stripAnsi(model.ring.text(seq)));
  if (!value) return;
  ui.detailBody.textContent = JSON.stringify(value, null, 2);
  ui.detail.hidden = false;
}

function hideDetail() {
  ui.detail.hidden = true;
  ui.detailBody.textContent = "";
}

// -- keyboard -----------------------------------------------------------------------------

function typingIn(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function onKey(e) {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  if (document.querySelector("dialog[open]")) return; // a dialog handles its own keys
  if (e.key === "Escape") {
    if (!ui.detail.hidden) hideDetail();
    else if (view.q) {
      view.q = "";
      syncFilterUi();
      applyFilter();
      writeAddress();
      announce("Filter cleared");
    } else if (e.target === ui.filter) ui.filter.blur();
    e.preventDefault();
    return;
  }
  if (typingIn(e.target)) return;
  const actions = {
    "/": () => { ui.filter.focus(); ui.filter.select(); },
    p: togglePause,
    End: () => list.toEnd(),
    Home: () => list.toStart(),
    w: () => { prefs.wrap = !prefs.wrap; savePrefs(); applyWrap(); },
    "?": () => ui.dialog.showModal(),
  };
  const action = actions[e.key];
  if (action) {
    e.preventDefault();
    action();
  }
}

// -- wiring -------------------------------------------------------------------------------

function wire() {
  ui.filter.addEventListener("input", () => {
    list.typing();
    view.q = ui.filter.value;
    applyFilter();
    writeAddressSoon();
  });
  ui.regex.addEventListener("click", () => setFlag("regex", !view.regex));
  ui.case.addEventListener("click", () => setFlag("caseSensitive", !view.caseSensitive));
  ui.invert.addEventListener("click", () => setFlag("invert", !view.invert));
  ui.server.addEventListener("click", () => setFlag("server", !view.server));
  ui.file.addEventListener("change", () => {
    if (ui.file.value) selectFile(ui.file.value); // ("" is the merged view's own entry)
  });
  ui.pause.addEventListener("click", togglePause);
  ui.end.addEventListener("click", () => list.toEnd());
  ui.newLines.addEventListener("click", () => list.toEnd());
  ui.wrap.addEventListener("click", () => { prefs.wrap = !prefs.wrap; savePrefs(); applyWrap(); });
  ui.gutter.addEventListener("click", () => {
    prefs.gutter = GUTTERS[(GUTTERS.indexOf(prefs.gutter) + 1) % GUTTERS.length];
    savePrefs();
    applyGutter();
  });
  ui.download.addEventListener("click", download);
  ui.clear.addEventListener("click", clearLines);
  ui.theme.addEventListener("click", toggleTheme);
  systemDark.addEventListener("change", applyTheme);
  ui.help.addEventListener("click", () => ui.dialog.showModal());
  ui.helpClose.addEventListener("click", () => ui.dialog.close());
  ui.cap.addEventListener("change", () => {
    prefs.cap = Number(ui.cap.value);
    savePrefs();
    model.setCap(prefs.cap);
    announce(`Keeping the newest ${fmt.format(prefs.cap)} lines`);
  });
  ui.detailClose.addEventListener("click", hideDetail);
  $("rows").addEventListener("click", (e) => {
    const seq = list.seqAt(e.target);
    if (seq !== null && !window.getSelection().toString()) showDetail(seq);
  });
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", () => {
    const next = readAddress();
    const filesChanged = next.files.length > 0 && next.files.join("\n") !== view.files.join("\n");
    const nChanged = next.n !== view.n || next.since !== view.since || next.line !== view.line;
    Object.assign(view, { ...next, files: view.files, file: view.file });
    syncFilterUi();
    if (filesChanged) selectFiles(next.files);
    else if (nChanged) connect();
    applyFilter();
  });
  installPicker({
    button: ui.filesBtn, dialog: ui.filesDialog,
    getFiles: () => files,
    getChosen: () => view.files,
    max: () => maxPerStream,
    onChoose: (names) => {
      view.line = null; // another set of files: a permalink of one no longer applies
      selectFiles(names);
    },
  });
}

async function main() {
  if (prefs.gutter && !GUTTERS.includes(prefs.gutter)) prefs.gutter = "num";
  ui.cap.value = String(prefs.cap);
  applyTheme();
  applyGutter();
  applyWrap();
  syncFilterUi();
  wire();
  updateFollowUi();
  applyFilter();
  setConnState("connecting");
  const listed = await fetchFiles();
  if (listed === null) return;
  files = listed.files || [];
  if (Number.isInteger(listed.max_files_per_stream) && listed.max_files_per_stream > 0) {
    maxPerStream = listed.max_files_per_stream;
  }
  fillFiles();
  if (listed.dynamic) watchFiles();
  if (!files.length) {
    if (listed.dynamic) setConnState("connecting", { message: "no files yet; waiting for one to appear" });
    else setConnState("error", { message: "no files are configured" });
    return;
  }
  selectFiles(view.files);
}

main();
