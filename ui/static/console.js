// The console's own script: copy buttons, YAML download, and the CESQL editor's caret marker.
// Everything else is server-rendered HTML swapped in by htmx; no validation logic lives here.
"use strict";

function copyText(text, button) {
  const done = () => { if (button) { const was = button.textContent; button.textContent = "Copied"; setTimeout(() => { button.textContent = was; }, 1200); } };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
  } else {
    fallbackCopy(text, done);
  }
}

function fallbackCopy(text, done) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("aria-hidden", "true");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  try { document.execCommand("copy"); } catch (e) { /* nothing more we can do */ }
  area.remove();
  done();
}

function textOf(button) {
  if (button.dataset.copy !== undefined) return button.dataset.copy;
  const target = document.getElementById(button.dataset.copyFrom || "");
  return target ? target.textContent : "";
}

document.addEventListener("click", (event) => {
  const copy = event.target.closest("button[data-copy], button[data-copy-from]");
  if (copy) { copyText(textOf(copy), copy); return; }
  const download = event.target.closest("button[data-download-from]");
  if (download) {
    const target = document.getElementById(download.dataset.downloadFrom);
    const blob = new Blob([target ? target.textContent : ""], { type: "application/yaml" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = download.dataset.filename || "trigger.yaml";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }
});

// The CESQL check answers with data-line/data-col on its error element; put a marker under the
// editor's text at that place, so the error is seen where it is, not only read about.
function markCaret(root) {
  (root || document).querySelectorAll("[data-cesql-error]").forEach((el) => {
    const editor = document.getElementById(el.dataset.for || "");
    if (!editor) return;
    const line = Number(el.dataset.line || 0), col = Number(el.dataset.col || 0);
    if (!line) return;
    const lines = editor.value.split("\n");
    let offset = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    editor.setAttribute("aria-invalid", "true");
    editor.dataset.errorOffset = String(offset + Math.max(col - 1, 0));
  });
}

// Submit stays disabled while any part of the form reports itself invalid.
function syncSubmit() {
  document.querySelectorAll("form[data-validated]").forEach((form) => {
    const invalid = form.querySelector("[data-invalid='true']");
    form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = Boolean(invalid); });
  });
}

document.addEventListener("htmx:afterSwap", (event) => { markCaret(event.target); syncSubmit(); });
document.addEventListener("DOMContentLoaded", () => { markCaret(document); syncSubmit(); });

// The live tail: the events API's SSE stream into a table, newest first, at most MAX_ROWS rows.
// Pause closes the stream (the server then holds nothing for us); "N dropped" is the server's.
const MAX_ROWS = 500;
function startTail(section) {
  const rows = section.querySelector("#tail-rows");
  const state = section.querySelector("#tail-state");
  const dropped = section.querySelector("#tail-dropped");
  const error = section.querySelector("#tail-error");
  const pause = section.querySelector("#tail-pause");
  const filter = section.querySelector("#tail-filter");
  let source = null;
  const cell = (tr, text) => { const td = document.createElement("td"); td.textContent = text == null ? "" : String(text); tr.appendChild(td); return td; };
  const link = (td, href, text) => { const a = document.createElement("a"); a.href = href; a.textContent = text; td.appendChild(a); td.appendChild(document.createTextNode(" ")); };
  function add(ev) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "tail-row";
    cell(tr, ev.time || ""); cell(tr, ev.type); cell(tr, ev.source); cell(tr, ev.subject); cell(tr, ev.id);
    cell(tr, ev.data ? ev.data.size + " B" : ""); cell(tr, (ev.matchedBy || []).join(", ") || "none");
    const actions = cell(tr, "");
    link(actions, section.dataset.inspectBase + encodeURIComponent(ev.id), "Inspect");
    const q = new URLSearchParams({ mode: "filters", row_dialect_0: "exact", row_attr_0: "type", row_value_0: ev.type || "", row_dialect_1: "exact", row_attr_1: "source", row_value_1: ev.source || "" });
    link(actions, section.dataset.newBase + "&" + q.toString(), "Create trigger from this event");
    const details = document.createElement("details");
    const summary = document.createElement("summary"); summary.textContent = "Expand";
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(ev.attributes, null, 2) + "\n\n" + (ev.data && ev.data.text != null ? ev.data.text : (ev.data && ev.data.hidden ? "(payloads hidden)" : ""));
    details.append(summary, pre); actions.appendChild(details);
    rows.prepend(tr);
    while (rows.children.length > MAX_ROWS) rows.lastElementChild.remove();
  }
  function open() {
    const url = section.dataset.tailUrl + (filter.value ? "?filter=" + encodeURIComponent(filter.value) : "");
    source = new EventSource(url);
    state.textContent = "connecting…";
    source.onopen = () => { state.textContent = "live"; error.hidden = true; };
    source.addEventListener("event", (m) => add(JSON.parse(m.data)));
    source.addEventListener("dropped", (m) => { dropped.textContent = JSON.parse(m.data).dropped + " dropped"; });
    source.onerror = () => { state.textContent = "reconnecting…"; };
  }
  function close() { if (source) { source.close(); source = null; } }
  pause.addEventListener("click", () => {
    const paused = pause.getAttribute("aria-pressed") === "true";
    if (paused) { open(); pause.textContent = "Pause"; } else { close(); state.textContent = "paused"; pause.textContent = "Resume"; }
    pause.setAttribute("aria-pressed", paused ? "false" : "true");
  });
  section.querySelector("#tail-apply").addEventListener("click", async () => {
    close();
    if (filter.value) {
      const token = document.querySelector("meta[name=csrf-token]").content;
      const base = section.dataset.tailUrl.split("/api/")[0];
      const r = await fetch(base + "/api/cesql/check", { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": token }, body: JSON.stringify({ expression: filter.value }) });
      const check = await r.json();
      if (!check.valid) { error.textContent = "Line " + check.error.line + ", column " + check.error.column + ": " + check.error.message; error.hidden = false; state.textContent = "stopped"; return; }
    }
    error.hidden = true;
    const here = new URL(window.location.href);  // the filter stays in the URL, as a link
    if (filter.value) here.searchParams.set("filter", filter.value); else here.searchParams.delete("filter");
    history.replaceState(null, "", here);
    rows.replaceChildren();
    open();
  });
  document.addEventListener("visibilitychange", () => { if (document.hidden) close(); else if (pause.getAttribute("aria-pressed") !== "true" && !source) open(); });
  open();
}
document.addEventListener("DOMContentLoaded", () => { document.querySelectorAll("section.tail").forEach(startTail); });
