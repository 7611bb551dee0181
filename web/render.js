// One row of the log: level colour, ANSI colours, JSON tokens and filter matches, built
// from text nodes and spans. Log text only ever reaches the page as text (textContent or
// text nodes); colours from ANSI codes go through the CSSOM, never through markup.

import { parseAnsi } from "./ansi.js";
import { LEVEL_ERROR, LEVEL_OTHER, LEVEL_WARN } from "./buffer.js";

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

// Every line detectLevel() finds an error or a warning in matches this: most lines do not,
// and they are classified with this one test.
const MAYBE_ALARM_RE = /fatal|panic|emerg|alert|crit|err|eror|severe|warn|wrn|^[EWF]\d{4} |(?:level|lvl|severity|@l)"?\s*[:=]\s*"?[efw]\b/i;
const LEVEL_CLASS = { fatal: LEVEL_ERROR, error: LEVEL_ERROR, warn: LEVEL_WARN };

/** LEVEL_ERROR (errors and worse), LEVEL_WARN or LEVEL_OTHER, as detectLevel() reads the line. */
export function levelClass(text) {
  const head = text.length > SCAN ? text.slice(0, SCAN) : text;
  if (!MAYBE_ALARM_RE.test(head)) return LEVEL_OTHER;
  const found = detectLevel(head);
  return found ? LEVEL_CLASS[found.level] ?? LEVEL_OTHER : LEVEL_OTHER;
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

// The first matches of the filter in a row are <mark> elements; the others (a short query
// can match dozens of times a line) are painted through the CSS Custom Highlight API: no
// element, so no style, layout or paint of an extra box. `row.lvHits` keeps their ranges,
// and the view hands them to HIGHLIGHT after each paint.
const MARK_ELEMENTS = 4;
export const HIGHLIGHT = "logtail-match";
export const CAN_HIGHLIGHT = typeof CSS !== "undefined" && !!CSS.highlights &&
  typeof Highlight === "function" && typeof StaticRange === "function";

function pad(n, width) {
  return String(n).padStart(width, "0");
}

export function formatTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`;
}

/**
 * Fill `row` (a div) with entry `seq` of `model`. `gutter` is "num", "time" or "none".
 * In a merged view the row shows its file as a coloured badge after the gutter.
 * `brief` ({gutterCh}, while lines fly past faster than anyone reads, see view.js): the
 * row keeps its level tint and bar, line number, file badge and filter matches (painted
 * as highlights), in the same columns, but as inline text: no sticky gutter, no JSON,
 * ANSI or level-word spans; a row drawn brief before is rewritten in place (its text
 * nodes' data), so no element is made, styled or laid out anew. The view draws it in full
 * once the stream slows or the view stops following.
 */
export function renderRow(row, model, seq, gutter, brief = null) {
  const { ring } = model;
  const notice = ring.isNotice(seq);
  const raw = ring.text(seq);
  const { text, runs } = parseAnsi(raw);
  const level = notice ? null : detectLevel(text);
  const json = notice ? null : parseJsonLine(text);
  const marks = notice ? [] : model.highlight.ranges(text);
  const short = brief !== null && !notice && (CAN_HIGHLIGHT || !marks.length);
  const cls = "row" + (notice ? " notice" : "") + (level ? ` lvl-${level.level}` : "") +
    (json ? " json" : "") + (seq === model.target ? " target" : "") + (short ? " brief" : "");
  if (row.className !== cls) row.className = cls;
  const tone = notice && ring.isWarn(seq);
  if (tone !== !!row.lvTone) { // (touching dataset on every row costs)
    row.lvTone = tone;
    if (tone) row.dataset.tone = "warn";
    else delete row.dataset.tone;
  }
  const gut = gutter === "none" ? null : gutter === "time" ? formatTime(ring.time(seq)) :
    notice ? "" : String(ring.shownNo(seq));
  const file = model.merged ? ring.file(seq) : 0;
  if (short) {
    const parts = briefParts(row, gut !== null, file !== 0);
    // the gutter's columns: its padding, the number right-aligned, its padding
    parts.gutterCh = brief.gutterCh;
    if (parts.num) setData(parts.num, ` ${gut.padStart(brief.gutterCh)} `);
    if (parts.badge) fillBadge(parts.badge, model, file);
    setText(parts.body, text);
    row.lvHits = marks.length ? rangesOver([parts.body.firstChild], [0], marks) : null;
    return;
  }
  row.lvParts = null;
  const els = [];
  if (gut !== null) {
    const g = textSpan("gut");
    setText(g, gut);
    els.push(g);
  }
  if (file) els.push(fillBadge(textSpan(""), model, file));
  const body = document.createElement("span");
  body.className = "txt";
  row.lvHits = null;
  if (notice) {
    const label = document.createElement("span");
    label.className = "notice-text";
    label.textContent = text;
    body.append(label);
  } else {
    row.lvHits = fillText(body, text, runs, level, json, marks);
  }
  els.push(body);
  row.replaceChildren(...els);
}

/** A span holding one text node. */
function textSpan(className) {
  const el = document.createElement("span");
  el.className = className;
  el.append(document.createTextNode(""));
  return el;
}

/** Write the text of a span made by textSpan() only when it changes. */
function setText(el, text) {
  setData(el.firstChild, text);
}

function setData(node, text) {
  if (node.data !== text) node.data = text;
}

/** The line's file in its colour (the name as text); long names are cut here, not by CSS
 *  (overflow and ellipsis cost layout and paint in every row). */
function fillBadge(badge, model, file) {
  const name = model.fileNames[file];
  const cls = `badge c${model.fileColours[file]}`;
  if (badge.className !== cls) badge.className = cls;
  const cut = name.length > model.badgeCh;
  setText(badge, cut ? `${name.slice(0, model.badgeCh - 1)}…` : name);
  if (cut) badge.title = name;
  else if (badge.title) badge.removeAttribute("title");
  return badge;
}

/** The parts of a brief row (number, badge, text): the row's own when it is brief with
 *  the same parts already, else new ones. */
function briefParts(row, withNumber, withBadge) {
  const had = row.lvParts;
  if (had && !!had.num === withNumber && !!had.badge === withBadge) return had;
  const parts = { num: withNumber ? document.createTextNode("") : null,
    badge: withBadge ? textSpan("") : null, body: textSpan("txt"), gutterCh: 0 };
  row.replaceChildren(...[parts.num, parts.badge, parts.body].filter((node) => node));
  row.lvParts = parts;
  return parts;
}

/**
 * Text with up to four layers of ranges, each sorted and non-overlapping: JSON tokens, the
 * level word (drawn over a JSON token), ANSI styles, and filter matches. The line is cut at
 * every range edge; each piece gets the classes of the ranges that cover it. Matches after
 * the first MARK_ELEMENTS are not cut out: they are returned as StaticRanges over the text
 * nodes, to be painted as highlights (null when there are none).
 */
function fillText(body, text, runs, level, json, marks) {
  const n = text.length;
  const tokens = json ? jsonTokens(text) : [];
  let painted = null;
  if (CAN_HIGHLIGHT && marks.length > MARK_ELEMENTS) {
    painted = marks.slice(MARK_ELEMENTS);
    marks = marks.slice(0, MARK_ELEMENTS);
  }
  if (!runs.length && !level && !tokens.length && !marks.length) {
    body.textContent = text;
    return painted && rangesOver([body.firstChild], [0], painted);
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
  const nodes = painted ? [] : null; // each piece's text node, and where it starts
  const starts = painted ? [] : null;
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
    let node;
    if (!t && !style && !mark) {
      node = document.createTextNode(chunk);
      frag.append(node);
    } else {
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
      node = el.firstChild;
      frag.append(el);
    }
    if (nodes) {
      nodes.push(node);
      starts.push(s);
    }
  }
  body.append(frag);
  return painted && rangesOver(nodes, starts, painted);
}

/** StaticRanges for `ranges` ([start, end] in the text) over text nodes that hold the text
 *  in order, node i from offset starts[i]. */
function rangesOver(nodes, starts, ranges) {
  const out = [];
  let i = 0;
  for (const [s, e] of ranges) {
    while (i + 1 < nodes.length && starts[i + 1] <= s) i++;
    let j = i;
    while (j + 1 < nodes.length && starts[j + 1] < e) j++;
    out.push(new StaticRange({ startContainer: nodes[i], startOffset: s - starts[i],
      endContainer: nodes[j], endOffset: e - starts[j] }));
  }
  return out;
}
