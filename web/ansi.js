// ANSI escape sequences: SGR colours become styled runs, every other sequence is removed,
// and leftover control characters are shown as visible symbols (U+2400 block).
// Everything here returns plain data; nothing is ever parsed as HTML.

// CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), DCS/SOS/PM/APC (ESC P|X|^|_ ... ST),
// two-character escapes (ESC + one byte), and a lone ESC at the end of a line.
const ESC_RE = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|[ -/]*[0-~]|$)/g;
const CTRL_RE = /[\x00-\x08\x0b-\x1f\x7f]/g;

export function hasEscape(text) {
  return text.indexOf("\x1b") !== -1;
}

/** The text a person sees: escape sequences removed (used for filtering and sizes). */
export function stripAnsi(text) {
  return hasEscape(text) ? text.replace(ESC_RE, "") : text;
}

function controlPicture(ch) {
  const code = ch.charCodeAt(0);
  return String.fromCharCode(code === 0x7f ? 0x2421 : 0x2400 + code);
}

/** Control characters (other than tab) as visible symbols; the length is unchanged. */
export function showControls(text) {
  CTRL_RE.lastIndex = 0;
  return CTRL_RE.test(text) ? text.replace(CTRL_RE, controlPicture) : text;
}

// xterm's 256-colour cube and grey ramp, for codes 16-255.
function color256(n) {
  if (n < 16) return null;
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v}, ${v}, ${v})`;
  }
  const i = n - 16;
  const level = (c) => (c === 0 ? 0 : 55 + c * 40);
  return `rgb(${level(Math.floor(i / 36))}, ${level(Math.floor(i / 6) % 6)}, ${level(i % 6)})`;
}

class Sgr {
  constructor() {
    this.reset();
  }

  reset() {
    this.fg = null; // 0-15 (a palette class) or an "rgb(...)" string
    this.bg = null;
    this.bold = this.dim = this.italic = this.underline = this.inverse = this.strike = false;
  }

  get plain() {
    return this.fg === null && this.bg === null && !this.bold && !this.dim && !this.italic &&
      !this.underline && !this.inverse && !this.strike;
  }

  // Extended colour: 38;5;n or 38;2;r;g;b (also with colons). Returns codes consumed.
  extended(codes, i, key) {
    if (codes[i + 1] === 5 && codes.length > i + 2) {
      const n = codes[i + 2];
      if (n >= 0 && n <= 255) this[key] = n < 16 ? n : color256(n);
      return 2;
    }
    if (codes[i + 1] === 2 && codes.length > i + 4) {
      const [r, g, b] = codes.slice(i + 2, i + 5).map((v) => Math.max(0, Math.min(255, v)));
      this[key] = `rgb(${r}, ${g}, ${b})`;
      return 4;
    }
    return codes.length; // malformed: ignore the rest
  }

  apply(params) {
    const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number(p)));
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) this.reset();
      else if (c === 1) this.bold = true;
      else if (c === 2) this.dim = true;
      else if (c === 3) this.italic = true;
      else if (c === 4) this.underline = true;
      else if (c === 7) this.inverse = true;
      else if (c === 9) this.strike = true;
      else if (c === 22) this.bold = this.dim = false;
      else if (c === 23) this.italic = false;
      else if (c === 24) this.underline = false;
      else if (c === 27) this.inverse = false;
      else if (c === 29) this.strike = false;
      else if (c >= 30 && c <= 37) this.fg = c - 30;
      else if (c === 38) i += this.extended(codes, i, "fg");
      else if (c === 39) this.fg = null;
      else if (c >= 40 && c <= 47) this.bg = c - 40;
      else if (c === 48) i += this.extended(codes, i, "bg");
      else if (c === 49) this.bg = null;
      else if (c >= 90 && c <= 97) this.fg = c - 90 + 8;
      else if (c >= 100 && c <= 107) this.bg = c - 100 + 8;
    }
  }

  // A style for one run: CSS classes for the palette and attributes, colours for the rest.
  snapshot() {
    const classes = [];
    let fg = this.fg;
    let bg = this.bg;
    if (this.inverse) {
      [fg, bg] = [bg, fg];
      if (fg === null) classes.push("a-inv-fg");
      if (bg === null) classes.push("a-inv-bg");
    }
    let color = null;
    let background = null;
    if (typeof fg === "number") classes.push(`a-f${fg}`);
    else if (fg) color = fg;
    if (typeof bg === "number") classes.push(`a-b${bg}`);
    else if (bg) background = bg;
    if (this.bold) classes.push("a-bold");
    if (this.dim) classes.push("a-dim");
    if (this.italic) classes.push("a-italic");
    if (this.underline) classes.push("a-under");
    if (this.strike) classes.push("a-strike");
    return { className: classes.join(" "), color, background };
  }
}

/**
 * Parse one line. Returns {text, runs}: `text` is what is displayed (escapes removed,
 * control characters as symbols); `runs` lists styled ranges {start, end, style}.
 */
export function parseAnsi(line) {
  if (!hasEscape(line)) return { text: showControls(line), runs: [] };
  const sgr = new Sgr();
  const runs = [];
  let text = "";
  let last = 0;
  ESC_RE.lastIndex = 0;
  const emit = (chunk) => {
    if (!chunk) return;
    if (!sgr.plain) runs.push({ start: text.length, end: text.length + chunk.length, style: sgr.snapshot() });
    text += chunk;
  };
  for (let m = ESC_RE.exec(line); m !== null; m = ESC_RE.exec(line)) {
    emit(line.slice(last, m.index));
    last = ESC_RE.lastIndex;
    const seq = m[0];
    if (seq.length > 2 && seq[1] === "[" && seq.endsWith("m")) sgr.apply(seq.slice(2, -1));
    if (seq.length === 1) break; // a lone ESC at the end (the `$` branch matches empty)
  }
  emit(line.slice(last));
  return { text: showControls(text), runs };
}
