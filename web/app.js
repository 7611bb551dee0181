// Minimal viewer: lists files, streams one, appends lines as text.
const fileSelect = document.getElementById("file");
const logEl = document.getElementById("log");
const stateEl = document.getElementById("state");
let source = null;

function connect(name) {
  if (source) source.close();
  logEl.textContent = "";
  source = new EventSource(`api/files/${encodeURIComponent(name)}/stream`);
  source.onopen = () => { stateEl.textContent = "live"; };
  source.onerror = () => { stateEl.textContent = "reconnecting"; };
  source.onmessage = (e) => { logEl.append(e.data + "\n"); };
}

const res = await fetch("api/files");
const { files } = await res.json();
for (const f of files) fileSelect.append(new Option(f.title, f.name));
fileSelect.onchange = () => connect(fileSelect.value);
if (files.length) connect(files[0].name);
