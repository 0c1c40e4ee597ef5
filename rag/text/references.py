"""Pages and captions a question names: "the chart on page 14", "p. 14", "slide 3", "Figure 3", "Table 2".

A reader names a page by the number printed on it (its label: "14", "iv"), and a figure or table by its caption's
number. ``find_references`` picks those out of a question in the languages the app is used in (the words for page,
slide, figure and table in English, German, French, Spanish, Portuguese, Italian, Dutch, Russian, Ukrainian,
Polish, Turkish, Arabic, Hindi, Thai, Chinese, Japanese and Korean), and ``caption_kind`` tells whether a line of a
chunk is the caption (or a mention) of the figure or table named. A number alone ("the 14 pages", "in 2018") is
never a reference: only a number after (or, in Chinese, Japanese and Korean, around) one of those words is.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Words for a page or a slide, before its number (lower case; a trailing dot is optional where one is written).
_PAGE_WORDS = (
    r"pages?|pp?\.?|pgs?\.?|slides?|seiten?|s\.|folien?|p[áa]gina[s]?|p[áa]g\.?|diapositivas?|diapos?|"
    r"bladzijde|blz\.?|pagina's|страниц[аеыу]?|стр\.?|слайд[аеу]?|сторінк[аиуі]|strona|stronie|str\.|"
    r"sayfa(?:da|sı|si)?|صفحة|الصفحة|صفحه|पृष्ठ|पेज|หน้า|สไลด์|페이지|슬라이드"
)
# Words for a figure or a table, before its number; each maps to a kind.
_FIGURE_WORDS = (
    r"fig(?:ure|\.|s\.)?s?|charts?|graphs?|diagrams?|plots?|exhibits?|illustrations?|abbildung(?:en)?|abb\.|"
    r"grafik|schaubild|figura|gr[áa]fico|graphique|figuur|grafiek|рисун(?:ок|ке|ка)|рис\.|диаграмм[аеы]|"
    r"графи(?:к|ке)|rysun(?:ek|ku)|wykres|şekil|grafik|شكل|الشكل|رسم|चित्र|ग्राफ|ภาพที่|แผนภูมิ|그림|도표|차트"
)
_TABLE_WORDS = (r"tables?|tab\.|tabelle[n]?|tableau[x]?|tabla|cuadro|tabela|tabella|tabel|таблиц[аеы]|табл\.|tablo|"
                r"جدول|الجدول|तालिका|ตาราง(?:ที่)?|표")
_NUMBER = r"(\d{1,4}(?:[.\-–]\d{1,3})?[a-z]?)"  # 14, 3.2, 2-1, 4a
_ROMAN = r"([ivxlc]{1,7})"  # front matter: "page iv"
_PAGE = re.compile(rf"(?<![\w.])(?:{_PAGE_WORDS})\s*(?:no\.?|nr\.?|№|#)?\s*(?:{_NUMBER}|{_ROMAN})(?![\w])",
                   re.IGNORECASE)
# Chinese and Japanese put the number between or before the words: 第14页, 第 14 頁, 14ページ, 14페이지, 14쪽.
_PAGE_CJK = re.compile(r"第\s*(\d{1,4})\s*[页頁张張]|(\d{1,4})\s*(?:ページ|頁|페이지|쪽|页)|"
                       r"(?:幻灯片|スライド)\s*(\d{1,4})")
_CAPTION = re.compile(rf"(?<![\w])(?:({_FIGURE_WORDS})|({_TABLE_WORDS}))\s*(?:no\.?|nr\.?|№|#)?\s*{_NUMBER}"
                      r"(?![\w])", re.IGNORECASE)
_CAPTION_CJK = re.compile(r"(?:(图|圖|図)|(表))\s*(\d{1,3}(?:[.\-]\d{1,3})?)")
FIGURE, TABLE = "figure", "table"


@dataclass(frozen=True)
class References:
    """What a question names: page labels ("14", "iv", lower case) and captions as (kind, number) pairs."""

    pages: tuple[str, ...] = ()
    captions: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pages or self.captions)


def find_references(question: str) -> References:
    """The pages and the figures or tables ``question`` names (see the module notes); empty when none."""
    text = _digits(question)
    pages: list[str] = []
    for m in _PAGE.finditer(text):
        label = (m.group(1) or m.group(2)).lower()
        pages.append(label)
        ends = re.fullmatch(r"(\d+)[\-–](\d+)", label)  # "pp. 12-13": a range (or a chapter-page label, kept too)
        if ends and 0 < int(ends[2]) - int(ends[1]) <= 5:
            pages.extend(str(n) for n in range(int(ends[1]), int(ends[2]) + 1))
    for m in _PAGE_CJK.finditer(text):
        pages.append(next(g for g in m.groups() if g))
    captions: list[tuple[str, str]] = []
    for m in _CAPTION.finditer(text):
        captions.append((FIGURE if m.group(1) else TABLE, m.group(3).lower()))
    for m in _CAPTION_CJK.finditer(text):
        captions.append((FIGURE if m.group(1) else TABLE, m.group(3)))
    return References(tuple(dict.fromkeys(pages)), tuple(dict.fromkeys(captions)))


def caption_kind(text: str, kind: str, number: str) -> float:
    """How surely ``text`` (a chunk) holds the caption of figure or table ``number`` (``kind``): 1 where a line
    opens with it ("Figure 3: …", "Table 2. …", "图3"), 0.5 where the text only mentions it ("see Figure 3"),
    0 where it doesn't name it (a figure's word counts for any figure-like kind: a chart, a graph, an exhibit)."""
    best = 0.0
    text = _digits(text)
    for m in _CAPTION.finditer(text):
        found = FIGURE if m.group(1) else TABLE
        if found == kind and m.group(3).lower() == number:
            opens = m.start() == 0 or text[:m.start()].rstrip(" \t").endswith("\n") or text[m.start() - 1] == "\f"
            best = max(best, 1.0 if opens else 0.5)
            if best == 1.0:
                return best
    for m in _CAPTION_CJK.finditer(text):
        found = FIGURE if m.group(1) else TABLE
        if found == kind and m.group(3) == number:
            best = max(best, 1.0 if m.start() == 0 or text[m.start() - 1] == "\n" else 0.5)
    return best


def caption_strings(kind: str, number: str) -> list[str]:
    """Exact strings one of which a chunk holding that caption contains (for a substring search in the store, which
    is case-sensitive); ``caption_kind`` then checks each find."""
    words = (["Figure", "FIGURE", "Fig.", "FIG.", "Fig", "figure", "Chart", "Exhibit", "Abbildung", "Abb.", "Figura",
              "Рисунок", "Рис.", "图", "図", "그림", "شكل"] if kind == FIGURE else
             ["Table", "TABLE", "Tab.", "table", "Tabelle", "Tableau", "Tabla", "Cuadro", "Tabela", "Таблица", "表",
              "표", "جدول"])
    return [f"{w} {number}" for w in words] + [f"{w}{number}" for w in words if not w.isascii()]


def _digits(text: str) -> str:
    """Other scripts' digits (Arabic-Indic ٣, Devanagari ३, Thai ๓, full-width ３) as ASCII digits."""
    if text.isascii():
        return text
    return "".join(str(unicodedata.digit(c)) if c.isdigit() and not c.isascii() and unicodedata.digit(c, None)
                   is not None else c for c in text)
