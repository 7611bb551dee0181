// A virtual list: only the rows in (or near) the viewport exist in the page, whatever the
// number of retained lines. Heights are counted in text rows (1 per line without wrap; an
// estimate from the line's length in wrap mode, exact for monospace ASCII), so positions
// come from running totals instead of measuring the DOM.
//
// Following: while at the bottom, new lines keep it there. Scrolling up stops following
// (lines keep arriving below); scrolling back to the bottom follows again. An explicit
// pause freezes the list: newer lines are kept but not shown until resume.

import { stripAnsi } from "./ansi.js";
import { CAN_HIGHLIGHT, HIGHLIGHT, renderRow } from "./render.js";

const MAX_PX = 10_000_000; // browsers cap element heights (Chromium ~33.5M px)
const OVERSCAN = 8; // rows rendered above and below the viewport
// while following a fast stream, rows above the viewport are replaced before anyone can
// scroll to them: none are made, which makes each (full) repaint cheaper
const OVERSCAN_FAST = 0;
// while following lines that replace the screen more than 60 times a second, renders are
// at most this far apart (ms), and rows are drawn brief (render.js); once no render has
// come for SETTLE_MS (the stream slowed or stopped), the rows on show are drawn in full
const FAST_INTERVAL = 150;
const SETTLE_MS = 300;
// Otherwise a frame draws at most this many rows in full; more changed rows (a keystroke,
// a jump) are drawn brief, and in full over the next frames: no frame styles and lays out
// a whole screen of new rows with every colour at once.
const FULL_PER_FRAME = 16;
const PAD = 6; // px above the first and below the last row
const POOL = 300;

export class LogView {
  constructor({ viewport, sizer, rows, model, onFollow, onRender }) {
    this.el = viewport;
    this.sizer = sizer;
    this.rowsEl = rows;
    this.model = model;
    this.onFollow = onFollow || (() => {});
    this.onRender = onRender || (() => {});
    this.follow = true;
    this.lastState = "following";
    this.frozenSeq = null; // explicit pause: entries with seq >= this are held back
    this.pauseSeq = 0; // "new lines" are entries with seq >= this
    this.anchor = null; // {seq, delta}: what stays in place while not following
    this.wrap = false;
    this.gutter = "num";
    this.cols = 0;
    this.rowH = 20;
    this.charW = 8;
    this.gutterPx = 0;
    this.badgePx = 0;
    this.badgeCh = -1;
    this.vh = viewport.clientHeight;
    this.shown = new Map(); // seq -> row element on the page
    this.pool = [];
    this.pending = 0;
    this.timer = 0;
    this.scrollPos = viewport.scrollTop; // what scrollTop is (read on scroll, set by us)
    this.settingScroll = false;
    this.checkCols = true;
    this.styles = new WeakMap(); // element -> {property: last value written}
    this.lastRender = 0;
    this.lastTail = 0;
    this.rate = 0; // entries on show per ms, smoothed
    this.paceList = null; // the list the rate was measured on (a new filter makes a new one)
    this.dataInterval = 0;
    this.quietUntil = 0; // data alone does not render before this (someone is typing)
    this.settle = 0; // timer: draw brief rows in full when the stream slows
    // filter matches past the first few of a row: painted, not elements (render.js)
    this.hits = CAN_HIGHLIGHT ? new Highlight() : null;
    if (this.hits) CSS.highlights.set(HIGHLIGHT, this.hits);
    this.el.addEventListener("scroll", () => this.onScroll(), { passive: true });
    new ResizeObserver(() => {
      this.vh = this.el.clientHeight;
      this.measure(true);
    }).observe(this.el);
    this.measure(false);
  }

  /** Render in the next animation frame (a person did something: no delay). */
  schedule() {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = 0;
    }
    if (!this.pending) this.pending = requestAnimationFrame(() => this.render());
  }

  /**
   * New data: render in an animation frame, but when lines arrive so fast that whole
   * screens are replaced between frames, at most every `dataInterval` ms. The text is
   * unreadable at that speed anyway, and the page stays responsive.
   */
  scheduleData() {
    if (this.pending || this.timer) return;
    const now = performance.now();
    const wait = Math.max(this.dataInterval - (now - this.lastRender), this.quietUntil - now);
    if (wait <= 0) this.pending = requestAnimationFrame(() => this.render());
    else this.timer = setTimeout(() => {
      this.timer = 0;
      this.schedule();
    }, wait);
  }

  /** Keystrokes come first: for a moment, new data waits (it is kept, not dropped). */
  typing(ms = 250) {
    this.quietUntil = performance.now() + ms;
  }

  /**
   * Estimate the rate of entries on show (with a filter on, of its matches only: a rare
   * match on a busy log stays on screen); choose how often data alone may cause a render.
   * While a new filter's pass is under way the estimate is kept as it was: the first
   * frames after a keystroke are drawn as the stream was, brief when it flew past.
   */
  pace(now) {
    const { ring, list } = this.model;
    const dt = now - this.lastRender;
    const sameList = list === this.paceList && !this.model.filtering;
    this.paceList = list;
    if (this.lastRender && dt > 0 && sameList) {
      const rate = (list.length - list.lowerBound(this.lastTail)) / dt;
      // smoothed over close renders; after a long gap the gap itself is the measure
      const weight = dt >= SETTLE_MS ? 1 : 0.3;
      this.rate = this.rate * (1 - weight) + rate * weight;
    }
    this.lastRender = now;
    this.lastTail = ring.tail;
    const screensPerSecond = (this.rate * 1000 * this.rowH) / Math.max(1, this.vh);
    this.dataInterval = screensPerSecond > 60 ? FAST_INTERVAL : screensPerSecond > 15 ? 50 : 0;
  }

  /** Write a style property only when it changes (an unchanged write can still cost). */
  css(el, prop, value) {
    let last = this.styles.get(el);
    if (!last) this.styles.set(el, (last = {}));
    if (last[prop] === value) return;
    last[prop] = value;
    if (prop.startsWith("--")) el.style.setProperty(prop, value);
    else el.style[prop] = value;
  }

  /** Row height and character width from the stylesheet, and the wrap width in columns. */
  measure(rerender) {
    const probe = document.createElement("div");
    probe.className = "row probe";
    const txt = document.createElement("span");
    txt.className = "txt";
    txt.textContent = "0".repeat(100);
    probe.append(txt);
    this.rowsEl.append(probe);
    const rowH = probe.getBoundingClientRect().height;
    const charW = txt.getBoundingClientRect().width / 100;
    probe.remove();
    if (rowH > 0) this.rowH = rowH;
    if (charW > 0) this.charW = charW;
    this.updateCols();
    this.checkCols = true;
    if (rerender) this.schedule();
  }

  updateCols() {
    const gutterCh = this.gutterChars();
    // gutter: its width in ch, plus padding and border as the stylesheet sets them
    this.gutterPx = this.gutter === "none" ? 0 : Math.ceil((gutterCh + 2) * this.charW + 3);
    // a merged view's file badge: its width in ch plus padding and margin (style.css)
    const { model } = this;
    this.badgePx = model.merged ? Math.ceil((model.badgeCh + 2) * this.charW) : 0;
    const textPx = this.el.clientWidth - this.gutterPx - this.badgePx - 2 * this.charW - 16;
    const cols = Math.max(10, Math.floor(textPx / this.charW));
    if (cols !== this.cols) {
      this.cols = cols;
      if (this.wrap) this.model.remeasure();
    }
  }

  gutterChars() {
    if (this.gutter === "time") return 12;
    return Math.max(4, String(this.model.ring.maxShownNo()).length);
  }

  unitsOf(seq) {
    const { ring } = this.model;
    const text = ring.text(seq);
    const len = ring.hasEscape(seq) ? stripAnsi(text).length : text.length;
    return len <= this.cols ? 1 : Math.ceil(len / this.cols);
  }

  setWrap(wrap) {
    this.wrap = wrap;
    this.checkCols = true;
    this.el.classList.toggle("wrap", wrap);
    this.model.unitsOf = wrap ? (seq) => this.unitsOf(seq) : null;
    this.updateCols();
    this.model.remeasure();
  }

  setGutter(mode) {
    this.gutter = mode;
    this.checkCols = true;
    this.el.dataset.gutter = mode;
    this.updateCols();
    this.model.touch();
  }

  /** The view became merged or single (rows with or without file badges). */
  setMerged(merged) {
    this.model.merged = merged;
    this.badgeCh = -1;
    this.checkCols = true;
    this.updateCols();
    this.model.touch();
  }

  /** How many entries of the list are on show (an explicit pause holds newer ones back). */
  count() {
    const { list } = this.model;
    return this.frozenSeq === null ? list.length : list.lowerBound(this.frozenSeq);
  }

  /** Entries on the list that arrived since following stopped. */
  newCount() {
    if (this.follow) return 0;
    const { list } = this.model;
    return list.length - list.lowerBound(this.pauseSeq);
  }

  get state() {
    if (this.frozenSeq !== null) return "paused";
    return this.follow ? "following" : "scrolled";
  }

  notifyFollow() {
    const state = this.state;
    if (state !== this.lastState) {
      this.lastState = state;
      this.onFollow(state);
    }
  }

  pause() {
    if (this.frozenSeq !== null) return;
    if (this.follow) this.pauseSeq = this.model.ring.tail;
    this.frozenSeq = this.pauseSeq;
    this.follow = false;
    this.keepAnchor();
    this.notifyFollow();
    this.schedule();
  }

  /** Show everything and follow the end (Resume, End, "N new lines"). */
  toEnd() {
    this.frozenSeq = null;
    this.follow = true;
    this.anchor = null;
    this.notifyFollow();
    this.schedule();
  }

  toStart() {
    if (this.follow) this.pauseSeq = this.model.ring.tail;
    this.follow = false;
    const { list } = this.model;
    this.anchor = list.length ? { seq: list.get(0), delta: -PAD } : null;
    if (!this.anchor) this.setScrollTop(0); // lines to come start at the top
    this.notifyFollow();
    this.schedule();
  }

  /** Show entry `seq` in the middle of the viewport (at its top with `atTop`), and stop
   *  following there. */
  showSeq(seq, atTop = false) {
    if (this.follow) this.pauseSeq = this.model.ring.tail;
    this.follow = false;
    this.frozenSeq = null;
    this.anchor = { seq, delta: atTop ? 0 : -Math.max(0, Math.round((this.vh - this.rowH) / 2)) };
    this.notifyFollow();
    this.schedule();
  }

  /** Stop following but stay where the view is: lines added below do not move it. */
  hold() {
    if (!this.follow) return;
    this.follow = false;
    this.pauseSeq = this.model.ring.tail;
    this.keepAnchor();
    this.notifyFollow();
  }

  /** Remember what is at the top of the viewport, to keep it there while not following. */
  keepAnchor() {
    this.anchor = this.anchorAt(this.scrollPos * this.scale());
  }

  /** Virtual pixels per scroll pixel (above 1 only when the list is taller than MAX_PX). */
  scale() {
    const total = this.model.list.offset(this.count()) * this.rowH + 2 * PAD;
    const sizerPx = Math.min(total, MAX_PX);
    const vh = this.vh;
    return total > sizerPx ? (total - vh) / Math.max(1, sizerPx - vh) : 1;
  }

  anchorAt(top) {
    const n = this.count();
    if (!n) return null;
    const { list } = this.model;
    const i = list.indexAt((top - PAD) / this.rowH, n);
    return { seq: list.get(i), delta: top - (PAD + list.offset(i) * this.rowH) };
  }

  onScroll() {
    const el = this.el;
    const pos = el.scrollTop;
    const before = this.scrollPos;
    const ours = this.settingScroll && Math.abs(pos - before) < 1;
    this.settingScroll = false;
    if (ours) return;
    this.scrollPos = pos;
    const atBottom = pos + el.clientHeight >= el.scrollHeight - 2;
    if (this.frozenSeq === null) {
      if (atBottom && !this.follow) {
        this.follow = true;
        this.anchor = null;
        this.notifyFollow();
      } else if (!atBottom && this.follow && pos < before) {
        this.follow = false;
        this.pauseSeq = this.model.ring.tail;
        this.notifyFollow();
      }
    }
    if (!this.follow) this.keepAnchor();
    this.schedule();
  }

  setScrollTop(px) {
    if (Math.abs(this.scrollPos - px) >= 1) {
      this.settingScroll = true;
      this.el.scrollTop = px;
      this.scrollPos = px;
    }
  }

  render() {
    this.pending = 0;
    this.pace(performance.now());
    if (this.model.merged && this.model.badgeCh !== this.badgeCh) {
      this.badgeCh = this.model.badgeCh;
      this.css(this.el, "--badge-ch", String(this.badgeCh));
      this.updateCols();
    }
    const { model, rowH, vh } = this;
    const { list } = model;
    const n = this.count();
    model.enough = this.follow ? Math.ceil(vh / rowH) + 2 * OVERSCAN : Infinity;
    const total = list.offset(n) * rowH + 2 * PAD;
    const sizerPx = Math.min(total, MAX_PX);
    const k = total > sizerPx ? (total - vh) / Math.max(1, sizerPx - vh) : 1;
    const maxTop = Math.max(0, total - vh);

    // where the viewport should be, in virtual px
    let top;
    if (this.follow) top = maxTop;
    else if (this.anchor && n) {
      let i = list.lowerBound(this.anchor.seq);
      const exact = i < n && list.get(i) === this.anchor.seq;
      if (i >= n) i = n - 1;
      top = PAD + list.offset(i) * rowH + (exact ? this.anchor.delta : 0);
    } else top = this.scrollPos * k;
    top = Math.max(0, Math.min(maxTop, top));
    const scrollTop = Math.round(top / k);
    if (!this.follow) top = Math.min(maxTop, scrollTop * k);

    // which entries to show
    let first;
    let last;
    if (this.follow) {
      last = n - 1;
      const above = this.dataInterval > 0 ? OVERSCAN_FAST : OVERSCAN;
      first = list.indexAt((total - PAD - vh) / rowH - above, n);
    } else {
      first = Math.max(0, list.indexAt((top - PAD) / rowH, n) - OVERSCAN);
      last = Math.min(n - 1, list.indexAt((top - PAD + vh) / rowH, n) + OVERSCAN);
    }

    // DOM writes first, the scroll position last: one layout per frame, not two
    if (this.gutter === "num") this.css(this.el, "--gut-ch", String(this.gutterChars()));
    const width = this.wrap ? "" :
      `${Math.ceil(this.gutterPx + this.badgePx + (model.maxLen + 4) * this.charW)}px`;
    this.css(this.sizer, "width", width);
    this.css(this.rowsEl, "width", width);
    this.css(this.sizer, "height", `${sizerPx}px`);
    const fast = this.follow && this.dataInterval >= FAST_INTERVAL;
    clearTimeout(this.settle);
    this.settle = fast ? setTimeout(() => this.schedule(), SETTLE_MS) : 0;
    if (this.paint(n ? first : 0, n ? last : -1, fast)) this.schedule();
    let y = scrollTop + (PAD + list.offset(first) * rowH - top);
    if (this.follow && n) {
      // the last row sits at the bottom (in wrap mode, heights are only estimates)
      const height = this.wrap ? this.rowsEl.offsetHeight : (list.offset(n) - list.offset(first)) * rowH;
      y = sizerPx - PAD - height;
    }
    this.css(this.rowsEl, "transform", `translateY(${Math.max(0, Math.round(y))}px)`);
    this.setScrollTop(scrollTop);
    if (!this.follow) this.anchor = this.anchorAt(top);
    if (this.checkCols) this.fixCols();
    this.onRender();
  }

  /**
   * Put entries first..last on the page, reusing rows that already show them. While lines
   * fly past (`fast`) rows are drawn brief; otherwise up to FULL_PER_FRAME rows in full,
   * the others brief. Returns true when rows wait to be drawn in full (another frame).
   */
  paint(first, last, fast) {
    const { model } = this;
    const { list } = model;
    const version = model.version;
    const brief = { gutterCh: this.gutterChars() };
    // (in wrap mode a brief row's text would wrap under its gutter: always in full)
    let full = this.wrap ? Infinity : fast ? 0 : FULL_PER_FRAME;
    let behind = false;
    const next = new Map();
    const els = [];
    for (let i = first; i <= last; i++) {
      const seq = list.get(i);
      let row = this.shown.get(seq);
      if (row) this.shown.delete(seq);
      else row = this.pool.pop() || document.createElement("div");
      const stale = row.lvVersion !== version || row.lvSeq !== seq ||
        (row.lvParts && row.lvParts.gutterCh !== brief.gutterCh);
      if (stale || (row.lvParts && !fast)) {
        if (full > 0) {
          renderRow(row, model, seq, this.gutter);
          full--;
        } else {
          if (stale) renderRow(row, model, seq, this.gutter, brief);
          behind ||= !fast && !!row.lvParts;
        }
        row.lvVersion = version;
        row.lvSeq = seq;
      }
      next.set(seq, row);
      els.push(row);
    }
    for (const row of this.shown.values()) if (this.pool.length < POOL) this.pool.push(row);
    this.shown = next;
    const kids = this.rowsEl.children;
    let same = kids.length === els.length;
    for (let i = 0; same && i < els.length; i++) same = kids[i] === els[i];
    if (!same) this.rowsEl.replaceChildren(...els);
    const { hits } = this;
    if (hits && (!same || hits.size || els.some((row) => row.lvHits))) {
      hits.clear();
      for (const row of els) if (row.lvHits) for (const r of row.lvHits) hits.add(r);
    }
    return behind;
  }

  /** In wrap mode, check the real text width once rows exist; adjust the estimate. */
  fixCols() {
    if (!this.wrap) {
      this.checkCols = false;
      return;
    }
    const txt = this.rowsEl.querySelector(".row:not(.notice) .txt");
    if (!txt) return;
    this.checkCols = false;
    const cols = Math.max(10, Math.floor((txt.clientWidth - 2 * this.charW) / this.charW));
    if (cols !== this.cols) {
      this.cols = cols;
      this.model.remeasure();
    }
  }

  /** The entry shown at a point in the page (for clicks), or null. */
  seqAt(target) {
    const row = target.closest(".row");
    return row && row.lvSeq !== undefined ? row.lvSeq : null;
  }
}
