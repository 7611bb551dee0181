// Line ids: a line's permanent address in its file's history, `<generation key>:<offset hex>`
// (see "Line ids on streams" in the README). A stream opened with `ids=1` says where each
// batch's lines are in a `line-ids:` field; history answers (`lines`, `search`) carry the
// ids themselves. Here: reading that field, and the permalink a line id makes.

const ASCII = /^[\x00-\x7f]*$/;

/** The length in bytes of `text` encoded as UTF-8 (what the server counts in offsets). */
export function utf8Length(text) {
  if (ASCII.test(text)) return text.length;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        n += 4; // a pair of surrogates: one code point above U+FFFF
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/**
 * The `line-ids` field of a batch of `lines`: `{key, offsets}` (one number per line), or
 * null when it is absent or does not fit the batch. With one offset for several lines,
 * each next line starts where the previous one ended, plus its newline.
 */
export function batchIds(field, lines) {
  if (!field || !lines.length) return null;
  const colon = field.lastIndexOf(":");
  if (colon <= 0) return null;
  const key = field.slice(0, colon);
  const parts = field.slice(colon + 1).split(",");
  const offsets = new Array(lines.length);
  if (parts.length === lines.length) {
    for (let i = 0; i < parts.length; i++) {
      const off = parseHex(parts[i]);
      if (off === null) return null;
      offsets[i] = off;
    }
  } else if (parts.length === 1) {
    let off = parseHex(parts[0]);
    if (off === null) return null;
    for (let i = 0; i < lines.length; i++) {
      offsets[i] = off;
      off += utf8Length(lines[i]) + 1;
    }
  } else return null;
  return { key, offsets };
}

function parseHex(text) {
  if (!/^[0-9a-fA-F]{1,13}$/.test(text)) return null; // up to 2^52: exact as a number
  return parseInt(text, 16);
}

/** `{key, offset}` of a line id, or null when it is not one. */
export function splitId(id) {
  if (typeof id !== "string") return null;
  const colon = id.lastIndexOf(":");
  if (colon <= 0) return null;
  const offset = parseHex(id.slice(colon + 1));
  return offset === null ? null : { key: id.slice(0, colon), offset };
}

export function joinId(key, offset) {
  return `${key}:${offset.toString(16)}`;
}

/** The address of `line` of `file` in the viewer at `base`: `...#file=<name>&line=<id>`. */
export function permalink(base, file, line) {
  const url = new URL(base);
  url.hash = `file=${encodeURIComponent(file)}&line=${encodeURIComponent(line).replace(/%3A/gi, ":")}`;
  return url.href;
}
