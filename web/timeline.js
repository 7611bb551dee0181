// The overview above the log: how many of the retained lines fall in each minute, by level
// (errors, warnings, the rest). Counts change line by line as lines arrive and are dropped
// (never a recount of the buffer); the bars are redrawn at most about once a second.
//
// A line's minute comes from its own timestamp when it starts with one (ISO 8601 / RFC 3339,
// syslog, epoch seconds or ms), has one in brackets near its start (Apache / nginx), or is a
// JSON object with a `ts`, `time`, `timestamp` or `@timestamp` field; else it is the minute
// of the line before it in the same file (stack traces), else the minute it arrived.

import { LEVEL_ERROR, LEVEL_OTHER, LEVEL_WARN } from "./buffer.js";

const MINUTE_MS = 60_000;
const FUTURE_MIN = 24 * 60; // a time more than a day ahead is not believed
const HEAD = 200; // timestamps are looked for this near the start of a line
const BAR_PX = 7; // a bar and the gap after it
const MIN_BARS = 10;
const MAX_BARS = 240;
const REDRAW_MS = 1000;
const LABEL_PX = 110; // room kept for each time label ("Dec 31 23:59") and the gaps

// 2026-12-01T13:52:21.123Z, 2026-12-01 13:52:21,123 +0100, [2026-12-01 13:52]
const ISO_RE = /^\[?(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::\d\d(?:[.,]\d+)?)? ?(Z|[+-]\d\d(?::?\d\d)?)?/;
const ISO_VALUE_RE = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::\d\d(?:[.,]\d+)?)? ?(Z|[+-]\d\d(?::?\d\d)?)?/;
const EPOCH_RE = /^(\d{13}|\d{10})(?:\.\d+)?(?![\d:-])/;
// Dec  1 13:52:21 (no year: this year, or last year for a date ahead of today)
const SYSLOG_RE = /^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):\d\d/;
// [01/Dec/2026:13:52:21 +0000]
const CLF_RE = /\[(\d\d)\/([A-Z][a-z]{2})\/(\d{4}):(\d\d):(\d\d):\d\d ([+-])(\d\d)(\d\d)\]/y;
const JSON_TS_RE = /"(?:ts|time|timestamp|@timestamp)"\s*:\s*(?:"([^"]{10,40})"|(\d{10,13})(?:\.\d+)?)/;
const MONTHS = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9,
  Nov: 10, Dec: 11 };

let localBase = ""; // the last local date and hour seen, and its minute number: most lines
let localMinute = 0; // of a log share them, so Date is rarely needed

/** The minute (ms / 60,000 since the epoch) of an ISO match. */
function isoMinute(m) {
  const zone = m[6];
  if (zone === undefined) {
    // no zone: local time, as the browser's clock reads it
    const base = m[1] + m[2] + m[3] + m[4];
    if (base !== localBase) {
      localBase = base;
      localMinute = new Date(+m[1], +m[2] - 1, +m[3], +m[4], 0).getTime() / MINUTE_MS;
    }
    return localMinute + +m[5];
  }
  let minute = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]) / MINUTE_MS;
  if (zone !== "Z") {
    const sign = zone[0] === "-" ? -1 : 1;
    const digits = zone.slice(1).replace(":", "");
    minute -= sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || 0));
  }
  return minute;
}

function epochMinute(digits) {
  const ms = digits.length === 13 ? Number(digits) : Number(digits) * 1000;
  return Math.floor(ms / MINUTE_MS);
}

function syslogMinute(m) {
  const month = MONTHS[m[1]];
  if (month === undefined) return -1;
  const now = new Date();
  let t = new Date(now.getFullYear(), month, +m[2], +m[3], +m[4]);
  if (t.getTime() - now.getTime() > FUTURE_MIN * MINUTE_MS) {
    t = new Date(now.getFullYear() - 1, month, +m[2], +m[3], +m[4]);
  }
  return Math.floor(t.getTime() / MINUTE_MS);
}

function clfMinute(m) {
  const month = MONTHS[m[2]];
  if (month === undefined) return -1;
  const offset = (m[6] === "-" ? -1 : 1) * (Number(m[7]) * 60 + Number(m[8]));
  return Date.UTC(+m[3], month, +m[1], +m[4], +m[5]) / MINUTE_MS - offset;
}

function jsonMinute(text) {
  const m = JSON_TS_RE.exec(text.length > 400 ? text.slice(0, 400) : text);
  if (!m) return -1;
  if (m[2] !== undefined) return epochMinute(m[2]);
  const iso = ISO_VALUE_RE.exec(m[1]);
  return iso ? isoMinute(iso) : -1;
}

/** The minute a line's own timestamp names, or -1 when it has none (or an unlikely one). */
export function minuteOf(text, nowMinute = Date.now() / MINUTE_MS) {
  const c = text.charCodeAt(0);
  let minute = -1;
  let m;
  if (c >= 48 && c <= 57) { // a digit
    if ((m = ISO_RE.exec(text)) !== null) minute = isoMinute(m);
    else if ((m = EPOCH_RE.exec(text)) !== null) minute = epochMinute(m[1]);
  } else if (c === 91) { // [
    if ((m = ISO_RE.exec(text)) !== null) minute = isoMinute(m);
  } else if (c === 123) { // {
    minute = jsonMinute(text);
  } else if (c >= 65 && c <= 90 && (m = SYSLOG_RE.exec(text)) !== null) {
    minute = syslogMinute(m);
  }
  if (minute < 0) {
    // Apache / nginx: 127.0.0.1 - - [01/Dec/2026:13:52:21 +0000] "GET / ..."
    const b = text.indexOf("[");
    if (b !== -1 && b < HEAD) {
      CLF_RE.lastIndex = b;
      if ((m = CLF_RE.exec(text)) !== null) minute = clfMinute(m);
    }
  }
  if (minute < 0 || !Number.isFinite(minute) || minute > nowMinute + FUTURE_MIN) return -1;
  return Math.floor(minute);
}

// -- counts per minute -----------------------------------------------------------------------

/** Retained lines per minute and level; add and remove one line at a time. */
export class Histogram {
  constructor() {
    this.version = 0; // goes up with every change
    this.clear();
  }

  clear() {
    this.buckets = new Map(); // minute -> Int32Array [other, warn, error]
    this.newest = -Infinity;
    this.oldest = Infinity;
    this.stale = false; // the newest or oldest bucket emptied: find the ends again when asked
    this.version++;
  }

  add(minute, level) {
    let b = this.buckets.get(minute);
    if (b === undefined) {
      b = new Int32Array(3);
      this.buckets.set(minute, b);
      if (minute > this.newest) this.newest = minute;
      if (minute < this.oldest) this.oldest = minute;
    }
    b[level]++;
    this.version++;
  }

  remove(minute, level) {
    const b = this.buckets.get(minute);
    if (b === undefined) return;
    b[level]--;
    if (b[0] + b[1] + b[2] <= 0) {
      this.buckets.delete(minute);
      if (minute === this.newest || minute === this.oldest) this.stale = true;
    }
    this.version++;
  }

  /** [oldest, newest] minute with lines, or null when there are none. */
  range() {
    if (this.stale) {
      this.stale = false;
      this.newest = -Infinity;
      this.oldest = Infinity;
      for (const minute of this.buckets.keys()) {
        if (minute > this.newest) this.newest = minute;
        if (minute < this.oldest) this.oldest = minute;
      }
    }
    return this.buckets.size ? [this.oldest, this.newest] : null;
  }

  get(minute) {
    return this.buckets.get(minute);
  }
}

// -- the bars ------------------------------------------------------------------------------

const fmt = new Intl.NumberFormat("en");

function plural(n, noun) {
  return `${fmt.format(n)} ${noun}${n === 1 ? "" : "s"}`;
}

function clock(minute) {
  const d = new Date(minute * MINUTE_MS);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

function dayClock(minute, withDay) {
  if (!withDay) return clock(minute);
  const d = new Date(minute * MINUTE_MS);
  return `${d.toLocaleDateString("en", { month: "short", day: "numeric" })} ${clock(minute)}`;
}

/**
 * The bars: one button per minute (the newest minutes that fit), each a stack of error,
 * warning and other counts. One bar has the tab stop; arrow keys, Home and End move it.
 * `onPick(minute)` is called when a bar is chosen.
 */
export class Sparkline {
  constructor({ el, hist, onPick }) {
    this.el = el;
    this.hist = hist;
    this.onPick = onPick;
    this.barsEl = el.querySelector(".bars");
    this.fromEl = el.querySelector(".spark-from");
    this.toEl = el.querySelector(".spark-to");
    this.keyEl = el.querySelector(".spark-key");
    this.bars = []; // button elements, reused
    this.first = 0; // the minute of bars[0]
    this.count = 0; // bars in use
    this.focusMinute = null; // the bar with the tab stop (null: the newest)
    this.drawn = -1; // hist.version last drawn
    this.drawnWidth = -1;
    this.timer = 0;
    this.frame = 0;
    this.lastDraw = 0;
    this.heights = new WeakMap();
    this.barsEl.addEventListener("click", (e) => {
      const b = e.target instanceof Element ? e.target.closest("button.bar") : null;
      if (b && !b.disabled) this.pick(b);
    });
    this.barsEl.addEventListener("keydown", (e) => this.onKey(e));
    // sizes are read here, where layout is fresh: a read in draw() would force a layout of
    // everything the log view just changed in the same frame
    this.width = -1;
    this.keyWidth = 0;
    this.barsHeight = 0;
    new ResizeObserver(() => {
      this.width = el.clientWidth;
      this.keyWidth = this.keyEl.offsetWidth;
      this.barsHeight = this.barsEl.clientHeight;
      this.schedule(true);
    }).observe(el);
  }

  /** Redraw soon: at once for a person's action, else at most every REDRAW_MS. */
  schedule(now = false) {
    if (this.frame) return;
    if (now) {
      clearTimeout(this.timer);
      this.timer = 0;
      this.frame = requestAnimationFrame(() => this.draw());
      return;
    }
    if (this.timer) return;
    const wait = Math.max(0, this.lastDraw + REDRAW_MS - performance.now());
    this.timer = setTimeout(() => {
      this.timer = 0;
      this.frame = requestAnimationFrame(() => this.draw());
    }, wait);
  }

  draw() {
    this.frame = 0;
    this.lastDraw = performance.now();
    const { hist } = this;
    const range = hist.range();
    // the bars sit right, by the newest time: as many as fit beside the labels
    const { width } = this;
    if (width < 0 || (hist.version === this.drawn && width === this.drawnWidth)) return;
    this.drawnWidth = width;
    const room = width - this.keyWidth - 2 * LABEL_PX;
    const fit = Math.max(MIN_BARS, Math.min(MAX_BARS, Math.floor(room / BAR_PX)));
    if (!range) {
      this.el.dataset.empty = "true";
      this.use(0);
      this.setText(this.fromEl, "");
      this.setText(this.toEl, "no lines");
      this.drawn = hist.version;
      return;
    }
    delete this.el.dataset.empty;
    const [oldest, newest] = range;
    const first = Math.max(oldest, newest - fit + 1);
    const count = newest - first + 1;
    let top = 1;
    for (let m = first; m <= newest; m++) {
      const b = hist.get(m);
      if (b !== undefined) top = Math.max(top, b[0] + b[1] + b[2]);
    }
    this.use(count);
    this.first = first;
    const full = this.barsHeight || 24;
    const span = newest - first > 24 * 60 || new Date(first * MINUTE_MS).getDate() !==
      new Date(newest * MINUTE_MS).getDate();
    for (let i = 0; i < count; i++) {
      const minute = first + i;
      const b = hist.get(minute);
      const bar = this.bars[i];
      const other = b ? b[LEVEL_OTHER] : 0;
      const warn = b ? b[LEVEL_WARN] : 0;
      const error = b ? b[LEVEL_ERROR] : 0;
      const total = other + warn + error;
      bar.dataset.minute = String(minute);
      bar.disabled = total === 0;
      // stacked from the bottom: errors, warnings, the rest
      const [segE, segW, segO] = bar.children;
      let y = this.place(segE, error, top, full, 0);
      y = this.place(segW, warn, top, full, y);
      this.place(segO, other, top, full, y);
      const when = dayClock(minute, span);
      const label = total === 0 ? `${when}: no lines` :
        `${when}: ${plural(total, "line")}${error ? `, ${plural(error, "error")}` : ""}${
          warn ? `, ${plural(warn, "warning")}` : ""}`;
      if (bar.lvLabel !== label) {
        bar.lvLabel = label;
        bar.setAttribute("aria-label", label);
        bar.title = label;
      }
    }
    this.setText(this.fromEl, dayClock(first, span));
    this.setText(this.toEl, dayClock(newest, span));
    this.placeTabStop();
    this.drawn = hist.version;
  }

  /** Size a segment for `n` lines of `top` (the tallest bar) at `y` px from the bottom;
   *  returns where the next one starts. Only changed values are written. */
  place(seg, n, top, full, y) {
    const px = n === 0 ? 0 : Math.max(1, Math.round((n / top) * full));
    const was = this.heights.get(seg);
    if (!was || was[0] !== px || was[1] !== y) {
      this.heights.set(seg, [px, y]);
      seg.style.height = `${px}px`;
      seg.style.bottom = `${y}px`;
    }
    return y + px;
  }

  setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  /** Keep `count` bars on the page (buttons are made once and reused). */
  use(count) {
    while (this.bars.length < count) {
      const bar = document.createElement("button");
      bar.type = "button";
      bar.className = "bar";
      bar.tabIndex = -1;
      for (const cls of ["seg-e", "seg-w", "seg-o"]) {
        const seg = document.createElement("span");
        seg.className = cls;
        bar.append(seg);
      }
      this.bars.push(bar);
    }
    if (this.count !== count) {
      this.barsEl.replaceChildren(...this.bars.slice(0, count));
      this.count = count;
    }
  }

  enabledBars() {
    return this.bars.slice(0, this.count).filter((b) => !b.disabled);
  }

  placeTabStop() {
    const bars = this.enabledBars();
    let stop = bars[bars.length - 1] || null;
    if (this.focusMinute !== null) {
      const at = bars.find((b) => Number(b.dataset.minute) === this.focusMinute);
      if (at) stop = at;
    }
    for (const b of this.bars) {
      const want = b === stop ? 0 : -1;
      if (b.tabIndex !== want) b.tabIndex = want;
    }
  }

  pick(bar) {
    this.focusMinute = Number(bar.dataset.minute);
    this.placeTabStop();
    this.onPick(this.focusMinute, bar.getAttribute("aria-label"));
  }

  onKey(e) {
    const bar = e.target instanceof Element ? e.target.closest("button.bar") : null;
    if (!bar || e.altKey || e.ctrlKey || e.metaKey) return;
    const bars = this.enabledBars();
    const i = bars.indexOf(bar);
    const to = { ArrowLeft: i - 1, ArrowRight: i + 1, Home: 0, End: bars.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    const next = bars[Math.max(0, Math.min(bars.length - 1, to))];
    if (!next) return;
    this.focusMinute = Number(next.dataset.minute);
    this.placeTabStop();
    next.focus();
  }
}

export { clock as minuteClock };
