// The retained lines and what is on show: a bounded ring, a filter, and the list of
// entries that pass it. Re-filtering runs in time slices (newest first), so even a large
// buffer or a slow pattern never blocks the page for long.

import { stripAnsi } from "./ansi.js";
import { FLAG_ESC, KIND_LINE, KIND_NOTICE, Ring, SeqList } from "./buffer.js";
import { compileFilter, narrows } from "./filter.js";

const FIRST_SLICE_MS = 8; // the pass straight after a keystroke (the newest lines first)
const SLICE_MS = 8; // later passes, between frames

const NONE = compileFilter({ q: "" });

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
    return this.ring.isNotice(seq) || this.filter.test(this.plain(seq));
  }

  /** New entries at the end; `ids` ({key, offsets}, from lineids.js) gives lines their ids. */
  append(texts, time, kind = KIND_LINE, ids = null) {
    const { ring, list } = this;
    const notice = (kind & KIND_NOTICE) !== 0;
    const key = ids ? ring.keyId(ids.key) : -1;
    for (let i = 0; i < texts.length; i++) {
      const text = texts[i];
      if (ring.size >= ring.cap) this.evictOne();
      const seq = ring.push(text, time, kind, key, ids ? ids.offsets[i] : 0);
      if (text.length > this.maxLen) this.maxLen = text.length;
      if (notice || this.filter.test(ring.hasEscape(seq) ? stripAnsi(text) : text)) {
        list.push(seq, this.units(seq), notice);
      }
    }
    this.onChange(true);
  }

  /**
   * Earlier lines, oldest first, in front of everything retained: `lines` is a list of
   * {text, key, offset} (key and offset of the line id; key null for none). Only as many
   * as ring.room() allows are taken, the newest of them. Returns the seqs given, oldest first.
   */
  prepend(lines, time) {
    const { ring, list } = this;
    const take = Math.min(lines.length, ring.room());
    const seqs = new Array(take);
    const filtering = this.job !== null;
    for (let i = lines.length - 1, j = take - 1; j >= 0; i--, j--) {
      const { text, key, offset } = lines[i];
      const seq = ring.unshift(text, time, key === null ? -1 : ring.keyId(key), offset);
      seqs[j] = seq;
      if (text.length > this.maxLen) this.maxLen = text.length;
      if (!filtering && this.filter.test(ring.hasEscape(seq) ? stripAnsi(text) : text)) {
        list.unshift(seq, this.units(seq), false);
      }
    }
    this.version++; // line numbers count from the new first line
    // a filter pass under way started from the old front: start it again over everything
    if (filtering) this.refilter(this.filter, this.highlight, true);
    else this.onChange(false);
    return seqs;
  }

  evictOne() {
    const notice = this.ring.isNotice(this.ring.head);
    const seq = this.ring.evict();
    if (this.list.length && this.list.first() === seq) this.list.shift(notice);
  }

  clear() {
    this.ring.clear();
    this.list.reset();
    this.job = null;
    this.maxLen = 0;
    this.target = -1;
    this.onChange(false);
  }

  setCap(cap) {
    if (cap === this.ring.cap) return;
    this.ring = this.ring.resized(cap);
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
    const { texts, flags } = ring;
    const cap = ring.cap;
    const { source, lo, filter } = job;
    const test = filter.test;
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
      if (notice || test((f & FLAG_ESC) !== 0 ? stripAnsi(texts[slot]) : texts[slot])) {
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

  /** The retained entries on show, oldest first, as raw log lines (notices left out). */
  shownLines() {
    const out = [];
    const { list, ring } = this;
    for (let i = 0; i < list.length; i++) {
      const seq = list.get(i);
      if (!ring.isNotice(seq)) out.push(ring.text(seq));
    }
    return out;
  }
}
