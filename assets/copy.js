// Pagewise: "Copy as Markdown" under each answer. The Markdown (answer, then each source: file, page, quoted
// passage) is made on the server and rides in the title of a hidden span beside the button (see ui/render.py).

async function copyText(text) {
  // The clipboard API needs a secure context (https or localhost); on a LAN over http fall back to a selection.
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (err) {
      // denied: try the selection below
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } finally {
    area.remove();
  }
  return ok;
}

async function onCopy(event) {
  const button = event.target.closest(".pw-copy-md");
  if (!button) return;
  if (event.type === "keydown" && event.key !== "Enter" && event.key !== " ") return;
  event.preventDefault();
  event.stopPropagation();
  const source = button.parentElement && button.parentElement.querySelector(".pw-md");
  const markdown = source ? source.getAttribute("title") || "" : "";
  const ok = markdown && (await copyText(markdown));
  button.dataset.copied = ok ? "yes" : "no";
  window.pagewiseCopied = markdown;  // what the last copy held (read by the browser tests)
  setTimeout(() => delete button.dataset.copied, 1800);
}

document.addEventListener("click", onCopy, true);
document.addEventListener("keydown", onCopy, true);
