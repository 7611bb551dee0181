// "Copy link" for every line, with one button for the whole page (rows stay cheap): it sits
// at the right end of the row under the pointer. From the keyboard, Tab from the log
// reaches it on the line under the pointer, else on the first line on screen; the arrow keys move it from line to line (the
// view stops following while you pick), Enter copies, Esc goes back to the log.
// The link is the page's address with `#file=<name>&line=<line id>`.

import { permalink } from "./lineids.js";

const PREVIEW = 80; // characters of the line in the button's accessible name

export function installLinks({ model, list, view, announce }) {
  const $ = (id) => document.getElementById(id);
  const btn = $("line-link");
  const toast = $("link-toast");
  const viewport = $("viewport");
  const rows = $("rows");
  const stage = btn.parentElement;
  let seq = null; // the entry the button is for
  let row = null;
  let toastTimer = 0;

  function idOf(s) {
    return s === null || !model.ring.has(s) || model.ring.isNotice(s) ? null : model.ring.lineId(s);
  }

  function rowOf(s) {
    const el = list.shown.get(s);
    return el && el.isConnected ? el : null;
  }

  /** Put the button on `el` (a row that has a line id); false when it cannot go there. */
  function attach(el) {
    const s = el ? el.lvSeq : undefined;
    if (s === undefined || idOf(s) === null) return false;
    const vp = viewport.getBoundingClientRect();
    const r = el.getBoundingClientRect();
    if (r.bottom <= vp.top || r.top >= vp.top + viewport.clientHeight) return false;
    const st = stage.getBoundingClientRect();
    seq = s;
    row = el;
    const h = Math.min(r.height, list.rowH);
    btn.style.top = `${Math.round(Math.max(r.top, vp.top) - st.top)}px`;
    btn.style.height = `${Math.round(h)}px`;
    btn.style.left = `${Math.round(vp.left - st.left + viewport.clientWidth - btn.offsetWidth - 6)}px`;
    const n = model.ring.shownNo(s);
    const text = model.plain(s);
    const preview = text.length > PREVIEW ? `${text.slice(0, PREVIEW)}…` : text;
    btn.setAttribute("aria-label", `Copy link to line ${n}: ${preview}`);
    btn.classList.add("on");
    return true;
  }

  function hide() {
    btn.classList.remove("on");
    seq = null;
    row = null;
  }

  /** The line rows on the page, in order, and the ones inside the viewport. */
  function lineRows() {
    return [...rows.children].filter((el) => !el.classList.contains("notice"));
  }

  function visible(el) {
    const vp = viewport.getBoundingClientRect();
    const r = el.getBoundingClientRect();
    return r.top >= vp.top - 1 && r.bottom <= vp.top + viewport.clientHeight + 1;
  }

  function attachFirstVisible() {
    const el = lineRows().find(visible);
    return el ? attach(el) : false;
  }

  /** Move to the next (+1) or previous (-1) line, scrolling one row when at the edge. */
  function move(step) {
    list.hold();
    const all = lineRows();
    let i = row ? all.indexOf(row) : -1;
    if (i < 0) {
      attachFirstVisible();
      return;
    }
    for (i += step; i >= 0 && i < all.length; i += step) {
      const el = all[i];
      if (idOf(el.lvSeq) === null) continue;
      if (visible(el)) {
        attach(el);
        return;
      }
      const r = el.getBoundingClientRect();
      const vp = viewport.getBoundingClientRect();
      viewport.scrollTop += step > 0 ? r.bottom - (vp.top + viewport.clientHeight) : r.top - vp.top;
      seq = el.lvSeq; // the next key goes on from here
      row = el;
      // the view renders on the next frame: place the button on the row then
      requestAnimationFrame(() => {
        const now = rowOf(seq);
        if (now) attach(now);
      });
      return;
    }
  }

  function showToast(text, url) {
    clearTimeout(toastTimer);
    toast.replaceChildren(text);
    if (url) {
      const code = document.createElement("code");
      code.textContent = url;
      toast.append(" ", code);
    }
    toast.hidden = false;
    toastTimer = setTimeout(() => { toast.hidden = true; }, url ? 12_000 : 2_500);
  }

  async function writeClipboard(text) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return true;
      }
    } catch {
      // not allowed here: the older way below
    }
    const back = document.activeElement;
    const area = document.createElement("textarea");
    area.value = text;
    area.readOnly = true;
    area.className = "copy-buffer";
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    if (back instanceof HTMLElement) back.focus();
    return ok;
  }

  /** Copy the link to line `id` of `file` (the file on show, or in a merged view the line's). */
  async function copy(id, file = view.file) {
    const base = location.href.split("#")[0];
    const url = permalink(base, file, id);
    if (await writeClipboard(url)) {
      showToast("Link copied");
      announce("Link to the line copied");
    } else {
      showToast("Copy this link:", url);
      announce("Could not copy; the link is shown at the bottom right");
    }
    return url;
  }

  /** Picking a line from the keyboard (a click also focuses the button: that is not it). */
  function picking() {
    return document.activeElement === btn && btn.matches(":focus-visible");
  }

  rows.addEventListener("mouseover", (e) => {
    const el = e.target instanceof Element ? e.target.closest(".row") : null;
    if (el && el !== row && !picking()) {
      if (!attach(el)) hide();
    }
  });
  viewport.addEventListener("mouseleave", (e) => {
    if (!btn.contains(e.relatedTarget) && !picking()) hide();
  });
  btn.addEventListener("mouseleave", (e) => {
    if (!viewport.contains(e.relatedTarget) && !picking()) hide();
  });
  viewport.addEventListener("scroll", () => {
    if (!picking()) {
      hide();
      return;
    }
    // picking from the keyboard: stay on the line (or the nearest one on screen)
    requestAnimationFrame(() => {
      const el = seq === null ? null : rowOf(seq);
      if (!(el && attach(el))) attachFirstVisible();
    });
  }, { passive: true });
  btn.addEventListener("focus", () => {
    const el = seq === null ? null : rowOf(seq);
    if (el && attach(el)) return;
    if (!attachFirstVisible()) {
      btn.setAttribute("aria-label", "Copy link to a line: no line on show");
      btn.classList.add("on");
    }
  });
  btn.addEventListener("blur", (e) => {
    if (!rows.contains(e.relatedTarget)) hide();
  });
  btn.addEventListener("click", () => {
    const id = idOf(seq);
    if (id) copy(id, model.merged ? model.fileName(seq) : view.file);
  });
  btn.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const steps = { ArrowDown: 1, ArrowUp: -1 };
    if (e.key in steps) {
      e.preventDefault();
      move(steps[e.key]);
    } else if (e.key === "Escape") {
      e.preventDefault();
      viewport.focus();
    }
  });

  return { copy, reset: hide };
}
