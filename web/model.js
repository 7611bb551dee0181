// The retained lines and what is on show: a bounded ring, a filter, and the list of
// entries that pass it. Re-filtering runs in time slices (newest first), so even a large
// buffer or a slow pattern never blocks the page for long.
//
// In a merged view (several files, one stream) every entry knows its file; a file can be
// hidden, which filters its entries out like the filter does. Each line's level and minute
// are found once, as it arrives, and counted in `hist` (the overview's bars).

import { stripAnsi } from "./ansi.js";
import { FLAG_ESC, KIND_LINE, KIND_NOTICE, Ring, SeqList } from "./buffer.js";
import { assignColours, colourOf } from "./files.js";
import { compileFilter, narrows } from "./filter.js";
import { levelClass } from "./render.js";
import { Histogram, minuteOf } from "./timeline.js";

const FIRST_SLICE_MS = 8; // the pass straight after a keystroke (the newest lines first)
const SLICE_MS = 8; // later passes, between frames

const NONE = compileFilter({ q: "" });
const MINUTE_MS = 60_000;
const BADGE_MAX_CH = 18; // longer file names are cut (with an ellipsis) in the rows' badges

export class Model {
  constructor(cap, onChange) {
    this.ring = new Ring(cap);
    this.list = new SeqList(cap);
    this.spare = new SeqList(cap); // the next filter pass fills this one: no new arrays
    this.filter = NONE; // decides which lines are on show
    this.highlight = NONE; // decides what is marked in them
    this.onChange = onChange; // (dataOnly): true when lines arrived, false for the rest
    this.unitsOf = null; // seq -> text rows, set by the view in wrap mode
    this.job = null;
    this.maxLen = 0;
    this.version = 0; // bumped when the look of already rendered rows changes
    this.enough = Infinity; // matches that fill the screen (set by the view while following)
    this.target = -1; // the entry a permalink points at (drawn highlighted)
    this.hist = new Histogram(); // retained lines per minute and level
    this.merged = false; // several files in one view: rows show their file
    this.resetFiles();
    this.hiddenNames = new Set(); // files whose entries are not on show
    // later slices run just after a frame is produced, so they never delay one
    const channel = new MessageChannel();
    channel.port1.onmessage = () => this.runJob(SLICE_MS);
    this.tick = () => requestAnimationFrame(() => channel.port2.postMessage(0));
  }

  get cap() {
    return this.ring.cap;
  }

  get filtering() {
    return this.job !== null;
  }

  get progress() {
    if (!this.job) return 1;
    return 1 - this.job.cursor / Math.max(1, this.job.total);
  }

  /** The text a person sees (and filters on): escape sequences removed. */
  plain(seq) {
    const text = this.ring.text(seq);
    return this.ring.hasEscape(seq) ? stripAnsi(text) : text;
  }

  units(seq) {
    return this.unitsOf ? this.unitsOf(seq) : 1;
  }

  matches(seq) {
    if (this.anyHidden && this.hidden[this.ring.file(seq)]) return false;
    return this.ring.isNotice(seq) || this.filter.test(this.plain(seq));
  }

  // -- files of a merged view ------------------------------------------------------------

  /** A new view of the files `names` (in a merged view; [] otherwise): numbers and colours. */
  resetFiles(names = []) {
    this.colours = assignColours(names);
    this.fileNames = [""]; // by file number; 0: no file (one file on show, or the page's own)
    this.fileColours = [0];
    this.fileNumbers = new Map();
    this.hidden = [false];
    this.anyHidden = false;
    this.lastMinute = [-1]; // by file: the minute of its last line (for lines without a time)
    this.badgeCh = 0; // the longest file name, in characters (at most BADGE_MAX_CH)
    for (const name of names) this.fileNo(name);
  }

  /** The number of file `name` in this view (from 1), made on first use. */
  fileNo(name) {
    let n = this.fileNumbers.get(name);
    if (n === undefined) {
      n = this.fileNames.length;
      this.fileNames.push(name);
      this.fileColours.push(this.colours.get(name) ?? colourOf(name));
      this.fileNumbers.set(name, n);
      const hidden = this.hiddenNames.has(name);
      this.hidden.push(hidden);
      if (hidden) this.anyHidden = true;
      this.lastMinute.push(-1);
      this.badgeCh = Math.min(BADGE_MAX_CH, Math.max(this.badgeCh, name.length));
    }
    return n;
  }

  fileName(seq) {
    return this.fileNames[this.ring.file(seq)] || "";
  }

  /** Hide the entries of the files in `names` (a Set), show the others: no reconnect. */
  setHidden(names) {
    this.hiddenNames = new Set(names);
    this.anyHidden = false;
    for (let n = 1; n < this.fileNames.length; n++) {
      this.hidden[n] = this.hiddenNames.has(this.fileNames[n]);
      if (this.hidden[n]) this.anyHidden = true;
    }
    this.refilter(this.filter, this.highlight, true);
  }

  /**
   * New entries at the end; `ids` ({key, offsets}, from lineids.js) gives lines their ids,
   * `file` is the file's number in a merged view (fileNo), 0 otherwise.
   */
  append(texts, time, kind = KIND_LINE, ids = null, file = 0) {
    const { ring, list, hist } = this;
    const notice = (kind & KIND_NOTICE) !== 0;
    const key = ids ? ring.keyId(ids.key) : -1;
    const shown = !(this.anyHidden && this.hidden[file]);
    const now = time / MINUTE_MS;
    const arrival = Math.floor(now);
    const cap = ring.cap;
    const { levels, minutes, fileOf } = ring;
    let last = this.lastMinute[file];
    for (let i = 0; i < texts.length; i++) {
      const text = texts[i];
      if (ring.size >= cap) this.evictOne();
      const seq = ring.push(text, time, kind, key, ids ? ids.offsets[i] : 0);
      const s = seq % cap;
      fileOf[s] = file;
      if (text.length > this.maxLen) this.maxLen = text.length;
      if (notice) {
        if (shown) list.push(seq, this.units(seq), true);
        continue;
      }
      const plain = ring.hasEscape(seq) ? stripAnsi(text) : text;
      const level = levelClass(plain);
      let minute = minuteOf(plain, now);
      if (minute < 0) minute = last < 0 ? arrival : last;
      last = minute;
      levels[s] = level;
      minutes[s] = minute;
      hist.add(minute, level);
      if (shown && this.filter.test(plain)) list.push(seq, this.units(seq), false);
    }
    this.lastMinute[file] = last;
    this.onChange(true);
  }

  /**
   * Earlier lines, oldest first, in front of everything retained: `lines` is a list of
   * {text, key, offset} (key and offset of the line id; key null for none). Only as many
   * as ring.room() allows are taken, the newest of them. Returns the seqs given, oldest first.
   */
  prepend(lines, time, file = 0) {
    const { ring, list, hist } = this;
    const take = Math.min(lines.length, ring.room());
    const seqs = new Array(take);
    const filtering = this.job !== null;
    const shown = !(this.anyHidden && this.hidden[file]);
    const minutes = this.earlierMinutes(lines.slice(lines.length - take), time);
    for (let i = lines.length - 1, j = take - 1; j >= 0; i--, j--) {
      const { text, key, offset } = lines[i];
      const seq = ring.unshift(text, time, key === null ? -1 : ring.keyId(key), offset);
      const s = seq % ring.cap;
      seqs[j] = seq;
      if (text.length > this.maxLen) this.maxLen = text.length;
      const plain = ring.hasEscape(seq) ? stripAnsi(text) : text;
      const level = levelClass(plain);
      ring.fileOf[s] = file;
      ring.levels[s] = level;
      ring.minutes[s] = minutes[j];
      hist.add(minutes[j], level);
      if (!filtering && shown && this.filter.test(plain)) {
        list.unshift(seq, this.units(seq), false);
      }
    }
    this.version++; // line numbers count from the new first line
    // a filter pass under way started from the old front: start it again over everything
    if (filtering) this.refilter(this.filter, this.highlight, true);
    else this.onChange(false);
    return seqs;
  }

  /** The minutes of earlier lines (oldest first): lines without a time of their own take
   *  the one before them, the first ones the first time that follows (else the oldest
   *  retained line's, else the arrival). */
  earlierMinutes(lines, time) {
    const now = time / MINUTE_MS;
    const out = lines.map(({ text }) => minuteOf(text.indexOf("\x1b") === -1 ? text : stripAnsi(text), now));
    const { ring } = this;
    let next = -1;
    for (let seq = ring.head; seq < ring.tail && next < 0; seq++) {
      if (!ring.isNotice(seq)) next = ring.minutes[seq % ring.cap];
    }
    let fill = out.find((m) => m >= 0) ?? (next >= 0 ? next : Math.floor(now));
    for (let i = 0; i < out.length; i++) {
      if (out[i] < 0) out[i] = fill;
      else fill = out[i];
    }
    return out;
  }

  evictOne() {
    const { ring } = this;
    const head = ring.head;
    const notice = ring.isNotice(head);
    if (!notice) {
      const s = head % ring.cap;
      this.hist.remove(ring.minutes[s], ring.levels[s]);
    }
    const seq = ring.evict();
    if (this.list.length && this.list.first() === seq) this.list.shift(notice);
  }

  clear() {
    this.ring.clear();
    this.hist.clear();
    this.lastMinute.fill(-1);
    this.list.reset();
    this.job = null;
    this.maxLen = 0;
    this.target = -1;
    this.onChange(false);
  }

  setCap(cap) {
    if (cap === this.ring.cap) return;
    this.ring = this.ring.resized(cap);
    this.recount();
    this.list = new SeqList(cap);
    this.spare = new SeqList(cap);
    this.refilter(this.filter, this.highlight, true);
  }

  /**
   * Show the lines `filter` accepts and mark what `highlight` finds. Returns true when
   * the pass finished at once (the common case), false when it goes on in slices.
   */
  refilter(filter, highlight = filter, force = false) {
    const prev = this.filter;
    this.highlight = highlight;
    this.version++;
    if (!force && filter === prev && !this.job) {
      this.onChange(false);
      return true;
    }
    // narrowing reads the entries the last filter kept (that list is left as it is);
    // otherwise every retained entry. Either way the pass fills the spare list.
    const source = !force && !this.job && narrows(prev, filter) ? this.list : null;
    this.filter = filter;
    const next = this.spare.reset();
    this.spare = this.list;
    this.list = next;
    const total = source ? source.length : this.ring.size;
    this.job = { source, lo: this.ring.head, cursor: total, total, filter };
    return this.runJob(FIRST_SLICE_MS, this.enough);
  }

  /** Count the retained lines per minute again (only when the cap changes). */
  recount() {
    const { ring, hist } = this;
    hist.clear();
    for (let seq = ring.head; seq < ring.tail; seq++) {
      const s = seq % ring.cap;
      if ((ring.flags[s] & KIND_NOTICE) === 0) hist.add(ring.minutes[s], ring.levels[s]);
    }
  }

  /** Heights changed (wrap toggled, width changed): recompute the running totals. */
  remeasure() {
    this.list.remeasure((seq) => this.units(seq));
    this.version++;
    this.onChange(false);
  }

  touch() {
    this.version++;
    this.onChange(false);
  }

  /** Filter for `budget` ms, or until `enough` matches are found (newest first). */
  runJob(budget, enough = Infinity) {
    const job = this.job;
    if (!job) return true;
    const { ring, list } = this;
    const { texts, flags, fileOf } = ring;
    const cap = ring.cap;
    const { source, lo, filter } = job;
    const test = filter.test;
    const hidden = this.anyHidden ? this.hidden : null;
    const wrapUnits = this.unitsOf;
    const deadline = performance.now() + budget;
    const stopAt = list.length + enough;
    let i = job.cursor;
    while (i > 0) {
      i--;
      const seq = source ? source.get(i) : lo + i;
      if (seq < ring.head) {
        i = 0; // the rest was evicted while we worked
        break;
      }
      const slot = seq % cap;
      const f = flags[slot];
      const notice = (f & KIND_NOTICE) !== 0;
      if (hidden !== null && hidden[fileOf[slot]]) {
        // a hidden file's entry: not on show
      } else if (notice || test((f & FLAG_ESC) !== 0 ? stripAnsi(texts[slot]) : texts[slot])) {
        list.unshift(seq, wrapUnits ? wrapUnits(seq) : 1, notice);
      }
      if ((i & 255) === 0 && (list.length >= stopAt || performance.now() > deadline)) break;
    }
    job.cursor = i;
    const done = i === 0;
    if (done) this.job = null;
    else this.tick();
    this.onChange(false);
    return done;
  }

  /** The retained entries on show, oldest first, as raw log lines (notices left out);
   *  in a merged view each starts with its file's name and ": ", as `format=text` has it. */
  shownLines() {
    const out = [];
    const { list, ring } = this;
    for (let i = 0; i < list.length; i++) {
      const seq = list.get(i);
      if (ring.isNotice(seq)) continue;
      out.push(this.merged ? `${this.fileName(seq)}: ${ring.text(seq)}` : ring.text(seq));
    }
    return out;
  }

  /** The first entry on show that is a line of `minute`, or -1. */
  firstShownIn(minute) {
    const { list, ring } = this;
    const { minutes, flags } = ring;
    const cap = ring.cap;
    for (let i = 0; i < list.length; i++) {
      const seq = list.get(i);
      const s = seq % cap;
      if ((flags[s] & KIND_NOTICE) === 0 && minutes[s] === minute) return seq;
    }
    return -1;
  }
}
