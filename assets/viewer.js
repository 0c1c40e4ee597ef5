// Pagewise PDF viewer: a click on a citation chip or a source card opens the PDF at that page (PDF.js) and
// highlights the cited passage in the page's text layer (on a page read by OCR: over its recognised lines, see
// ocr_overlay.js). Config comes from window.PAGEWISE (see ui/app.py).
// Zoom in/out and fit width re-render the page at the new scale (text layer and highlight included); the large view
// lays the viewer over the whole window. Keys: ←/→ turn pages, +/− zoom, Esc closes the large view.
import { drawOcrBoxes, ocrPageInfo } from "./ocr_overlay.js";

const cfg = window.PAGEWISE || {};
const root = () => location.pathname.replace(/\/$/, "");
const base = (p) => `${root()}/gradio_api/file=${p}`;
// The stored PDFs come from the app's own route, under a key made for the signed-in user (ui/files.py).
let fileKey = null;
async function stored(name) {
  if (!fileKey) {
    const reply = await fetch(`${root()}${cfg.fileKey}`, { credentials: "same-origin", cache: "no-store" });
    if (!reply.ok) throw new Error("this document can't be opened");
    fileKey = (await reply.json()).key;
  }
  return storedUrl(name);
}
const storedUrl = (name) => `${root()}${cfg.files}/${fileKey}/${name}`;
let pdfjs = null;
// zoom: null = fit the width of the viewer; else a PDF.js scale (1 = 72 dpi). seq: the latest render wins.
// focus: the sentence of the passage the answer cites (stressed within the highlight).
const state = { doc: null, pdf: null, labels: null, page: 1, quote: "", focus: "", file: "", task: null, ocr: false, zoom: null,
                seq: 0 };
const CSS_UNITS = 96 / 72; // "100%" is the printed size, as PDF viewers count it
const ZOOMS = [0.5, 0.67, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 1.75, 2, 2.5, 3, 4].map((z) => z * CSS_UNITS);
const MAX_CANVAS_PIXELS = 16_777_216; // past this a page is drawn at a lower resolution rather than not at all
const PHONE = 700; // narrower than this, a citation opens the large view

async function lib() {
  if (!pdfjs) {
    pdfjs = await import(base(cfg.pdfjs));
    pdfjs.GlobalWorkerOptions.workerSrc = base(cfg.worker);
  }
  return pdfjs;
}

// CJK radicals some fonts map characters to (pdf.js reads "增⻓" where the passage says "增长"), as characters.
const RADICALS = "⺁厂⺇几⺊卜⺌小⺎兀⺐尢⺒巳⺓幺⺖忄⺘扌⺙攵⺛旡⺝月⺞歺⺟母⺠民⺡氵⺢氺⺣灬⺤爫⺦丬⺨犭⺩王⺪疋⺫罒⺬示⺭礻⺮竹⺯糸⺰纟⺲罒⺶羊⺷羊⺹耂⺺肀⺻聿⺼月⺽臼⺾艹⺿艹⻀艹⻁虎⻂衤⻃覀⻄西⻅见⻆角⻈讠⻉贝⻋车⻌辶⻍辶⻎辶⻏阝⻐钅⻑長⻓长⻔门⻖阝⻗雨⻘青⻙韦⻚页⻛风⻜飞⻝食⻟飠⻠饣⻢马⻣骨⻤鬼⻥鱼⻦鸟⻧卤⻨麦⻩黄⻪黾⻫斉⻬齐⻭歯⻮齿⻯竜⻰龙⻱龜⻲亀⻳龟";
const RADICAL = new Map(Array.from({ length: RADICALS.length / 2 }, (_, i) => [RADICALS[2 * i], RADICALS[2 * i + 1]]));
const CJK_RUN = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]{4}/u;
const norm = (s) => (s || "").normalize("NFKC").replace(/[\u2e80-\u2eff]/gu, (c) => RADICAL.get(c) || c)
  .toLowerCase().replace(/[^\p{L}\p{N}]+/gu, " ").trim();

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

async function show({ doc, page, file, quote, focus, removed, ocr }) {
  const viewer = el("pw-viewer");
  if (!viewer || !doc) return;
  if (window.innerWidth < PHONE) setLarge(true);
  if (removed) return showRemoved(file, page, quote);
  viewer.dataset.state = "loading";
  setBar(`Opening ${file}…`);
  try {
    const lib_ = await lib();
    if (state.doc !== doc) {
      state.pdf = await lib_.getDocument({ url: await stored(`${doc}.pdf`) }).promise;
      state.doc = doc;
      // The PDF's page labels (the numbers printed on its pages, "iv", "14"), or null where it has none.
      state.labels = await state.pdf.getPageLabels().catch(() => null);
    }
    state.file = file;
    state.quote = quote || "";
    state.focus = focus || "";
    state.ocr = Boolean(ocr);
    await render(Math.min(Math.max(1, page || 1), state.pdf.numPages));
  } catch (err) {
    // The stored PDF is gone (Gradio answers 403 for a file that no longer exists): its document was removed.
    if (err && (err.missing || err.status === 404 || err.status === 403)) return showRemoved(file, page, quote);
    viewer.dataset.state = "error";
    setBar(`Can't open ${file}: ${err && err.message ? err.message : err}`);
  }
}

// "page 14 (16 of 200)" where the page's printed label differs from its position, else "page 16 of 200".
function pageName(pageNumber) {
  const label = state.labels && state.labels[pageNumber - 1];
  const of = `${pageNumber} of ${state.pdf.numPages}`;
  return label && label !== String(pageNumber) ? `page ${label} (${of})` : `page ${of}`;
}

// The scale that makes the page as wide as the viewer.
function fitScale(page) {
  const width = Math.max(200, el("pw-viewer-scroll").clientWidth - 24);
  return width / page.getViewport({ scale: 1 }).width;
}

async function render(pageNumber) {
  const viewer = el("pw-viewer");
  const box = el("pw-viewer-page-box");
  const seq = ++state.seq;
  const lib_ = await lib();
  const page = await state.pdf.getPage(pageNumber);
  if (seq !== state.seq) return;
  const viewport = page.getViewport({ scale: state.zoom || fitScale(page) });
  // Sharp on high-density screens, within what a canvas can hold.
  const ratio = Math.min(window.devicePixelRatio || 1,
                         Math.sqrt(MAX_CANVAS_PIXELS / (viewport.width * viewport.height)));

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
  if (seq !== state.seq) return;
  box.replaceChildren(wrap);
  const hits = state.ocr
    ? drawOcrBoxes(wrap, await ocrPageInfo(await stored(`${state.doc}.ocr.json`), pageNumber), state.quote)
    : highlight(layer, state.quote);
  if (seq !== state.seq) return;
  const stressed = stress(hits, state.focus);

  state.page = pageNumber;
  viewer.dataset.state = "ready";
  viewer.dataset.page = String(pageNumber);
  viewer.dataset.doc = state.doc;
  viewer.dataset.hits = String(hits.length);
  viewer.dataset.zoom = String(Math.round((viewport.scale / CSS_UNITS) * 100));
  setBar(state.file);
  el("pw-viewer-page").textContent = pageName(pageNumber);
  el("pw-zoom-level").textContent = `${viewer.dataset.zoom}%`;
  el("pw-zoom-level").title = `${viewer.dataset.zoom}% of the printed size`;
  el("pw-fit").setAttribute("aria-pressed", String(!state.zoom));
  el("pw-open-tab").href = `${storedUrl(`${state.doc}.pdf`)}#page=${pageNumber}`;
  if (hits.length) {
    // Bring the cited sentence (or the passage) into view inside the viewer only (the page around it stays put).
    const scroller = el("pw-viewer-scroll");
    const at = (stressed[0] || hits[0]).getBoundingClientRect();
    const frame = scroller.getBoundingClientRect();
    scroller.scrollTop += at.top - frame.top - (frame.height - at.height) / 2;
    scroller.scrollLeft += at.left - frame.left - Math.max(12, (frame.width - at.width) / 2);
  }
}

// --- zoom and the large view ------------------------------------------------------------------------------------
function zoom(direction) {
  if (!state.pdf) return;
  const current = state.zoom || parseFloat(el("pw-viewer").dataset.zoom) / 100 * CSS_UNITS;
  // The next step that makes a visible difference (fit width may sit just beside one).
  const next = direction > 0 ? ZOOMS.find((z) => z > current * 1.08)
    : [...ZOOMS].reverse().find((z) => z < current / 1.08);
  state.zoom = next || current;
  render(state.page);
}

function fitWidth() {
  if (!state.pdf) return;
  state.zoom = null;
  render(state.page);
}

function setLarge(on) {
  const viewer = el("pw-viewer");
  if (!viewer || (viewer.dataset.large === "true") === on) return;
  viewer.dataset.large = String(on);
  document.body.classList.toggle("pw-large-open", on);
  const button = el("pw-large");
  button.textContent = on ? "✕" : "⤢";
  button.title = on ? "Close the large view (Esc)" : "Open the page large";
  button.setAttribute("aria-label", button.title);
  state.zoom = null; // opened or closed, the page fits the new width
  if (state.pdf) render(state.page);
}

let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => state.pdf && !state.zoom && render(state.page), 150);
});

// Mark the text-layer spans that belong to the quoted passage: a span counts when its words appear, in order,
// inside the passage (short spans need an exact neighbourhood, so stray common words aren't marked). The other spans
// count together with the rest of their line (pdf.js gives Arabic, Hebrew or letter-by-letter placed text one span
// per letter or letter group, sometimes in visual order, or letter-spaced text as "l e t t e r s"): see lineHits.
function highlight(layer, quote) {
  const passage = ` ${norm(quote)} `;
  if (passage.trim().length < 3) return [];
  const hits = [];
  const rest = [];
  for (const span of layer.querySelectorAll("span")) {
    const words = norm(span.textContent);
    if (!words) continue;
    // Four Chinese or Japanese characters say as much as a dozen letters (and pdf.js cuts CJK lines short).
    const long = words.length >= 12 || words.split(" ").length >= 3 || CJK_RUN.test(words);
    if (long ? passage.includes(` ${words} `) || passage.includes(words) : false) {
      span.classList.add("pw-hit");
      hits.push(span);
    } else if (!span.firstElementChild) {
      rest.push(span); // a text span (not pdf.js's box around a tagged PDF's marked content)
    }
  }
  for (const span of lineHits(rest, compact(quote))) {
    span.classList.add("pw-hit");
    hits.push(span);
  }
  return hits;
}

// Letters and digits only: spans of single letters join with no space between them.
const compact = (s) => norm(s).replace(/ /g, "");
const reversed = (s) => Array.from(s).reverse().join("");
const MIN_LINE_RUN = 12; // letters a line's run of spans needs to count, like a long span
const runOf = new WeakMap(); // span → the run of its line it was marked with, for stress()

// Spans, grouped into runs of the same line (consecutive in the layer, overlapping vertically), that read part
// of the passage: the whole run, or, where the passage starts or ends on that line, the spans at that end. A run is
// read in layer order and in reverse (pdf.js may give right-to-left text in visual order: its spans reversed, and
// letter groups within them too).
function lineHits(spans, passage) {
  const hits = [];
  for (const line of lines(spans)) {
    const back = [...line].reverse();
    const readings = [[line, line.map((s) => compact(s.textContent))], [back, back.map((s) => compact(s.textContent))],
                      [back, back.map((s) => reversed(compact(s.textContent)))]];
    for (const [order, texts] of readings) {
      const part = readPart(texts, passage);
      if (!part) continue;
      const run = { spans: order.slice(part.from, part.to), texts: texts.slice(part.from, part.to) };
      for (const span of run.spans) runOf.set(span, run);
      hits.push(...run.spans);
      break;
    }
  }
  return hits;
}

// Consecutive spans whose boxes overlap vertically by at least half the smaller height, as lists.
function lines(spans) {
  const boxes = spans.map((span) => span.getBoundingClientRect());
  const out = [];
  boxes.forEach((box, i) => {
    const last = boxes[i - 1];
    const same = last && Math.min(box.bottom, last.bottom) - Math.max(box.top, last.top)
      >= 0.5 * Math.min(box.height, last.height);
    if (same) out[out.length - 1].push(spans[i]);
    else out.push([spans[i]]);
  });
  return out;
}

// Which of texts (a line's spans, in reading order) read part of target: all of them, else the most at the end that
// start target, or at the start that end it; at least MIN_LINE_RUN letters (or a CJK run). {from, to} or null.
function readPart(texts, target) {
  const n = texts.length;
  const reads = (from, to, test) => {
    const text = texts.slice(from, to).join("");
    return (text.length >= MIN_LINE_RUN || CJK_RUN.test(text)) && test(text);
  };
  if (reads(0, n, (t) => target.includes(t))) return { from: 0, to: n };
  for (let cut = 1; cut < n; cut += 1) {
    if (reads(cut, n, (t) => target.startsWith(t))) return { from: cut, to: n };
    if (reads(0, n - cut, (t) => target.endsWith(t))) return { from: 0, to: n - cut };
  }
  return null;
}

// Of the highlighted spans or OCR boxes (lines), stress those mostly made of the cited sentence's words: a line it shares with
// the sentence before or after still counts when most of it is the cited one. Spans marked as part of a line's run
// (see lineHits) are stressed where the run reads the sentence.
function stress(hits, sentence) {
  const words = new Set(norm(sentence).split(" ").filter(Boolean));
  if (words.size < 2) return [];
  const target = compact(sentence);
  const inRuns = new Set();
  for (const run of new Set(hits.map((span) => runOf.get(span)).filter(Boolean))) {
    const part = readPart(run.texts, target);
    if (part) run.spans.slice(part.from, part.to).forEach((span) => inRuns.add(span));
  }
  const stressed = hits.filter((span) => {
    if (runOf.has(span)) return inRuns.has(span);
    // A text-layer span holds its text; an OCR box (ocr_overlay.js) names its line in its title.
    const line = norm(span.textContent || span.title).split(" ").filter(Boolean);
    const shared = line.filter((w) => words.has(w)).length;
    return line.length > 0 && shared >= Math.min(2, line.length) && shared >= 0.6 * line.length;
  });
  for (const span of stressed) span.classList.add("pw-focus");
  return stressed;
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
  const file = head.replace(/, p\. [^·]+?( · .*)?$/, "");
  const removed = target.classList.contains("pw-gone");
  const quote = cut >= 0 ? title.slice(cut + 1) : "";
  const [a, b] = ((cls.find((c) => /^pw-s-\d+-\d+$/.test(c)) || "").match(/\d+/g) || []).map(Number);
  show({ doc, page, file, quote, focus: b ? quote.slice(a, b) : "", removed, ocr: cls.includes("pw-ocr") });
}

function turn(step) {
  const next = state.page + step;
  if (state.pdf && next >= 1 && next <= state.pdf.numPages) render(next);
}

const BUTTONS = {
  "pw-prev": () => turn(-1),
  "pw-next": () => turn(1),
  "pw-zoom-in": () => zoom(1),
  "pw-zoom-out": () => zoom(-1),
  "pw-fit": fitWidth,
  "pw-large": () => setLarge(el("pw-viewer").dataset.large !== "true"),
  "pw-viewer-backdrop": () => setLarge(false),
};

document.addEventListener("click", (event) => {
  const button = event.target.closest(Object.keys(BUTTONS).map((id) => `#${id}`).join(","));
  if (button) BUTTONS[button.id]();
  else onActivate(event);
});

// Keys act on the viewer unless someone is typing (or choosing in a list).
const KEYS = { ArrowLeft: () => turn(-1), ArrowRight: () => turn(1), "+": () => zoom(1), "=": () => zoom(1),
               "-": () => zoom(-1), Escape: () => setLarge(false) };
document.addEventListener("keydown", (event) => {
  onActivate(event);
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || !KEYS[event.key]) return;
  if (event.target.closest && event.target.closest("input, textarea, select, [contenteditable]")) return;
  if (!state.pdf && event.key !== "Escape") return;
  if (event.key === "Escape" && el("pw-viewer")?.dataset.large !== "true") return;
  event.preventDefault();
  KEYS[event.key]();
});
window.pagewise = { show };
