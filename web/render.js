// One row of the log: level colour, ANSI colours, JSON tokens and filter matches, built
// from text nodes and spans. Log text only ever reaches the page as text (textContent or
// text nodes); colours from ANSI codes go through the CSSOM, never through markup.

import { parseAnsi } from "./ansi.js";

const LEVEL_NAMES = {
  fatal: "fatal", panic: "fatal", emerg: "fatal", emergency: "fatal", alert: "fatal",
  crit: "fatal", critical: "fatal", f: "fatal",
  error: "error", err: "error", eror: "error", severe: "error", e: "error",
  warn: "warn", warning: "warn", wrn: "warn", w: "warn",
  notice: "info", info: "info", inf: "info", information: "info", informational: "info", i: "info",
  debug: "debug", dbg: "debug", d: "debug",
  trace: "trace", trc: "trace", verbose: "trace", fine: "trace", finer: "trace", finest: "trace",
};
const SCAN = 400; // levels are looked for near the start of a line
// level=error, "level":"warn", severity: INFO, "@l":"Error" ...
const KV_RE = /(?:^|[\s{,;(])"?(?:level|lvl|severity|loglevel|log_level|levelname|log\.level|@l)"?\s*[:=]\s*"?([A-Za-z]+)/di;
// An upper-case level word standing alone: "2024-01-01 ERROR api: ...", "[WARN]", "<INFO>".
const WORD_RE = /(?:^|[\s[(<|:/])(FATAL|PANIC|EMERG(?:ENCY)?|ALERT|CRIT(?:ICAL)?|ERROR|ERR|SEVERE|WARN(?:ING)?|NOTICE|INFO|DEBUG|DBG|TRACE|VERBOSE)(?=$|[\s\]):>|,.;=/-])/d;
// [error] as nginx and Apache write it, and "Error:" / "Warning:" at the start of a message.
const SOFT_RE = /\[(fatal|panic|emerg|alert|crit|critical|error|err|warn|warning|notice|info|debug|trace)\]|(?:^|\s)(Fatal|Error|Warning|Critical)(?=:)/di;
const GLOG_RE = /^([IWEF])\d{4} \d\d:\d\d:\d\d/d;

/** {level, start, end} for the level a line announces, or null. */
export function detectLevel(text) {
  const head = text.length > SCAN ? text.slice(0, SCAN) : text;
  let best = null;
  for (const re of [KV_RE, WORD_RE, SOFT_RE, GLOG_RE]) {
    const m = re.exec(head);
    if (!m) continue;
    const g = m[1] !== undefined ? 1 : 2;
    const level = LEVEL_NAMES[m[g].toLowerCase()];
    if (!level) continue;
    const [start, end] = m.indices[g];
    if (re === KV_RE) return { level, start, end }; // an explicit field wins
    if (!best || start < best.start) best = { level, start, end };
  }
  return best;
}

const JSON_TOKEN_RE = /("(?:[^"\\]|\\.)*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false|null)\b|([{}[\],:])/g;
const T_LEVEL = 1;
const T_KEY = 2;
const T_STR = 3;
const T_NUM = 4;
const T_LIT = 5;
const T_PUNCT = 6;
const TOKEN_CLASS = ["", "lvl-tok", "j-key", "j-str", "j-num", "j-lit", "j-punct"];

/** The parsed object when a whole line is one JSON object, else null. */
export function parseJsonLine(text) {
  const t = text.trim();
  if (t.length < 2 || t[0] !== "{" || t[t.length - 1] !== "}") return null;
  try {
    const value = JSON.parse(t);
    return value && typeof value === "object" ? value : null;
  } catch {
    return null;
  }
}

/** JSON tokens as sorted, non-overlapping [start, end, kind] triples. */
function jsonTokens(text) {
  const out = [];
  JSON_TOKEN_RE.lastIndex = 0;
  for (let m = JSON_TOKEN_RE.exec(text); m !== null; m = JSON_TOKEN_RE.exec(text)) {
    let kind;
    let end = m.index + m[0].length;
    if (m[1] !== undefined) {
      kind = m[2] !== undefined ? T_KEY : T_STR;
      end = m.index + m[1].length;
    } else if (m[3] !== undefined) kind = T_NUM;
    else if (m[4] !== undefined) kind = T_LIT;
    else kind = T_PUNCT;
    out.push([m.index, end, kind]);
  }
  return out;
}

function pad(n, width) {
  return String(n).padStart(width, "0");
}

export function formatTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`;
}

/**
 * Fill `row` (a div) with entry `seq` of `model`. `gutter` is "num", "time" or "none".
 * Returns true when the row holds a JSON object (it can be opened in the detail pane).
 */
export function renderRow(row, model, seq, gutter) {
  const { ring } = model;
  const notice = ring.isNotice(seq);
  const raw = ring.text(seq);
  const { text, runs } = parseAnsi(raw);
  const level = notice ? null : detectLevel(text);
  const json = notice ? null : parseJsonLine(text);
  row.className = "row" + (notice ? " notice" : "") + (level ? ` lvl-${level.level}` : "") +
    (json ? " json" : "") + (seq === model.target ? " target" : "");
  if (notice && ring.isWarn(seq)) row.dataset.tone = "warn";
  else delete row.dataset.tone;
  const parts = [];
  if (gutter !== "none") {
    const g = document.createElement("span");
    g.className = "gut";
    g.textContent = gutter === "time" ? formatTime(ring.time(seq)) : notice ? "" : String(ring.shownNo(seq));
    parts.push(g);
  }
  const body = document.createElement("span");
  body.className = "txt";
  if (notice) {
    const label = document.createElement("span");
    label.className = "notice-text";
    label.textContent = text;
    body.append(label);
  } else {
    fillText(body, text, runs, level, json, model.highlight.ranges(text));
  }
  parts.push(body);
  row.replaceChildren(...parts);
  return json !== null;
}

/**
 * Text with up to four layers of ranges, each sorted and non-overlapping: JSON tokens, the
 * level word (drawn over a JSON token), ANSI styles, and filter matches. The line is cut at
 * every range edge; each piece gets the classes of the ranges that cover it.
 */
function fillText(body, text, runs, level, json, marks) {
  const n = text.length;
  const tokens = json ? jsonTokens(text) : [];
  if (!runs.length && !level && !tokens.length && !marks.length) {
    body.textContent = text;
    return;
  }
  const layers = [
    tokens,
    level ? [[level.start, level.end, T_LEVEL]] : [],
    runs.map((r) => [r.start, r.end, r.style]),
    marks.map(([s, e]) => [s, e, true]),
  ];
  const cuts = new Set([0, n]);
  for (const layer of layers) {
    for (const [s, e] of layer) {
      cuts.add(s);
      cuts.add(e);
    }
  }
  const edges = [...cuts].filter((c) => c >= 0 && c <= n).sort((a, b) => a - b);
  const at = [0, 0, 0, 0]; // per layer: the first range that does not end before here
  const frag = document.createDocumentFragment();
  for (let k = 0; k + 1 < edges.length; k++) {
    const s = edges[k];
    const e = edges[k + 1];
    if (s === e) continue;
    const cover = [null, null, null, null];
    for (let l = 0; l < 4; l++) {
      const layer = layers[l];
      while (at[l] < layer.length && layer[at[l]][1] <= s) at[l]++;
      const r = layer[at[l]];
      if (r && r[0] <= s) cover[l] = r[2];
    }
    const chunk = text.slice(s, e);
    const [tok, lvl, style, mark] = cover;
    const t = lvl || tok;
    if (!t && !style && !mark) {
      frag.append(chunk);
      continue;
    }
    const el = document.createElement(mark ? "mark" : "span");
    let cls = t ? TOKEN_CLASS[t] : "";
    if (style && !mark) {
      // a match keeps its own colours, so it stays readable
      if (style.className) cls = cls ? `${cls} ${style.className}` : style.className;
      if (style.color) el.style.color = style.color;
      if (style.background) el.style.backgroundColor = style.background;
    }
    if (cls) el.className = cls;
    el.textContent = chunk;
    frag.append(el);
  }
  body.append(frag);
}
