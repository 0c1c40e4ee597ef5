"""BM25 over chunk text, for questions that hinge on a rare term, a name or a number.

Each document's chunks are tokenized once, when it is ingested, and saved beside Chroma as
``<data_dir>/lexical/<index>/<doc_id>.bm25``: its chunk ids, each chunk's length in tokens and a sparse term-count
matrix with a column per term, the columns named by a 64-bit hash of the term and sorted by it (a JSON header, then
the raw arrays: loading is one read and no parsing; written atomically). Terms come from ``tokenize`` (per script
and language, see ``rag.text.languages``). A document id is the hash of the PDF, so these files never go stale; files
of earlier versions (``.bm25`` of format 1 and ``<doc_id>.json`` token lists, whose terms came from an English-only
analysis) are analysed again from the document's stored chunk text the first time they are read (no re-embedding).

In memory the index is a few immutable segments, as in Lucene: a segment holds the chunks (rows) of one or more
documents and their term columns. Adding a document adds a segment made from its file's arrays as they are;
removing one only forgets where its rows are (they stay in the segment, unreachable, until a merge rewrites it).
Small segments are merged in a background thread (log-structured tiers), so a query touches few segments. BM25
needs the number of chunks and their total length, kept as two counters, and each query term's document frequency,
computed at query time from the sizes of that term's columns in the segments, less the rows of removed documents;
scores are then computed from the counts of the query terms' columns only (Lucene's BM25 as bm25s computes it, k1
1.5, b 0.75), heaviest term first, skipping what can't change the top k (MaxScore; exact). So adding or removing a
document costs O(its size), never touches the other documents, and nothing precomputed goes stale when the
collection changes; start-up is loading the files and merging them, with no per-term Python work (terms are
hashes: two terms share one with odds of about 3e-8 at a million distinct terms, and then count as one).

A merged segment of 20,000 chunks or more is also saved whole, as ``<index>/segments/<hash of its documents>.seg``
(the same layout), and the next start memory-maps it instead of reading every document's file and merging them
again: at 100k chunks the merge takes seconds, mapping a file takes nothing, and the mapped pages are the file's
(shared, dropped and read again by the system under memory pressure) rather than the process's own. A saved segment
never goes stale either (its documents' rows are their files' rows); one whose documents were removed since only has
rows that are not searched, and a segment saved later that holds all of another's searched documents deletes it.

Searches read an immutable snapshot; changes (add, remove, sync, merges) build the next one under a lock. Which
documents are indexed: those given to ``sync`` (the registry's searchable documents), or, while ``sync`` has never
been called, every document file in the folder, listed again whenever the VERSION file says that some process
added or removed one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mmap
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from rag.core.datadir import atomic_write, read_ahead
from rag.text.languages import analyze

log = logging.getLogger(__name__)

K1 = 1.5
B = 0.75
TITLE_K1 = 1.2  # titles are a few words: a repeated term saturates sooner than in a chunk
_FORMAT = 2  # of the per-document files: 2 since terms are analysed per script and language (rag.text.languages)
_ENGLISH_ONLY = 1  # the same arrays, of terms from the English-only analysis before it
_MERGE_FACTOR = 4  # this many segments of one size tier are merged into one
_MERGE_FLOOR = 1024  # rows; segments below _MERGE_FACTOR times this form the lowest tier
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError)
_MAGIC = b"pagewise-bm25\n"
_SEGMENT_MAGIC = b"pagewise-bm25-segment\n"
_SAVE_ROWS = 20_000  # merged segments this large are saved, so that a start maps them instead of merging again
_SEGMENTS = "segments"  # the folder (inside the index's) of saved segments

# Where a document's chunks come from when it has no file here: (chunk_ids, texts).
Source = Callable[[str], tuple[Sequence[str], Sequence[str]]]

Analyzer = Callable[[str], list[str]]


def tokenize(text: str) -> list[str]:
    """The BM25 terms of a chunk or a question: per script and language (see ``rag.text.languages``)."""
    return analyze(text)


def title_terms(title: str) -> list[str]:
    """The terms of a document title for ``title_scores`` (a title is too short for language detection, so both
    the title and the question are read in their scripts' usual languages)."""
    return analyze(title, detect_language=False)


def title_scores(query: str, titles: dict[str, Sequence[str]]) -> dict[str, float]:
    """How well each document's title (as ``title_terms``) matches ``query``: BM25 over the given titles (k1
    ``TITLE_K1``, b ``B``), scaled so the best match is 1; documents whose title shares no term with the query are
    left out (so a question in another language than the titles boosts none)."""
    index = TitleIndex()
    for doc_id, terms in titles.items():
        index.put(doc_id, terms)
    return index.scores(query, list(titles))


class TitleIndex:
    """Document titles' terms (as ``title_terms``), kept between questions and inverted, so that ``scores`` (what
    ``title_scores`` computes) works only on the titles sharing a term with the question, not on every title of
    the documents searched. Safe to use from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}  # doc_id -> its title's term counts
        self._lengths: dict[str, int] = {}  # doc_id -> its title's length in terms
        self._postings: dict[str, dict[str, int]] = {}  # term -> {doc_id: count}

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._lengths

    def put(self, doc_id: str, terms: Sequence[str]) -> None:
        """Index (or index again) a document's title terms."""
        with self._lock:
            self._drop(doc_id)
            counts = Counter(terms)
            self._counts[doc_id], self._lengths[doc_id] = counts, len(terms)
            for term, count in counts.items():
                self._postings.setdefault(term, {})[doc_id] = count

    def drop(self, doc_id: str) -> None:
        """Forget a document's title (it is read again the next time it is searched)."""
        with self._lock:
            self._drop(doc_id)

    def _drop(self, doc_id: str) -> None:
        self._lengths.pop(doc_id, None)
        for term in self._counts.pop(doc_id, ()):
            postings = self._postings.get(term)
            if postings is not None:
                postings.pop(doc_id, None)
                if not postings:
                    del self._postings[term]

    def scores(self, query: str, doc_ids: Sequence[str]) -> dict[str, float]:
        """``title_scores`` of ``query`` over the titles of ``doc_ids`` (those indexed here)."""
        terms = set(title_terms(query))
        if not terms:
            return {}
        with self._lock:
            scope = {d for d in doc_ids if d in self._lengths}
            if not scope:
                return {}
            n = len(scope)
            average = max(1.0, sum(self._lengths[d] for d in scope) / n)
            scores: dict[str, float] = {}
            for term in terms:
                docs = {d: c for d, c in self._postings.get(term, {}).items() if d in scope}
                if not docs:
                    continue
                idf = math.log1p((n - len(docs) + 0.5) / (len(docs) + 0.5))
                for doc_id, count in docs.items():
                    norm = TITLE_K1 * (1 - B + B * self._lengths[doc_id] / average)
                    scores[doc_id] = scores.get(doc_id, 0.0) + idf * count * (TITLE_K1 + 1) / (count + norm)
        best = max(scores.values(), default=0.0)
        return {doc_id: score / best for doc_id, score in scores.items() if score > 0} if best > 0 else {}


def term_key(term: str) -> int:
    """The 64-bit name of a term's column (the same in every process and version of this format)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest(), "little")


# --- one document's term counts, and its file -------------------------------------------------------------------
@dataclass(frozen=True)
class _Counts:
    """A document's chunks: ids, lengths in tokens, and term counts (CSC, a column per term key, keys sorted)."""

    ids: np.ndarray  # chunk id per row (str)
    lengths: np.ndarray  # tokens per row
    keys: np.ndarray  # uint64 term key per column, ascending
    indptr: np.ndarray  # column j holds entries indptr[j]:indptr[j + 1]
    rows: np.ndarray  # row of each entry, ascending within a column
    tf: np.ndarray  # count of each entry


def _narrow(values: np.ndarray) -> np.ndarray:
    """Non-negative integers in the smallest unsigned type that holds them (row numbers and counts are small)."""
    top = int(values.max(initial=0))
    return values.astype(np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32 if top < 2**32
                         else np.int64)


def _count(chunk_ids: Sequence[str], tokens: Sequence[Sequence[str]]) -> _Counts:
    """Count the terms of each chunk."""
    if len(chunk_ids) != len(tokens):
        raise ValueError(f"{len(chunk_ids)} chunk ids for {len(tokens)} chunks")
    col_of_term: dict[str, int] = {}
    col_of_key: dict[int, int] = {}
    cols: list[int] = []
    rows: list[int] = []
    tfs: list[int] = []
    for row, chunk in enumerate(tokens):
        for term, n in Counter(chunk).items():
            col = col_of_term.get(term)
            if col is None:
                col = col_of_term[term] = col_of_key.setdefault(term_key(term), len(col_of_key))
            cols.append(col)
            rows.append(row)
            tfs.append(n)
    keys = np.fromiter(col_of_key, dtype=np.uint64, count=len(col_of_key))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[np.argsort(keys)] = np.arange(len(keys))
    col = rank[np.asarray(cols, dtype=np.int64)]
    order = np.argsort(col, kind="stable")  # by key; rows stay ascending within a column
    col, row_of, tf = col[order], np.asarray(rows, dtype=np.int64)[order], np.asarray(tfs, dtype=np.int64)[order]
    if len(col_of_key) < len(col_of_term):  # two terms of this document share a key: add up their counts
        _, first = np.unique(col * max(1, len(tokens)) + row_of, return_index=True)
        col, row_of, tf = col[first], row_of[first], np.add.reduceat(tf, first)
    indptr = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(np.bincount(col, minlength=len(keys)), out=indptr[1:])
    return _Counts(ids=np.asarray(list(chunk_ids), dtype=np.str_),
                   lengths=np.asarray([len(t) for t in tokens], dtype=np.int32), keys=np.sort(keys),
                   indptr=indptr, rows=_narrow(row_of), tf=_narrow(tf))


def _write(path: Path, counts: _Counts, version: int = _FORMAT) -> None:
    """Save a document's counts (atomically: another process never reads half a file); ``version`` says which
    analysis their terms come from."""
    arrays = {"ids": counts.ids, "lengths": _narrow(counts.lengths), "keys": counts.keys,
              "sizes": _narrow(np.diff(counts.indptr)), "rows": counts.rows, "tf": counts.tf}
    header = json.dumps({"format": version, "arrays": [[name, a.dtype.str, len(a)] for name, a in arrays.items()]})

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            at = fh.write(_MAGIC + len(header).to_bytes(4, "little") + header.encode("utf-8"))
            for a in arrays.values():
                at += fh.write(bytes(-at % 8))  # each array 8-byte aligned
                at += fh.write(np.ascontiguousarray(a).tobytes())

    atomic_write(path, write)


class _Outdated(ValueError):
    """A file of the previous format: its terms come from the English-only analysis."""


def _read(path: Path, outdated: bool = False) -> _Counts:
    """Load a document's counts (one read, arrays are views of it); raises one of ``_READ_ERRORS``, ``_Outdated``
    for a file of the previous format unless ``outdated`` (then it is read as it is)."""
    header, arrays = _parse(path.read_bytes(), _MAGIC)
    if header.get("format") == _ENGLISH_ONLY and not outdated:
        raise _Outdated(f"format {_ENGLISH_ONLY}")
    if header.get("format") not in (_FORMAT, _ENGLISH_ONLY):
        raise ValueError(f"format {header.get('format')}, expected {_FORMAT}")
    indptr = np.zeros(len(arrays["sizes"]) + 1, dtype=np.int64)
    np.cumsum(arrays["sizes"], out=indptr[1:])
    counts = _Counts(ids=arrays["ids"], lengths=arrays["lengths"], keys=arrays["keys"], indptr=indptr,
                     rows=arrays["rows"], tf=arrays["tf"])
    if (len(counts.ids) != len(counts.lengths) or len(counts.indptr) != len(counts.keys) + 1
            or int(counts.indptr[-1]) != len(counts.rows) or len(counts.rows) != len(counts.tf)
            or counts.keys.dtype != np.uint64):
        raise ValueError("inconsistent arrays")
    return counts


def _save(path: Path, magic: bytes, header: dict[str, object], arrays: dict[str, np.ndarray]) -> None:
    """Write ``header`` (JSON, with the arrays' names, types and lengths) and the raw arrays, each 8-byte aligned
    (atomically: another process never reads half a file)."""
    text = json.dumps({**header, "arrays": [[name, a.dtype.str, len(a)] for name, a in arrays.items()]})

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            at = fh.write(magic + len(text).to_bytes(4, "little") + text.encode("utf-8"))
            for a in arrays.values():
                at += fh.write(bytes(-at % 8))
                at += fh.write(np.ascontiguousarray(a).tobytes())

    atomic_write(path, write)


def _parse(data: bytes | mmap.mmap, magic: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and the arrays (views of ``data``, no copy) of a file ``_save`` wrote."""
    if data[:len(magic)] != magic:
        raise ValueError("not a lexical index file")
    size = int.from_bytes(data[len(magic):len(magic) + 4], "little")
    at = len(magic) + 4 + size
    header = json.loads(data[len(magic) + 4:at])
    arrays = {}
    for name, dtype, count in header["arrays"]:
        kind = np.dtype(dtype)
        if kind.kind not in "uifU":
            raise ValueError(f"unexpected type {dtype}")
        at += -at % 8
        arrays[name] = np.frombuffer(data, dtype=kind, count=count, offset=at)
        at += kind.itemsize * count
    return header, arrays


def _read_legacy(path: Path) -> _Counts:
    """The counts of a first-version file (JSON: chunk ids and each chunk's tokens)."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    return _count(payload["ids"], payload["tokens"])


# --- segments and snapshots -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Segment:
    """Immutable rows of some documents and their term columns (keys ascending, unique); also a build's input."""

    docs: tuple[str, ...]
    starts: np.ndarray  # first row of each document, then the number of rows
    ids: np.ndarray  # chunk id per row
    lengths: np.ndarray  # tokens per row
    keys: np.ndarray
    indptr: np.ndarray
    rows: np.ndarray  # ascending within a column
    tf: np.ndarray

    @property
    def size(self) -> int:
        return len(self.ids)


def _segment_path(folder: Path, docs: Iterable[str]) -> Path:
    """Where a segment of ``docs`` is saved (named by its documents: the same documents make the same segment)."""
    name = hashlib.blake2b("\n".join(sorted(docs)).encode("utf-8"), digest_size=12).hexdigest()
    return folder / _SEGMENTS / f"{name}.seg"


def _save_segment(path: Path, seg: _Segment) -> None:
    """Save a merged segment whole, arrays as they are in memory."""
    arrays = {"starts": seg.starts, "ids": seg.ids, "lengths": seg.lengths, "keys": seg.keys,
              "indptr": seg.indptr, "rows": seg.rows, "tf": seg.tf}
    _save(path, _SEGMENT_MAGIC, {"format": _FORMAT, "docs": list(seg.docs)}, arrays)


def _segment_docs(path: Path) -> tuple[str, ...]:
    """The documents of a saved segment (its header only), or () if it isn't one of this format."""
    with path.open("rb") as fh:
        head = fh.read(len(_SEGMENT_MAGIC) + 4)
        if head[:len(_SEGMENT_MAGIC)] != _SEGMENT_MAGIC:
            return ()
        header = json.loads(fh.read(int.from_bytes(head[len(_SEGMENT_MAGIC):], "little")))
    return tuple(header["docs"]) if header.get("format") == _FORMAT else ()


def _map_segment(path: Path) -> _Segment:
    """A saved segment, memory-mapped: nothing is read until a search touches it, and the pages stay shared with
    the file (the system can drop and reread them) instead of being this process's own memory."""
    with path.open("rb") as fh:
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    read_ahead(data)
    header, a = _parse(data, _SEGMENT_MAGIC)
    if header.get("format") != _FORMAT:
        raise ValueError(f"format {header.get('format')}, expected {_FORMAT}")
    seg = _Segment(tuple(header["docs"]), a["starts"], a["ids"], a["lengths"], a["keys"], a["indptr"], a["rows"],
                   a["tf"])
    if (len(seg.starts) != len(seg.docs) + 1 or int(seg.starts[-1]) != seg.size or len(seg.lengths) != seg.size
            or len(seg.indptr) != len(seg.keys) + 1 or int(seg.indptr[-1]) != len(seg.rows)
            or len(seg.rows) != len(seg.tf)):
        raise ValueError("inconsistent arrays")
    return seg


def _document(doc_id: str, counts: _Counts) -> _Segment:
    """A one-document segment, made of its file's arrays."""
    return _Segment((doc_id,), np.asarray([0, len(counts.ids)], dtype=np.int64), counts.ids,
                    counts.lengths.astype(np.float32), counts.keys, counts.indptr, counts.rows.astype(np.int32),
                    counts.tf)


def _merge(parts: Sequence[_Segment]) -> _Segment:
    """One segment with the rows of ``parts`` in order: the columns of each key, concatenated."""
    if len(parts) == 1:
        return parts[0]
    all_keys = np.concatenate([p.keys for p in parts])
    order = np.argsort(all_keys, kind="stable")  # the parts' sorted runs merge; equal keys stay in part order
    ordered = all_keys[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    column = np.empty(len(all_keys), dtype=np.int64)  # each part column's column in the result
    column[order] = np.cumsum(first) - 1
    sizes = np.concatenate([np.diff(p.indptr) for p in parts])
    indptr = np.zeros(int(first.sum()) + 1, dtype=np.int64)
    np.cumsum(np.bincount(column, weights=sizes, minlength=len(indptr) - 1).astype(np.int64), out=indptr[1:])
    fill = indptr[:-1].copy()
    rows = np.empty(int(indptr[-1]), dtype=np.int32)
    tf = np.empty(len(rows), dtype=np.result_type(*(p.tf.dtype for p in parts)))
    at = shift = 0
    for p in parts:
        cols, at = column[at:at + len(p.keys)], at + len(p.keys)
        part_sizes = np.diff(p.indptr)
        begin = fill[cols]
        fill[cols] += part_sizes  # a part has one column per key at most
        # Entry i of the part's column j goes to begin[j] + (i - indptr[j]), after the earlier parts' entries.
        dest = np.repeat(begin - p.indptr[:-1], part_sizes) + np.arange(len(p.rows))
        rows[dest] = p.rows + shift
        tf[dest] = p.tf
        shift += p.size
    starts = np.concatenate([p.starts[:-1] + offset for p, offset in
                             zip(parts, np.cumsum([0] + [p.size for p in parts[:-1]]), strict=True)])
    return _Segment(tuple(d for p in parts for d in p.docs), np.append(starts, shift).astype(np.int64),
                    np.concatenate([p.ids for p in parts]), np.concatenate([p.lengths for p in parts]),
                    ordered[first], indptr, rows, tf)


def _select(seg: _Segment, keep: Sequence[tuple[str, int, int]]) -> _Segment:
    """The rows of some of a segment's documents (``(doc, start, end)``, ascending), as a new segment."""
    if [(s, e) for _, s, e in keep] == list(zip(seg.starts[:-1].tolist(), seg.starts[1:].tolist(), strict=True)):
        return seg
    renumber = np.full(seg.size, -1, dtype=np.int64)
    starts, at = [], 0
    for _, s, e in keep:
        renumber[s:e] = np.arange(at, at + e - s)
        starts.append(at)
        at += e - s
    new_rows = renumber[seg.rows]
    kept = new_rows >= 0
    sizes = np.bincount(np.repeat(np.arange(len(seg.keys)), np.diff(seg.indptr))[kept], minlength=len(seg.keys))
    used = sizes > 0
    indptr = np.zeros(int(used.sum()) + 1, dtype=np.int64)
    np.cumsum(sizes[used], out=indptr[1:])
    picked = np.concatenate([np.arange(s, e) for _, s, e in keep]) if keep else np.zeros(0, dtype=np.int64)
    return _Segment(tuple(d for d, _, _ in keep), np.asarray([*starts, at], dtype=np.int64), seg.ids[picked],
                    seg.lengths[picked], seg.keys[used], indptr, new_rows[kept].astype(np.int32), seg.tf[kept])


Runs = tuple[np.ndarray, np.ndarray]  # starts, ends of row ranges in a segment


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """What a search reads: segments, where each indexed document's rows are, chunk count and total length."""

    segments: tuple[_Segment, ...]
    live: dict[str, tuple[_Segment, int, int]]  # doc_id -> (segment, first row, end row)
    n: int
    total: int

    @cached_property
    def docs(self) -> frozenset[str]:
        return frozenset(self.live)

    @cached_property
    def everything(self) -> dict[_Segment, Runs]:
        """Row ranges of every indexed document, per segment."""
        return _runs(self.live.values())

    @cached_property
    def removed(self) -> dict[_Segment, Runs]:
        """Row ranges no longer indexed, per segment that has some."""
        out = {}
        for seg in self.segments:
            starts, ends = self.everything.get(seg, (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
            gap_starts, gap_ends = np.append(0, ends), np.append(starts, seg.size)
            gaps = gap_starts < gap_ends
            if gaps.any():
                out[seg] = (gap_starts[gaps], gap_ends[gaps])
        return out

    @cached_property
    def live_rows(self) -> dict[_Segment, int]:
        out = dict.fromkeys(self.segments, 0)
        for seg, s, e in self.live.values():
            out[seg] += e - s
        return out

    @cached_property
    def chunk_rows(self) -> dict[str, tuple[_Segment, int]]:
        """Chunk id -> (segment, row) of every indexed chunk (built on demand: ``locate`` rarely needs it)."""
        out = {}
        for seg, s, e in self.live.values():
            out.update(zip(seg.ids[s:e].tolist(), ((seg, r) for r in range(s, e)), strict=True))
        return out

    @cached_property
    def _denominators(self) -> dict[_Segment, np.ndarray]:
        return {}

    def denominators(self, seg: _Segment) -> np.ndarray:
        """BM25's length normalisation per row of ``seg``: k1 * (1 - b + b * length / avgdl) (float32)."""
        found = self._denominators.get(seg)
        if found is None:
            found = self._denominators[seg] = K1 * (1 - B) + (K1 * B * self.n / max(self.total, 1)) * seg.lengths
        return found

    def locate(self, chunk_id: str) -> tuple[_Segment, int] | None:
        """Where an indexed chunk is; ids of the form ``<doc_id>:<row>`` are checked directly."""
        doc, _, number = chunk_id.rpartition(":")
        where = self.live.get(doc)
        if where is not None and number.isdecimal():
            seg, s, e = where
            row = s + int(number)
            if row < e and seg.ids[row] == chunk_id:
                return seg, row
        return self.chunk_rows.get(chunk_id)


def _runs(spans: Iterable[tuple[_Segment, int, int]]) -> dict[_Segment, Runs]:
    """Row ranges per segment, sorted, adjacent ones joined."""
    by_segment: dict[_Segment, list[tuple[int, int]]] = {}
    for seg, s, e in spans:
        by_segment.setdefault(seg, []).append((s, e))
    out = {}
    for seg, ranges in by_segment.items():
        ranges.sort()
        starts, ends = [ranges[0][0]], [ranges[0][1]]
        for s, e in ranges[1:]:
            if s == ends[-1]:
                ends[-1] = e
            else:
                starts.append(s)
                ends.append(e)
        out[seg] = (np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64))
    return out


def _spans(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The positions lo[i]:hi[i], concatenated."""
    sizes = hi - lo
    return np.repeat(lo - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))


class _Query:
    """A query's terms against one snapshot: their columns in each segment and their BM25 weights (idf)."""

    def __init__(self, snap: _Snapshot, terms: Sequence[str]) -> None:
        self.snap = snap
        self.skipped = 0  # terms whose columns top() didn't read whole, only looked chunks up in
        times = Counter(terms) if snap.total > 0 else Counter()
        keys = np.asarray([term_key(t) for t in times], dtype=np.uint64)
        df = np.zeros(len(keys), dtype=np.int64)
        self.columns: dict[_Segment, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # terms, column starts, ends
        for seg in snap.segments if len(keys) else ():
            pos = np.searchsorted(seg.keys, keys)
            hit = pos < len(seg.keys)
            hit[hit] = seg.keys[pos[hit]] == keys[hit]
            if not hit.any():
                continue
            terms = np.flatnonzero(hit)
            starts, ends = seg.indptr[pos[hit]], seg.indptr[pos[hit] + 1]
            df[terms] += ends - starts
            if seg in snap.removed:  # less the rows of documents no longer indexed
                gone_starts, gone_ends = snap.removed[seg]
                for term, a, b in zip(terms.tolist(), starts.tolist(), ends.tolist(), strict=True):
                    column = seg.rows[a:b]
                    df[term] -= int((np.searchsorted(column, gone_ends) - np.searchsorted(column, gone_starts)).sum())
            self.columns[seg] = (terms, starts, ends)
        # bm25s's "lucene" idf, times the term's repeats in the query (bm25s adds a repeated term's score again).
        idf = np.log1p((snap.n - df + 0.5) / (df + 0.5))
        self.df = df
        self.weights = np.where(df > 0, np.asarray(list(times.values()), dtype=np.float64) * idf, 0.0)
        self.empty = not (self.weights > 0).any()
        for seg, (terms, starts, ends) in self.columns.items():
            # Heaviest term first, always: then every chunk's score is added up in the same order, wherever it is.
            order = np.argsort(-self.weights[terms], kind="stable")
            self.columns[seg] = (terms[order], starts[order], ends[order])

    def top(self, seg: _Segment, runs: Runs, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``seg`` within ``runs`` that may be among its ``k`` best, ascending, and their scores.

        MaxScore pruning, exact: a term adds less than its weight to any chunk's score. Columns are read heaviest
        term first; once the terms left weigh less than the k-th best score so far, a chunk that none of the terms
        read matched can't reach the top k, so the terms left (frequent words, long columns) only add to the chunks
        already found, and chunks that can't reach the k-th best even with all the terms left are dropped.

        Scores are kept for the rows of ``runs`` only, side by side (a search scoped to 20 documents of a million
        chunks adds up 10,000 scores, not the million rows between its first document and its last).
        """
        if seg not in self.columns:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        terms, col_starts, col_ends = self.columns[seg]
        weights = self.weights[terms]
        starts, ends = runs
        base, end = int(starts[0]), int(ends[-1])
        whole = len(starts) == 1 and base == 0 and end == seg.size
        single = len(starts) == 1
        offsets = np.cumsum(ends - starts) - (ends - starts)  # where each run's rows begin among the scores

        def place(rows: np.ndarray) -> np.ndarray:  # rows (within the runs) -> their places among the scores
            if single:
                return rows - base if base else rows
            run = np.searchsorted(starts, rows, side="right") - 1
            return offsets[run] + (rows - starts[run])

        def row_of(places: np.ndarray) -> np.ndarray:
            if single:
                return places + base
            run = np.searchsorted(offsets, places, side="right") - 1
            return starts[run] + (places - offsets[run])

        def within(a: int, b: int) -> np.ndarray:  # the positions in seg.rows of a column's rows within the runs
            column = seg.rows[a:b]
            return _spans(np.searchsorted(column, starts) + a, np.searchsorted(column, ends) + a)

        scores = np.zeros(int((ends - starts).sum()))  # a chunk's score is positive once a term matched it
        scanned, floor, done = 0, 0.0, 0.0
        while scanned < len(terms) and weights[scanned] > 0 and float(weights[scanned:].sum()) >= floor:
            a, b = int(col_starts[scanned]), int(col_ends[scanned])
            at: slice | np.ndarray = slice(a, b) if whole else within(a, b)
            rows = seg.rows[at]
            scores[place(rows)] += self._contribution(seg, float(weights[scanned]), seg.tf[at], rows)
            done += float(weights[scanned])
            scanned += 1
            if float(weights[scanned:].sum()) < done:  # else the k-th best so far can't outweigh the terms left
                hits = scores[scores > 0]
                if len(hits) >= k:
                    floor = float(np.partition(hits, len(hits) - k)[len(hits) - k])
        local = np.flatnonzero(scores > 0)
        self.skipped += int((weights[scanned:] > 0).sum())
        for i in range(scanned, len(terms)):
            # Chunks that can't reach the k-th best even with every term left at full weight are out, too.
            if i > scanned and len(local) > k:
                floor = max(floor, float(np.partition(scores[local], len(local) - k)[len(local) - k]))
            cut = floor - float(weights[i:].sum()) - 1e-9 * max(1.0, floor)
            if cut > 0:
                local = local[scores[local] > cut]
            weight, a, b = float(weights[i]), int(col_starts[i]), int(col_ends[i])
            if weight <= 0 or not len(local):
                break
            column = seg.rows[a:b]
            lo, hi = np.searchsorted(column, [base, end]).tolist()
            if len(local) * 16 < hi - lo:  # few chunks left: look each up in the column
                rows = row_of(local)
                pos = np.minimum(np.searchsorted(column, rows), b - a - 1)
                hit = column[pos] == rows
                scores[local[hit]] += self._contribution(seg, weight, seg.tf[a + pos[hit]], rows[hit])
            else:  # many: add the term to every chunk of the runs (the others are out already, and stay out)
                at = slice(a + lo, a + hi) if single else within(a, b)
                rows = seg.rows[at]
                scores[place(rows)] += self._contribution(seg, weight, seg.tf[at], rows)
        return row_of(local), scores[local]

    def at(self, seg: _Segment, rows: np.ndarray) -> np.ndarray:
        """The scores of some rows of ``seg``."""
        scores = np.zeros(len(rows))
        terms, col_starts, col_ends = self.columns.get(seg, (np.zeros(0, dtype=np.int64),) * 3)
        for term, a, b in zip(terms.tolist(), col_starts.tolist(), col_ends.tolist(), strict=True):
            weight = float(self.weights[term])
            if weight > 0:
                column = seg.rows[a:b]
                pos = np.minimum(np.searchsorted(column, rows), b - a - 1)
                hit = column[pos] == rows
                scores[hit] += self._contribution(seg, weight, seg.tf[a + pos[hit]], rows[hit])
        return scores

    def _contribution(self, seg: _Segment, weight: float, tf: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """idf * tf / (tf + k1 * (1 - b + b * length / avgdl)), bm25s's "lucene" BM25 (in float32, as bm25s)."""
        tf = tf.astype(np.float32)
        out = np.take(self.snap.denominators(seg), rows)
        out += tf
        np.divide(tf, out, out=out)
        out *= weight
        return out


class LexicalIndex:
    """BM25 search over the chunks of ready documents, kept on disk per document and updated in place."""

    def __init__(self, folder: Path, source: Source | None = None, analyzer: Analyzer = tokenize) -> None:
        self.folder = Path(folder)
        self.source = source
        self.analyzer = analyzer  # text -> terms, for chunks and questions alike
        self._lock = threading.Lock()  # serialises changes; searches read self._snap without it
        self._snap = _Snapshot((), {}, 0, 0)
        self._explicit = False  # sync() was called: it decides the documents, not the folder
        self._synced: frozenset[str] | None = None  # the last sync's argument, while nothing else changed
        self._seen: str | None = None  # VERSION content when the folder was last listed
        self._changes = 0
        self._merger: threading.Thread | None = None
        self._asked: dict[str, list[str]] = {}  # a question's terms: searched, then its other finds scored

    # --- writing ------------------------------------------------------------------------------------------------
    def add(self, doc_id: str, chunk_ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index a document: save its tokenized chunks (atomically) and add them to the in-memory index."""
        counts = _count(chunk_ids, [self.analyzer(t) for t in texts])
        _write(self._path(doc_id), counts)
        self._path(doc_id, legacy=True).unlink(missing_ok=True)
        with self._lock:
            self._change(drop=[doc_id], add={doc_id: counts})
            self._touch()

    def remove(self, doc_id: str) -> None:
        """Forget a document: its file and its rows."""
        with self._lock:
            existed = False
            for path in (self._path(doc_id), self._path(doc_id, legacy=True)):
                if path.exists():
                    path.unlink()
                    existed = True
            if doc_id in self._snap.live:
                self._change(drop=[doc_id], add={})
                existed = True
            if existed:
                self._touch()

    def sync(self, doc_ids: Iterable[str]) -> None:
        """Make the indexed documents exactly ``doc_ids``: load new ones (from their files, else ``source``), drop
        the others from memory (their files stay). Cheap when nothing changed; from the first call on, the folder's
        content no longer decides what is indexed."""
        wanted = frozenset(doc_ids)
        if wanted == self._synced:
            return
        with self._lock:
            self._explicit = True
            if wanted != self._synced:
                self._apply(wanted)
                self._synced = wanted

    # --- searching ----------------------------------------------------------------------------------------------
    def search(self, query: str, k: int, doc_ids: Iterable[str]) -> list[tuple[str, float]]:
        """The ``k`` best (chunk_id, score) among the chunks of ``doc_ids``, best first; only positive scores."""
        snap = self._current()
        q = _Query(snap, self._question(query))
        if k <= 0 or q.empty:
            return []
        wanted = doc_ids if isinstance(doc_ids, (set, frozenset)) else set(doc_ids)
        scope = snap.everything if wanted >= snap.docs else _runs(w for d in wanted if (w := snap.live.get(d)))
        found: list[tuple[float, str, int, _Segment, int]] = []
        for seg, runs in scope.items():
            rows, scores = q.top(seg, runs, k)
            if len(rows) > k:  # the k best and any tied with the k-th, so that ties resolve the same everywhere
                keep = scores >= np.partition(scores, len(scores) - k)[len(scores) - k]
                rows, scores = rows[keep], scores[keep]
            owner = np.searchsorted(seg.starts, rows, side="right") - 1
            found.extend((-score, seg.docs[d], row - int(seg.starts[d]), seg, row)
                         for score, d, row in zip(scores.tolist(), owner.tolist(), rows.tolist(), strict=True))
        found.sort(key=lambda f: f[:3])  # best first; ties by document, then chunk order
        return [(str(seg.ids[row]), -score) for score, _, _, seg, row in found[:k]]

    def scores(self, query: str, chunk_ids: Iterable[str]) -> dict[str, float]:
        """The BM25 score of each of ``chunk_ids`` (0.0 for chunks that don't match or aren't indexed)."""
        snap = self._current()
        out = dict.fromkeys(chunk_ids, 0.0)
        q = _Query(snap, self._question(query))
        if q.empty:
            return out
        by_segment: dict[_Segment, list[tuple[int, str]]] = {}
        for cid in out:
            where = snap.locate(cid)
            if where is not None:
                by_segment.setdefault(where[0], []).append((where[1], cid))
        for seg, wanted in by_segment.items():
            wanted.sort()
            rows = np.asarray([r for r, _ in wanted], dtype=np.int64)
            for (_, cid), score in zip(wanted, q.at(seg, rows).tolist(), strict=True):
                out[cid] = score
        return out

    def _question(self, query: str) -> list[str]:
        """A question's terms, analysed once for the search and the scoring of the other retriever's finds."""
        terms = self._asked.get(query)
        if terms is None:
            terms = self.analyzer(query)
            if len(self._asked) >= 64:
                self._asked.clear()
            self._asked[query] = terms
        return terms

    def _current(self) -> _Snapshot:
        """The snapshot to search; without sync, first catch up with files added or removed by any process."""
        if not self._explicit:
            stamp = self._stamp()
            if stamp != self._seen:
                with self._lock:
                    stamp = self._stamp()
                    if not self._explicit and stamp != self._seen:
                        self._apply(self._files())
                        self._seen = stamp
        return self._snap

    # --- internals: changes (under self._lock) -----------------------------------------------------------------
    def _apply(self, wanted: Iterable[str]) -> None:
        """Load the wanted documents not in memory (into one segment), drop the others."""
        wanted = set(wanted)
        live = self._snap.live
        missing = wanted.difference(live)
        mapped = self._saved_segments(missing) if missing else []
        for seg in mapped:
            missing.difference_update(seg.docs)
        loaded = {}
        for doc_id in sorted(missing):
            counts = self._load(doc_id)
            if counts is not None:
                loaded[doc_id] = counts
        dropped = [d for d in live if d not in wanted]
        if loaded or dropped or mapped:
            self._change(drop=dropped, add=loaded, mapped={seg: wanted for seg in mapped})

    def _change(self, drop: Iterable[str], add: dict[str, _Counts],
                mapped: dict[_Segment, set[str]] | None = None) -> None:
        """The next snapshot: without the rows of ``drop``, with a new segment for ``add``, and with saved segments
        whose documents given beside them are indexed (their other rows as if removed)."""
        snap = self._snap
        live = dict(snap.live)
        n, total = snap.n, snap.total
        for doc_id in {*drop, *add}:
            if doc_id in live:
                seg, s, e = live.pop(doc_id)
                n, total = n - (e - s), total - int(seg.lengths[s:e].sum(dtype=np.float64))
        segments = snap.segments
        added = [(_merge([_document(doc_id, counts) for doc_id, counts in add.items()]), set(add))] if add else []
        for seg, docs in [*added, *(mapped or {}).items()]:
            segments = (*segments, seg)
            bounds = seg.starts.tolist()
            for i, d in enumerate(seg.docs):
                if d in docs and d not in live:
                    live[d] = (seg, bounds[i], bounds[i + 1])
                    n, total = n + bounds[i + 1] - bounds[i], total + int(
                        seg.lengths[bounds[i]:bounds[i + 1]].sum(dtype=np.float64))
        self._snap = _Snapshot(segments, live, n, total)
        self._synced = None
        if added and added[0][0].size >= _SAVE_ROWS:
            threading.Thread(target=self._save_segment, args=(added[0][0],), name="lexical-save", daemon=True).start()
        self._schedule_merge()

    # --- internals: saved segments ------------------------------------------------------------------------------
    def _saved_segments(self, missing: set[str]) -> list[_Segment]:
        """Saved segments that hold most of their documents among ``missing`` (largest first, none sharing a
        document), memory-mapped; the rest is loaded from the documents' files."""
        try:
            paths = list((self.folder / _SEGMENTS).glob("*.seg"))
        except OSError:
            return []
        found = []
        for path in paths:
            try:
                docs = _segment_docs(path)
            except (*_READ_ERRORS, json.JSONDecodeError) as exc:
                log.warning("Skipping unreadable lexical index segment %s (%s)", path, exc)
                continue
            useful = missing.intersection(docs)
            if len(useful) * 2 > len(docs):
                found.append((len(useful), path, set(docs)))
        out, taken = [], set()
        for _, path, docs in sorted(found, key=lambda f: -f[0]):
            if docs.isdisjoint(taken):
                try:
                    out.append(_map_segment(path))
                except _READ_ERRORS as exc:
                    log.warning("Skipping unreadable lexical index segment %s (%s)", path, exc)
                    continue
                taken |= docs
        return out

    def _save_segment(self, seg: _Segment) -> None:
        """Save a large segment (from a background thread), then delete saved segments it makes useless: those
        whose indexed documents it all holds."""
        path = _segment_path(self.folder, seg.docs)
        try:
            if not path.exists():
                _save_segment(path, seg)
            covered = set(seg.docs)
            live = self._snap.live
            for other in path.parent.glob("*.seg"):
                if other != path and all(d in covered or d not in live for d in _segment_docs(other)):
                    other.unlink(missing_ok=True)  # a process that maps it keeps its pages
        except (*_READ_ERRORS, json.JSONDecodeError) as exc:
            log.warning("Can't save lexical index segment %s (%s)", path, exc)

    def _load(self, doc_id: str) -> _Counts | None:
        """A document's counts from its file, else made from ``source`` and saved.

        Files of earlier versions (``.bm25`` of format 1, ``.json`` token lists) hold terms of the English-only
        analysis: they are analysed again from ``source`` (the chunks' text, not their vectors) and replaced; with
        no source they are used as they are (converted to a ``.bm25`` file of their format).
        """
        path, legacy = self._path(doc_id), self._path(doc_id, legacy=True)
        old: _Counts | None = None
        try:
            return _read(path)
        except FileNotFoundError:
            pass
        except _Outdated:
            old = self._read_outdated(path, lambda: _read(path, outdated=True))
        except _READ_ERRORS as exc:
            log.warning("Unreadable lexical index file %s (%s); rebuilding it", path, exc)
        if old is None and legacy.exists():
            old = self._read_outdated(legacy, lambda: _read_legacy(legacy))
        counts = self._from_source(doc_id) if self.source is not None else None
        version = _FORMAT
        if counts is None:
            if old is None:
                return None
            counts, version = old, _ENGLISH_ONLY
        elif old is not None:
            log.info("Lexical index of %s analysed again per script and language", doc_id)
        try:
            _write(path, counts, version)
            legacy.unlink(missing_ok=True)  # converted
        except OSError as exc:
            log.warning("Can't save lexical index file %s (%s)", path, exc)
        return counts

    def _from_source(self, doc_id: str) -> _Counts | None:
        """A document's counts made from its chunks' text as ``source`` gives it (None if it can't)."""
        try:
            chunk_ids, texts = self.source(doc_id)  # type: ignore[misc]
        except Exception:  # lexical search is a boost: a failing source must not stop searches
            log.warning("Can't read the chunks of %s for lexical search", doc_id, exc_info=True)
            return None
        return _count(chunk_ids, [self.analyzer(t) for t in texts])

    @staticmethod
    def _read_outdated(path: Path, read: Callable[[], _Counts]) -> _Counts | None:
        try:
            return read()
        except _READ_ERRORS as exc:
            log.warning("Skipping unreadable lexical index file %s (%s)", path, exc)
            return None

    def _files(self) -> set[str]:
        """Ids of the documents with a file in the folder."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return set()
        return {name.rsplit(".", 1)[0] for name in names if name.endswith((".bm25", ".json"))}

    def _path(self, doc_id: str, legacy: bool = False) -> Path:
        return self.folder / f"{doc_id}.{'json' if legacy else 'bm25'}"

    def _stamp(self) -> str:
        try:
            return (self.folder / "VERSION").read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def _touch(self) -> None:
        """Tell other processes (and this one's next search) that documents changed."""
        self._changes += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "VERSION").write_text(f"{os.getpid()}-{time.time_ns()}-{self._changes}", encoding="utf-8")

    # --- internals: merges ------------------------------------------------------------------------------------
    def _schedule_merge(self) -> None:
        if self._merger is None and self._merge_plan() is not None:
            self._merger = threading.Thread(target=self._merge_loop, name="lexical-merge", daemon=True)
            self._merger.start()

    def _merge_plan(self) -> list[_Segment] | None:
        """Segments to merge next: one that is mostly removed rows, or a size tier that has filled up."""
        snap = self._snap
        tiers: dict[int, list[_Segment]] = {}
        for seg in snap.segments:
            live = snap.live_rows[seg]
            if live * 2 < seg.size:
                return [seg]
            tier = int(math.log(max(live, _MERGE_FLOOR) / _MERGE_FLOOR, _MERGE_FACTOR))
            tiers.setdefault(tier, []).append(seg)
        return next((segs for _, segs in sorted(tiers.items()) if len(segs) >= _MERGE_FACTOR), None)

    def _merge_loop(self) -> None:
        """Merge until no plan is left (in a background thread: searches and changes go on meanwhile)."""
        try:
            while True:
                with self._lock:
                    plan = self._merge_plan()
                    if plan is None:
                        self._merger = None
                        return
                    keep: dict[_Segment, list[tuple[str, int, int]]] = {seg: [] for seg in plan}
                    for doc_id, (seg, s, e) in self._snap.live.items():
                        if seg in keep:
                            keep[seg].append((doc_id, s, e))
                parts = [_select(seg, sorted(docs, key=lambda d: d[1])) for seg, docs in keep.items() if docs]
                merged = _merge(parts) if parts else None
                if merged is not None and merged.size >= _SAVE_ROWS:
                    self._save_segment(merged)
                with self._lock:
                    self._replace(set(plan), merged)
        except BaseException:
            with self._lock:
                self._merger = None
            log.exception("Merging lexical index segments failed")
            raise

    def _replace(self, planned: set[_Segment], merged: _Segment | None) -> None:
        """Swap merged segments for their merge; documents removed or re-added meanwhile stay as they are now."""
        snap = self._snap
        segments = tuple(s for s in snap.segments if s not in planned)
        live = dict(snap.live)
        if merged is not None:
            segments = (*segments, merged)
            bounds = merged.starts.tolist()
            for i, d in enumerate(merged.docs):
                where = live.get(d)
                if where is not None and where[0] in planned:
                    live[d] = (merged, bounds[i], bounds[i + 1])
        self._snap = _Snapshot(segments, live, snap.n, snap.total)

    def _wait_for_merges(self, timeout: float = 60.0) -> None:
        """Block until background merges are done (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while (merger := self._merger) is not None and time.monotonic() < deadline:
            merger.join(timeout=0.05)
