// Several files in one view: each file's colour, the picker that chooses the files (one by
// one, or every file of a glob source or of a host), and the legend whose buttons hide and
// show a file's lines. The lines themselves come over one connection (app.js, `api/stream`).

export const PALETTE = 10; // badge colours .c0 … .c9 in style.css, AA contrast in both themes

/** A file name's own colour: FNV-1a of the name, into the palette. */
export function colourOf(name) {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % PALETTE;
}

/**
 * The colours of the files of one view (a Map name -> colour): each its own colour, except
 * that two files of the view never share one while the palette has room: in name order, a
 * file whose colour is taken gets the next free one. The same set always gets the same
 * colours, and a name keeps its own colour wherever nothing else in the view has it.
 */
export function assignColours(names) {
  const out = new Map();
  const taken = new Set();
  for (const name of [...new Set(names)].sort()) {
    let c = colourOf(name);
    if (taken.size < PALETTE) {
      while (taken.has(c)) c = (c + 1) % PALETTE;
    }
    taken.add(c);
    out.set(name, c);
  }
  return out;
}

/**
 * The files in groups for the picker, in list order: the files of one glob source (the
 * `glob` field of /api/files: the [[files]] entry that lists them) together, and the files
 * shipped by one host (`host`, a fleet) together, as {key, label, files}; a file of its own
 * is {key: null, files: [f]}.
 */
export function groupFiles(files) {
  const groups = [];
  const byKey = new Map();
  for (const f of files) {
    let key = null;
    let label = "";
    if (typeof f.glob === "string") {
      key = `glob:${f.glob}`;
      label = f.glob;
    } else if (typeof f.host === "string") {
      key = `host:${f.host}`;
      label = `host ${f.host}`;
      if (f.quiet) {
        label += typeof f.last_seen === "number" ? ` (quiet: last seen ${ago(f.last_seen)} ago)`
          : " (quiet: never seen)";
      }
    }
    if (key === null) {
      groups.push({ key: null, label: f.name, files: [f] });
      continue;
    }
    let g = byKey.get(key);
    if (!g) {
      g = { key, label, files: [] };
      byKey.set(key, g);
      groups.push(g);
    }
    g.files.push(f);
  }
  return groups;
}

/** How long ago `seconds` (Unix time) was, in words: "40 s", "5 min", "3 h", "2 days". */
export function ago(seconds, now = Date.now() / 1000) {
  const d = Math.max(0, Math.round(now - seconds));
  if (d < 120) return `${d} s`;
  if (d < 7200) return `${Math.round(d / 60)} min`;
  if (d < 172800) return `${Math.round(d / 3600)} h`;
  return `${Math.round(d / 86400)} days`;
}

/** A file as the pickers name it: its title, and what is wrong with it (missing; for a
 *  shipped file whose host went quiet, when that host was last seen). */
export function fileLabel(f, short = false) {
  const title = f.title || f.name;
  const text = !short && f.title && f.title !== f.name ? `${f.title} (${f.name})` : title;
  if (f.exists === false) return `${text} (missing)`;
  if (f.quiet) {
    return typeof f.last_seen === "number" ? `${text} (quiet: last seen ${ago(f.last_seen)} ago)`
      : `${text} (quiet: never seen)`;
  }
  return text;
}

function label(f) {
  return fileLabel(f);
}

/**
 * The "Files…" dialog. `getFiles()` gives the list of /api/files; `getChosen()` the names
 * on show; `onChoose(names)` applies a choice (one name: that file alone). At most `max()`.
 */
export function installPicker({ button, dialog, getFiles, getChosen, onChoose, max }) {
  const $ = (id) => document.getElementById(id);
  const listEl = $("files-list");
  const note = $("files-note");
  const apply = $("files-apply");
  const form = $("files-form");
  let boxes = []; // every file's checkbox
  let groupBoxes = []; // [checkbox, its files' checkboxes]

  function chosen() {
    return boxes.filter((b) => b.checked).map((b) => b.value);
  }

  function update() {
    for (const [all, members] of groupBoxes) {
      const on = members.filter((b) => b.checked).length;
      all.checked = on === members.length;
      all.indeterminate = on > 0 && on < members.length;
    }
    const n = chosen().length;
    const limit = max();
    apply.disabled = n === 0 || n > limit;
    note.textContent = n === 0 ? "Choose at least one file" :
      n > limit ? `At most ${limit} files in one view: ${n} chosen` :
        n === 1 ? "1 file: shown alone" : `${n} files, merged in one view`;
  }

  function fileRow(f, on) {
    const row = document.createElement("label");
    row.className = "pick";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = f.name;
    box.checked = on;
    const text = document.createElement("span");
    text.textContent = label(f);
    row.append(box, text);
    boxes.push(box);
    return { row, box };
  }

  function build() {
    const on = new Set(getChosen());
    boxes = [];
    groupBoxes = [];
    const parts = [];
    for (const g of groupFiles(getFiles())) {
      if (g.key === null) {
        parts.push(fileRow(g.files[0], on.has(g.files[0].name)).row);
        continue;
      }
      const set = document.createElement("fieldset");
      set.className = "pick-group";
      const legend = document.createElement("legend");
      const allLabel = document.createElement("label");
      const all = document.createElement("input");
      all.type = "checkbox";
      all.className = "pick-all";
      all.dataset.group = g.key;
      allLabel.append(all, ` All files of ${g.label} (${g.files.length})`);
      legend.append(allLabel);
      set.append(legend);
      const members = g.files.map((f) => {
        const { row, box } = fileRow(f, on.has(f.name));
        set.append(row);
        return box;
      });
      all.addEventListener("change", () => {
        for (const b of members) b.checked = all.checked;
        update();
      });
      groupBoxes.push([all, members]);
      parts.push(set);
    }
    listEl.replaceChildren(...parts);
    update();
  }

  listEl.addEventListener("change", (e) => {
    if (!(e.target instanceof HTMLInputElement) || !e.target.classList.contains("pick-all")) update();
  });
  button.addEventListener("click", () => {
    build();
    dialog.showModal();
    button.setAttribute("aria-expanded", "true");
    const first = boxes.find((b) => b.checked) || boxes[0];
    if (first) first.focus();
  });
  dialog.addEventListener("close", () => {
    button.setAttribute("aria-expanded", "false");
    button.focus();
  });
  $("files-cancel").addEventListener("click", () => dialog.close());
  $("files-none").addEventListener("click", () => {
    for (const b of boxes) b.checked = false;
    update();
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const names = chosen();
    if (!names.length || names.length > max()) return;
    dialog.close();
    onChoose(names);
  });
}

/** The legend of a merged view: one toggle button per file; pressed = its lines on show. */
export class Legend {
  constructor(el, onToggle) {
    this.el = el;
    this.onToggle = onToggle; // (name, shown)
    this.buttons = new Map();
    el.addEventListener("click", (e) => {
      const b = e.target instanceof Element ? e.target.closest("button.chip") : null;
      if (!b) return;
      const shown = b.getAttribute("aria-pressed") !== "true";
      this.mark(b, shown);
      this.onToggle(b.dataset.file, shown);
    });
  }

  mark(b, shown) {
    b.setAttribute("aria-pressed", String(shown));
    b.title = `${shown ? "Hide" : "Show"} the lines of ${b.dataset.file}`;
  }

  /** Buttons for `names` (none when there is one file or none), `hidden` a Set of names,
   *  `colours` a Map name -> colour (assignColours). */
  show(names, hidden, colours) {
    this.buttons = new Map();
    if (names.length < 2) {
      this.el.replaceChildren();
      this.el.hidden = true;
      return;
    }
    const label = document.createElement("span");
    label.className = "legend-label";
    label.textContent = "Files:";
    const chips = names.map((name) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "chip";
      b.dataset.file = name;
      const swatch = document.createElement("span");
      swatch.className = `swatch c${colours.get(name) ?? colourOf(name)}`;
      swatch.setAttribute("aria-hidden", "true");
      b.append(swatch, name);
      this.mark(b, !hidden.has(name));
      this.buttons.set(name, b);
      return b;
    });
    this.el.replaceChildren(label, ...chips);
    this.el.hidden = false;
  }
}
