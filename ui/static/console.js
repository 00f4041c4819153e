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
