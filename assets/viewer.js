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

async function show({ doc, page, file, quote }) {
  const viewer = el("pw-viewer");
  if (!viewer || !doc) return;
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
    // Four Chinese or Japanese characters say as much as a dozen letters (and pdf.js cuts CJK lines short).
    const long = words.length >= 12 || words.split(" ").length >= 3 || CJK_RUN.test(words);
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
  const file = head.replace(/, p\. \d+$/, "");
  show({ doc, page, file, quote: cut >= 0 ? title.slice(cut + 1) : "" });
}

document.addEventListener("click", (event) => {
  if (event.target.closest("#pw-prev") && state.pdf && state.page > 1) render(state.page - 1);
  else if (event.target.closest("#pw-next") && state.pdf && state.page < state.pdf.numPages) render(state.page + 1);
  else onActivate(event);
});
document.addEventListener("keydown", onActivate);
window.pagewise = { show };
