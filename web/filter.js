// Line filters: substring (default) or regular expression, case, invert.
// A bad pattern never throws: the compiled filter carries an `error` message instead.

const MAX_RANGES = 500; // highlighted matches per line

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/**
 * @param {{q: string, regex: boolean, caseSensitive: boolean, invert: boolean}} spec
 * @returns {{spec, active: boolean, error: string|null, test(text): boolean,
 *            ranges(text): number[][]}}
 */
export function compileFilter(spec) {
  const q = spec.q || "";
  const flags = spec.caseSensitive ? "" : "i";
  const base = { spec: { ...spec, q }, active: false, error: null, test: () => true, ranges: () => [] };
  if (q === "") return base;
  let find;
  let source;
  try {
    source = spec.regex ? q : escapeRegExp(q);
    find = new RegExp(source, flags);
  } catch (e) {
    const text = String(e.message || e);
    return { ...base, error: text.slice(text.lastIndexOf(": ") + 2) || text };
  }
  const all = new RegExp(source, flags + "g");
  const test = spec.invert ? (text) => !find.test(text) : (text) => find.test(text);
  const ranges = (text) => {
    if (spec.invert) return [];
    const out = [];
    all.lastIndex = 0;
    for (let m = all.exec(text); m !== null && out.length < MAX_RANGES; m = all.exec(text)) {
      if (m[0].length === 0) {
        all.lastIndex++; // an empty match: step on, highlight nothing
        continue;
      }
      out.push([m.index, m.index + m[0].length]);
    }
    return out;
  };
  return { ...base, active: true, test, ranges };
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * True when every line `next` accepts is also accepted by `prev`, so narrowing can scan
 * only the lines `prev` kept (typing more characters of a plain substring).
 */
export function narrows(prev, next) {
  if (!prev || !prev.active || !next.active) return false;
  const a = prev.spec;
  const b = next.spec;
  if (a.regex || b.regex || a.invert || b.invert || a.caseSensitive !== b.caseSensitive) return false;
  if (!PRINTABLE_ASCII.test(a.q) || !PRINTABLE_ASCII.test(b.q)) return false;
  return a.caseSensitive ? b.q.includes(a.q) : b.q.toLowerCase().includes(a.q.toLowerCase());
}

export function sameSpec(a, b) {
  return (a.q || "") === (b.q || "") && !!a.regex === !!b.regex &&
    !!a.caseSensitive === !!b.caseSensitive && !!a.invert === !!b.invert;
}
