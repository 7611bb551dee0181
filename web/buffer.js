// Bounded storage for retained lines, and the ordered list of the ones on show.
//
// Every entry gets a sequence number (`seq`); the ring keeps seqs in [head, tail). New
// entries get the next seq at the tail; earlier lines loaded from the history go in front
// of the head (seqs start high, so there is room below them). `SeqList` is a deque of seqs
// in increasing order with running totals of their heights (in text rows), so positions
// stay O(1) while old entries are evicted at the front, new ones arrive at the back, and a
// filter pass (or lines loaded from the history) fills in from the front.

export const KIND_LINE = 0;
export const KIND_NOTICE = 1;
export const FLAG_ESC = 2; // the text holds escape sequences
export const NOTICE_WARN = 4; // with KIND_NOTICE: something went wrong (shown in amber)
// A line's level as the overview counts it
export const LEVEL_OTHER = 0;
export const LEVEL_WARN = 1;
export const LEVEL_ERROR = 2;
// Seqs start here: room below for lines put in front, and small integers stay fast for long.
const FIRST_SEQ = 2 ** 24;

export class Ring {
  constructor(cap) {
    this.cap = cap;
    this.texts = new Array(cap);
    this.times = new Float64Array(cap);
    this.nums = new Float64Array(cap); // line number in this view (0 for notices)
    this.flags = new Uint8Array(cap);
    this.keyOf = new Int32Array(cap); // line id: index into `keys` (-1: none), and offset
    this.offs = new Float64Array(cap);
    this.fileOf = new Uint16Array(cap); // the entry's file in a merged view (0: none)
    this.levels = new Uint8Array(cap); // LEVEL_OTHER, LEVEL_WARN or LEVEL_ERROR
    this.minutes = new Int32Array(cap); // the minute of the line's time (ms / 60,000)
    this.keys = []; // generation keys of the line ids, each stored once
    this.keyIndex = new Map();
    this.head = FIRST_SEQ;
    this.tail = FIRST_SEQ;
    this.lines = 0; // retained entries that are log lines (not notices)
    this.lineNo = 0; // last line number handed out
    this.lowNo = 1; // lowest line number handed out (below 1 once lines were put in front)
    this.evicted = 0; // log lines dropped to respect the cap, since the last clear
  }

  get size() {
    return this.tail - this.head;
  }

  slot(seq) {
    return seq % this.cap;
  }

  has(seq) {
    return seq >= this.head && seq < this.tail;
  }

  text(seq) {
    return this.texts[seq % this.cap];
  }

  time(seq) {
    return this.times[seq % this.cap];
  }

  num(seq) {
    return this.nums[seq % this.cap];
  }

  isNotice(seq) {
    return (this.flags[seq % this.cap] & KIND_NOTICE) !== 0;
  }

  /** The number shown in the gutter: from 1, counting lines put in front too. */
  shownNo(seq) {
    return this.nums[seq % this.cap] - Math.min(this.lowNo, 1) + 1;
  }

  maxShownNo() {
    return this.lineNo - Math.min(this.lowNo, 1) + 1;
  }

  /** The index of a generation key (stored once). */
  keyId(key) {
    let k = this.keyIndex.get(key);
    if (k === undefined) {
      k = this.keys.length;
      this.keys.push(key);
      this.keyIndex.set(key, k);
    }
    return k;
  }

  /** The line id of entry seq (`<key>:<offset hex>`), or null when it has none. */
  lineId(seq) {
    const s = seq % this.cap;
    const k = this.keyOf[s];
    return k < 0 ? null : `${this.keys[k]}:${this.offs[s].toString(16)}`;
  }

  file(seq) {
    return this.fileOf[seq % this.cap];
  }

  isWarn(seq) {
    return (this.flags[seq % this.cap] & NOTICE_WARN) !== 0;
  }

  hasEscape(seq) {
    return (this.flags[seq % this.cap] & FLAG_ESC) !== 0;
  }

  /** Drop the oldest entry; returns its seq. */
  evict() {
    const seq = this.head;
    const s = seq % this.cap;
    if ((this.flags[s] & KIND_NOTICE) === 0) {
      this.lines--;
      this.evicted++;
    }
    this.texts[s] = undefined;
    this.head++;
    return seq;
  }

  /** Store one entry (the caller evicts first when full); returns its seq. `key` is the
   *  index of its line id's generation key (-1: no id), `off` the offset. */
  push(text, time, kind, key = -1, off = 0) {
    const seq = this.tail++;
    const s = seq % this.cap;
    this.store(s, text, time, kind, key, off);
    if ((kind & KIND_NOTICE) === 0) {
      this.lines++;
      this.nums[s] = ++this.lineNo;
    } else {
      this.nums[s] = 0;
    }
    return seq;
  }

  /** How many lines fit in front of the oldest entry. */
  room() {
    return Math.min(this.cap - this.size, this.head);
  }

  /** Store a log line in front of the oldest entry (the caller checks room()); returns its seq. */
  unshift(text, time, key = -1, off = 0) {
    let no = this.lineNo; // the number before the oldest line retained, or before the next
    for (let seq = this.head; seq < this.tail; seq++) {
      if (!this.isNotice(seq)) {
        no = this.num(seq) - 1;
        break;
      }
    }
    const seq = --this.head;
    const s = seq % this.cap;
    this.store(s, text, time, KIND_LINE, key, off);
    this.lines++;
    this.nums[s] = no;
    if (no < this.lowNo) this.lowNo = no;
    return seq;
  }

  store(s, text, time, kind, key, off) {
    this.texts[s] = text;
    this.times[s] = time;
    let flags = kind;
    if (text.indexOf("\x1b") !== -1) flags |= FLAG_ESC;
    this.flags[s] = flags;
    this.keyOf[s] = key;
    this.offs[s] = off;
  }

  clear() {
    this.texts.fill(undefined);
    this.head = this.tail;
    this.lines = 0;
    this.evicted = 0;
    this.lowNo = 1;
    this.keys = [];
    this.keyIndex = new Map();
  }

  /** A copy with a new capacity, keeping the newest entries (and the seqs). */
  resized(cap) {
    const out = new Ring(cap);
    const start = Math.max(this.head, this.tail - cap);
    out.head = out.tail = start;
    out.lineNo = this.lineNo;
    out.lowNo = this.lowNo;
    out.keys = this.keys;
    out.keyIndex = this.keyIndex;
    out.evicted = this.evicted;
    for (let seq = this.head; seq < start; seq++) if (!this.isNotice(seq)) out.evicted++;
    for (let seq = start; seq < this.tail; seq++) {
      const a = seq % this.cap;
      const b = seq % cap;
      out.texts[b] = this.texts[a];
      out.times[b] = this.times[a];
      out.nums[b] = this.nums[a];
      out.flags[b] = this.flags[a];
      out.keyOf[b] = this.keyOf[a];
      out.offs[b] = this.offs[a];
      out.fileOf[b] = this.fileOf[a];
      out.levels[b] = this.levels[a];
      out.minutes[b] = this.minutes[a];
      if ((this.flags[a] & KIND_NOTICE) === 0) out.lines++;
    }
    out.tail = this.tail;
    return out;
  }
}

export class SeqList {
  constructor(cap) {
    this.cap = Math.max(1, cap);
    this.seqs = new Float64Array(this.cap);
    this.cum = new Float64Array(this.cap); // absolute running total of units before each entry
    this.start = 0;
    this.length = 0;
    this.endCum = 0;
    this.notices = 0; // entries that are notices (not counted as matching lines)
  }

  reset() {
    this.start = 0;
    this.length = 0;
    this.endCum = 0;
    this.notices = 0;
    return this;
  }

  get(i) {
    return this.seqs[(this.start + i) % this.cap];
  }

  first() {
    return this.length ? this.seqs[this.start] : Infinity;
  }

  last() {
    return this.length ? this.get(this.length - 1) : -Infinity;
  }

  push(seq, units, notice) {
    const s = (this.start + this.length) % this.cap;
    this.seqs[s] = seq;
    this.cum[s] = this.endCum;
    this.endCum += units;
    this.length++;
    if (notice) this.notices++;
  }

  unshift(seq, units, notice) {
    const before = this.length ? this.cum[this.start] : this.endCum;
    this.start = (this.start - 1 + this.cap) % this.cap;
    this.seqs[this.start] = seq;
    this.cum[this.start] = before - units;
    this.length++;
    if (notice) this.notices++;
  }

  shift(notice) {
    this.start = (this.start + 1) % this.cap;
    this.length--;
    if (notice) this.notices--;
    if (this.length === 0) this.start = 0;
  }

  /** Units (text rows) above entry i; i may equal length (the total). */
  offset(i) {
    if (this.length === 0) return 0;
    const base = this.cum[this.start];
    return (i >= this.length ? this.endCum : this.cum[(this.start + i) % this.cap]) - base;
  }

  units(i) {
    return this.offset(i + 1) - this.offset(i);
  }

  /** The last index whose offset is <= u (0 when empty or u <= 0), among the first n. */
  indexAt(u, n = this.length) {
    let lo = 0;
    let hi = n - 1;
    if (hi < 0) return 0;
    const base = this.cum[this.start];
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.cum[(this.start + mid) % this.cap] - base <= u) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The first index whose seq is >= seq (length when none). */
  lowerBound(seq) {
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.seqs[(this.start + mid) % this.cap] < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Recompute every entry's height (wrap mode, or the width changed). */
  remeasure(unitsOf) {
    let total = 0;
    for (let i = 0; i < this.length; i++) {
      const s = (this.start + i) % this.cap;
      this.cum[s] = total;
      total += unitsOf(this.seqs[s]);
    }
    this.endCum = total;
  }

}
