// Pagewise library table: the headers sort it (name, pages, date added; a second click reverses) and, in a long
// library, a box filters it by name. The server re-renders the table whenever documents come or go, so the chosen
// order and filter live here and are applied again to each new table.

const view = { key: "added", dir: -1, filter: "" };

function rows(table) {
  return [...table.tBodies[0].rows];
}

function apply(box) {
  const table = box.querySelector("table.pw-library");
  if (!table) return;
  const value = (row) => (view.key === "name" ? row.dataset.name : Number(row.dataset[view.key]));
  const sorted = rows(table).sort((a, b) => {
    const [x, y] = [value(a), value(b)];
    return (x < y ? -1 : x > y ? 1 : 0) * view.dir;
  });
  table.tBodies[0].append(...sorted);
  for (const th of table.tHead.rows[0].cells) {
    const on = th.dataset.sort === view.key;
    th.setAttribute("aria-sort", on ? (view.dir > 0 ? "ascending" : "descending") : "none");
  }
  const input = box.querySelector(".pw-lib-filter");
  const words = input ? view.filter.toLowerCase().trim() : "";
  if (input && input.value !== view.filter) input.value = view.filter;
  let shown = 0;
  for (const row of sorted) {
    row.hidden = Boolean(words) && !row.dataset.name.includes(words);
    shown += row.hidden ? 0 : 1;
  }
  const none = box.querySelector(".pw-lib-none");
  if (none) none.hidden = shown > 0;
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("#pw-library .pw-lib-sort");
  if (!button) return;
  const key = button.closest("th").dataset.sort;
  // A first click sorts names A→Z and numbers/dates from the largest; a second click reverses.
  view.dir = view.key === key ? -view.dir : key === "name" ? 1 : -1;
  view.key = key;
  apply(document.getElementById("pw-library"));
});

document.addEventListener("input", (event) => {
  if (!event.target.matches("#pw-library .pw-lib-filter")) return;
  view.filter = event.target.value;
  apply(document.getElementById("pw-library"));
});

// Re-apply the chosen order and filter whenever the server sends a new table.
const watch = new MutationObserver(() => {
  const box = document.getElementById("pw-library");
  const table = box && box.querySelector("table.pw-library");
  if (table && !table.dataset.applied) {
    table.dataset.applied = "1";
    apply(box);
  }
});
watch.observe(document.body, { childList: true, subtree: true });
