// Pagewise PDF viewer: a click on a citation chip or a source card opens the PDF at that page (PDF.js) and
// highlights the cited passage in the page's text layer. Config comes from window.PAGEWISE (see ui/app.py).

const cfg = window.PAGEWISE || {};
const base = (p) => `${location.pathname.replace(/\/$/, "")}/gradio_api/file=${p}`;
let pdfjs = null;
const state = { doc: null, pdf: null, page: 1, quote: "", file: "", task: null };

async function lib() {
  if (!pdfjs) {
    pdfjs = await import(base(cfg.pdfjs));
    pdfjs.GlobalWorkerOptions.workerSrc = base(cfg.worker);
  }
  return pdfjs;
}

const norm = (s) => (s || "").toLowerCase().replace(/[^\p{L}\p{N}]+/gu, " ").trim();

function el(id) {
  return document.getElementById(id);
}

function setBar(text) {
  const title = el("pw-viewer-title");
  if (title) title.textContent = text;
}

// A cited document removed from the library since: say so, and show the passage the answer drew on.
function showRemoved(file, page, quote) {
  const viewer = el("pw-viewer");
  state.doc = null;
  state.pdf = null;
  viewer.dataset.state = "removed";
  viewer.dataset.doc = "";
  setBar(file);
  const note = document.createElement("div");
  note.className = "pw-removed";
  const head = document.createElement("p");
  head.textContent = `${file} has been removed from the library, so page ${page} can't be shown. ` +
    "Add the file again to open it. The passage this answer cited:";
  const body = document.createElement("blockquote");
  body.textContent = quote || "";
  note.append(head, body);
  el("pw-viewer-page").textContent = "";
  el("pw-viewer-page-box").replaceChildren(note);
}

async function show({ doc, page, file, quote, removed }) {
  const viewer = el("pw-viewer");
  if (!viewer || !doc) return;
  if (removed) return showRemoved(file, page, quote);
  viewer.dataset.state = "loading";
  setBar(`Opening ${file}…`);
  try {
    const lib_ = await lib();
    if (state.doc !== doc) {
      state.pdf = await lib_.getDocument({ url: base(`${cfg.files}/${doc}.pdf`) }).promise;
      state.doc = doc;
    }
    state.file = file;
    state.quote = quote || "";
    await render(Math.min(Math.max(1, page || 1), state.pdf.numPages));
  } catch (err) {
    if (err && (err.missing || err.status === 404)) return showRemoved(file, page, quote);
    viewer.dataset.state = "error";
    setBar(`Can't open ${file}: ${err && err.message ? err.message : err}`);
  }
}

async function render(pageNumber) {
  const viewer = el("pw-viewer");
  const box = el("pw-viewer-page-box");
  const lib_ = await lib();
  const page = await state.pdf.getPage(pageNumber);
  const width = Math.max(240, (el("pw-viewer-scroll") || box).clientWidth - 16);
  const unscaled = page.getViewport({ scale: 1 });
  const viewport = page.getViewport({ scale: width / unscaled.width });
  const ratio = window.devicePixelRatio || 1;

  const canvas = document.createElement("canvas");
  canvas.width = Math.floor(viewport.width * ratio);
  canvas.height = Math.floor(viewport.height * ratio);
  canvas.style.width = `${viewport.width}px`;
  canvas.style.height = `${viewport.height}px`;
  const layer = document.createElement("div");
  layer.className = "textLayer";
  const wrap = document.createElement("div");
  wrap.className = "pw-page";
  wrap.style.width = `${viewport.width}px`;
  wrap.style.height = `${viewport.height}px`;
  wrap.style.setProperty("--scale-factor", viewport.scale);
  wrap.style.setProperty("--total-scale-factor", viewport.scale);
  wrap.append(canvas, layer);

  if (state.task) state.task.cancel();
  state.task = page.render({
    canvasContext: canvas.getContext("2d"),
    viewport,
    transform: ratio !== 1 ? [ratio, 0, 0, ratio, 0, 0] : null,
  });
  try {
    await state.task.promise;
  } catch (err) {
    if (err && err.name === "RenderingCancelledException") return;
    throw err;
  }
  const text = new lib_.TextLayer({ textContentSource: await page.getTextContent(), container: layer, viewport });
  await text.render();
  box.replaceChildren(wrap);
  const hits = highlight(layer, state.quote);

  state.page = pageNumber;
  viewer.dataset.state = "ready";
  viewer.dataset.page = String(pageNumber);
  viewer.dataset.doc = state.doc;
  viewer.dataset.hits = String(hits.length);
  setBar(state.file);
  el("pw-viewer-page").textContent = `page ${pageNumber} of ${state.pdf.numPages}`;
  if (hits.length) hits[0].scrollIntoView({ block: "center", behavior: "smooth" });
}

// Mark the text-layer spans that belong to the quoted passage: a span counts when its words appear, in order,
// inside the passage (short spans need an exact neighbourhood, so stray common words aren't marked).
function highlight(layer, quote) {
  const passage = ` ${norm(quote)} `;
  if (passage.trim().length < 3) return [];
  const hits = [];
  for (const span of layer.querySelectorAll("span")) {
    const words = norm(span.textContent);
    if (!words) continue;
    const long = words.length >= 12 || words.split(" ").length >= 3;
    if (long ? passage.includes(` ${words} `) || passage.includes(words) : false) {
      span.classList.add("pw-hit");
      hits.push(span);
    }
  }
  return hits;
}

function onActivate(event) {
  const target = event.target.closest(".pw-cite, .pw-source");
  if (!target) return;
  if (event.type === "keydown" && event.key !== "Enter" && event.key !== " ") return;
  event.preventDefault();
  // Document and page ride in class names (pw-d-<id>, pw-p-<n>); the title is "file, p. N" then the passage.
  const cls = [...target.classList];
  const doc = (cls.find((c) => c.startsWith("pw-d-")) || "").slice(5);
  const page = Number((cls.find((c) => c.startsWith("pw-p-")) || "pw-p-1").slice(5));
  const title = target.getAttribute("title") || "";
  const cut = title.indexOf("\n");
  const head = cut >= 0 ? title.slice(0, cut) : title;
  const file = head.replace(/, p\. \d+( · .*)?$/, "");
  const removed = target.classList.contains("pw-gone");
  show({ doc, page, file, quote: cut >= 0 ? title.slice(cut + 1) : "", removed });
}

document.addEventListener("click", (event) => {
  if (event.target.closest("#pw-prev") && state.pdf && state.page > 1) render(state.page - 1);
  else if (event.target.closest("#pw-next") && state.pdf && state.page < state.pdf.numPages) render(state.page + 1);
  else onActivate(event);
});
document.addEventListener("keydown", onActivate);
window.pagewise = { show };
