"""The reports of ``rag eval``: a Markdown summary and one self-contained HTML file (charts drawn as inline SVG, no
script, no stylesheet or font from elsewhere), for one run or two runs side by side."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from html import escape
from typing import Any, Sequence

from rag.evaluation.metrics import KS, STAGES, Result

COLOURS = ("#3b6fd4", "#e07b39", "#4a9a5b", "#a05bc4")


@dataclass(frozen=True)
class RunView:
    """A run as the reports show it: its label, what was run (``run.json``), its figures and its results."""

    label: str
    info: dict[str, Any]
    summary: dict[str, Any]
    results: list[Result]


# (key, label, kind): kind "share" prints 0.00-1.00, "count" an integer; higher is better unless said
ROWS: tuple[tuple[str, str, str], ...] = (
    ("questions", "questions", "count"),
    ("errors", "questions that failed", "count"),
    *((f"recall@{k}", f"page recall@{k} (search)", "share") for k in KS),
    ("mrr", "MRR (search)", "share"),
    ("given_recall", "an evidence page among the passages given", "share"),
    ("citation_precision", "citation precision (cited pages that are evidence)", "share"),
    ("statements", "statements checked", "count"),
    ("unsupported_share", "statements no source supports", "share"),
    ("repointed_share", "statements re-pointed to another source", "share"),
    ("refusal_rate", "refusals on unanswerable questions", "share"),
    ("false_refusal_rate", "refusals on answerable questions", "share"),
    ("number_match", "reference figures stated", "share"),
    ("token_f1", "token F1 against the reference", "share"),
)


def _fmt(value: Any, kind: str = "share") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return str(int(value)) if kind == "count" else f"{value:.2f}"


def _ms(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _setup(info: dict[str, Any]) -> str:
    keys = ("chat_model", "embedder", "rerank", "top_k", "think", "fusion")
    return ", ".join(f"{k.replace('_', ' ')} {info[k]}" for k in keys if k in info)


# --- Markdown ----------------------------------------------------------------------------------------------------
def markdown(runs: Sequence[RunView]) -> str:
    """The summary as Markdown: the figures (one column per run), time per stage, and, for one run, the questions to
    look at (evidence not found, statements unsupported, refusals where an answer was due)."""
    head = "| | " + " | ".join(escape_md(r.label) for r in runs) + " |"
    lines = [f"# rag eval: {' vs '.join(r.label for r in runs)}", ""]
    lines += [f"- **{escape_md(r.label)}**: {escape_md(_setup(r.info))}" for r in runs if r.info] + [""]
    lines += [head, "|---" * (len(runs) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(_fmt(r.summary.get(key), kind) for r in runs) + " |"
              for key, label, kind in ROWS]
    lines += ["", "## Time per stage (p50 / p95)", "", head, "|---" * (len(runs) + 1) + "|"]
    for stage in STAGES:
        cells = []
        for r in runs:
            t = r.summary["timings"].get(stage)
            cells.append(f"{_ms(t['p50'])} / {_ms(t['p95'])}" if t else "–")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    if len(runs) == 1:
        lines += _to_look_at(runs[0].results)
    return "\n".join(lines) + "\n"


def escape_md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _to_look_at(results: Sequence[Result]) -> list[str]:
    lines: list[str] = []
    groups = (
        ("Evidence not found in the first 10", [r for r in results if not r.error and r.answerable and r.pages
                                                 and (r.first_hit is None or r.first_hit > 10)]),
        ("Statements no source supports", [r for r in results if r.claims.get("unsupported")]),
        ("Answered though marked not answerable", [r for r in results if not r.error and not r.answerable
                                                    and not r.refused]),
        ("Refused though answerable", [r for r in results if not r.error and r.answerable and r.refused]),
        ("Failed", [r for r in results if r.error]),
    )
    for title, found in groups:
        if not found:
            continue
        lines += ["", f"## {title} ({len(found)})", ""]
        for r in found[:20]:
            note = f" — {r.error}" if r.error else f" — {r.claims.get('unsupported')} unsupported" \
                if title.startswith("Statements") else ""
            lines.append(f"- {escape_md(r.question)}{escape_md(note)}")
        if len(found) > 20:
            lines.append(f"- … and {len(found) - 20} more (results.jsonl has them all)")
    return lines


# --- HTML --------------------------------------------------------------------------------------------------------
def html(runs: Sequence[RunView]) -> str:
    """The report as one self-contained HTML page: the figures, charts (inline SVG) and, for one run, every
    question with its result."""
    title = "rag eval: " + " vs ".join(r.label for r in runs)
    legend = "".join(f'<span class="key"><i style="background:{COLOURS[i % 4]}"></i>{escape(r.label)}'
                     f'<small>{escape(_setup(r.info))}</small></span>' for i, r in enumerate(runs))
    table = ("<table><tr><th></th>" + "".join(f"<th>{escape(r.label)}</th>" for r in runs) + "</tr>"
             + "".join(f"<tr><td>{escape(label)}</td>" + "".join(
                 f"<td>{_fmt(r.summary.get(key), kind)}</td>" for r in runs) + "</tr>" for key, label, kind in ROWS)
             + "</table>")
    retrieval = _bars("Retrieval (page level, search stage)", [f"R@{k}" for k in KS] + ["MRR"],
                      [[r.summary.get(f"recall@{k}") for k in KS] + [r.summary.get("mrr")] for r in runs])
    answers = _bars("Answers", ["citation precision", "unsupported", "re-pointed", "refusals (unanswerable)",
                                "reference figures", "token F1"],
                    [[r.summary.get(k) for k in ("citation_precision", "unsupported_share", "repointed_share",
                                                 "refusal_rate", "number_match", "token_f1")] for r in runs])
    stages = [s for s in STAGES if any(s in r.summary["timings"] for r in runs)]
    timing = _bars("Time per stage, p50 (seconds; the thin bar: p95)", stages,
                   [[r.summary["timings"].get(s, {}).get("p50") for s in stages] for r in runs],
                   [[r.summary["timings"].get(s, {}).get("p95") for s in stages] for r in runs], scale=None)
    rows = _question_rows(runs[0].results) if len(runs) == 1 else ""
    made = time.strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.1rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; margin: 0.5rem 0; }} td, th {{ padding: 3px 10px; border-bottom: 1px solid #ddd;
text-align: right; vertical-align: top; }} td:first-child, th:first-child {{ text-align: left; }}
.key {{ display: inline-block; margin-right: 1.5rem; }} .key i {{ display: inline-block; width: 12px; height: 12px;
margin-right: 6px; }} .key small {{ display: block; color: #666; }}
.q td {{ font-size: 12px; }} .q td:nth-child(2) {{ max-width: 420px; text-align: left; }} .bad {{ color: #b3261e; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #333; }}
</style></head><body>
<h1>{escape(title)}</h1><p>{legend}</p><p><small>Made {made}.</small></p>
{table}{retrieval}{answers}{timing}{rows}
</body></html>
"""


def _bars(title: str, groups: Sequence[str], values: Sequence[Sequence[float | None]],
          whiskers: Sequence[Sequence[float | None]] | None = None, scale: float | None = 1.0) -> str:
    """A grouped bar chart as inline SVG: one group per label, one bar per run (``whiskers``: a thin bar beside)."""
    present = [v for run in list(values) + list(whiskers or []) for v in run if v is not None and not math.isnan(v)]
    top = scale or (max(present) * 1.1 if present and max(present) > 0 else 1.0)
    runs = len(values)
    bar, gap, height, base = 18, 22, 160, 180
    slots = [max(runs * bar + gap, int(len(label) * 6.2) + 12) for label in groups]  # room for each label
    width = max(420, sum(slots) + 60)
    parts = [f'<h2>{escape(title)}</h2><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{base + 40}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<line x1="40" y1="{base}" x2="{width}" y2="{base}" stroke="#999"/>']
    for tick in (0.0, 0.5, 1.0):
        y = base - tick * height
        parts.append(f'<text x="4" y="{y + 4:.0f}">{tick * top:.2g}</text>'
                     f'<line x1="40" y1="{y:.0f}" x2="{width}" y2="{y:.0f}" stroke="#eee"/>')
    for g, label in enumerate(groups):
        x0 = 50 + sum(slots[:g])
        for i, run in enumerate(values):
            v = run[g] if g < len(run) else None
            if v is None or math.isnan(v):
                continue
            h = max(1.0, min(1.0, v / top) * height)
            x = x0 + i * bar
            parts.append(f'<rect x="{x}" y="{base - h:.1f}" width="{bar - 3}" height="{h:.1f}" '
                         f'fill="{COLOURS[i % 4]}"><title>{escape(label)}: {v:.3g}</title></rect>')
            w = whiskers[i][g] if whiskers else None
            if w is not None and not math.isnan(w):
                hw = min(1.0, w / top) * height
                parts.append(f'<rect x="{x + bar - 6}" y="{base - hw:.1f}" width="3" height="{hw:.1f}" '
                             f'fill="#555"><title>{escape(label)} p95: {w:.3g}</title></rect>')
        parts.append(f'<text x="{x0}" y="{base + 14}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _question_rows(results: Sequence[Result]) -> str:
    rows = []
    for r in results:
        hit = "–" if not r.pages else (str(r.first_hit) if r.first_hit else "not found")
        precision = r.citation_precision
        claims = r.claims
        flagged = claims.get("unsupported", 0)
        rows.append(
            f'<tr><td>{escape(r.id)}</td><td>{escape(r.question)}<br><small>{escape(r.answer[:300])}</small></td>'
            f'<td class="{"bad" if hit == "not found" else ""}">{hit}</td><td>{_fmt(precision)}</td>'
            f'<td class="{"bad" if flagged else ""}">{claims.get("statements", 0)} / {flagged} / '
            f'{claims.get("re-pointed", 0)}</td>'
            f'<td class="{"bad" if r.refused != (not r.answerable) else ""}">{"yes" if r.refused else "no"}</td>'
            f'<td>{_fmt(r.token_f1)}</td><td>{_ms(r.timings.get("total", math.nan))}</td>'
            f'<td class="bad">{escape(r.error or "")}</td></tr>')
    return ('<h2>Questions</h2><table class="q"><tr><th>id</th><th>question and answer</th><th>first evidence page '
            'rank</th><th>citation precision</th><th>statements / unsupported / re-pointed</th><th>refused</th>'
            '<th>token F1</th><th>time</th><th>error</th></tr>' + "".join(rows) + "</table>")
