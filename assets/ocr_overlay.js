// Pagewise OCR highlight. A page read by OCR (a scan, a slide exported as an image) has no PDF.js text layer to
// match, so the cited passage is shown by drawing the boxes of its recognised lines over the page image. The
// boxes come from <doc_id>.ocr.json, written beside the stored PDF at ingest: {"pages": {"<n>": {"lines":
// [{"text", "box": [x0, y0, x1, y1]}]}}}, fractions of the page's width and height with the origin top-left. They
// are placed in percentages of the page element, so they stay on their words at any zoom.

const loaded = new Map(); // url -> Promise of the parsed file (null when there is none)

// The OCR lines of one page (``{lines: [...]}``), or null when the document or page has none.
export async function ocrPageInfo(url, pageNumber) {
  if (!loaded.has(url)) {
    loaded.set(url, fetch(url).then((r) => (r.ok ? r.json() : null)).catch(() => null));
  }
  const data = await loaded.get(url);
  return (data && data.pages && data.pages[String(pageNumber)]) || null;
}

// Letters and digits only, lower-cased: OCR'd text reaches the passage through the same cleaning as any page
// (hyphens at line ends joined, spaces collapsed), so comparing without spaces and punctuation lines them up.
const key = (s) => (s || "").normalize("NFKC").toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "");

const LONG = 10; // a line this long (in letters and digits) is distinctive enough to be found anywhere ahead
const SLACK = 3; // a short line counts only where it follows the previous hit within this many characters

// Indices of the lines (in reading order, as the page's text was made of them) that belong to the quoted
// passage. The passage is walked from its start: a long line is found anywhere ahead of the last hit; a short one
// (a table cell, "2018") only right after it, so stray short words elsewhere on the page aren't marked. The
// first and last lines may be cut by the passage's ends: one whose end opens the passage, or whose start closes
// it, counts too.
export function matchLines(lines, quote) {
  const passage = key(quote);
  const hits = [];
  if (passage.length < 3) return hits;
  const keys = lines.map((line) => key(line.text));
  // A short line opening the passage counts when the next line carries on right after it.
  const opens = (index, k) => {
    const next = keys.slice(index + 1).find(Boolean);
    return passage.startsWith(k) && next !== undefined && passage.startsWith(next, k.length);
  };
  let cursor = 0;
  keys.forEach((k, index) => {
    if (!k || cursor >= passage.length) return;
    const at = passage.indexOf(k, cursor);
    if (at >= 0 && (k.length >= LONG || (hits.length && at - cursor <= SLACK) || (!hits.length && opens(index, k)))) {
      hits.push(index);
      cursor = at + k.length;
    } else if (!hits.length && k.length > LONG) {
      const head = passage.slice(0, LONG);
      const j = k.indexOf(head);
      if (j > 0 && passage.startsWith(k.slice(j))) {
        hits.push(index);
        cursor = k.length - j;
      }
    } else if (hits.length && passage.length - cursor >= 4 && k.startsWith(passage.slice(cursor))) {
      hits.push(index); // the passage (or its quoted part) ends inside this line
      cursor = passage.length;
    }
  });
  return hits;
}

// Draw the passage's line boxes over ``layer`` (the page element, positioned) and return them, first first.
export function drawOcrBoxes(layer, pageInfo, quote) {
  for (const old of layer.querySelectorAll(".pw-ocr-box")) old.remove();
  const lines = (pageInfo && pageInfo.lines) || [];
  return matchLines(lines, quote).map((index) => {
    const { text, box } = lines[index];
    const [x0, y0, x1, y1] = box;
    const mark = document.createElement("div");
    mark.className = "pw-ocr-box";
    mark.title = text;
    Object.assign(mark.style, {
      position: "absolute", left: `${x0 * 100}%`, top: `${y0 * 100}%`, width: `${(x1 - x0) * 100}%`,
      height: `${(y1 - y0) * 100}%`, background: "rgb(250 204 21 / 0.4)", borderRadius: "2px",
      mixBlendMode: "multiply", pointerEvents: "none",
    });
    layer.append(mark);
    return mark;
  });
}
