"""Answering: question (+ history) → standalone query → hybrid candidates → rerank → prompt → streamed answer
→ citations, as typed events. Thinking is streamed apart from the answer and never goes back to the model."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

from rag.answering.citations import resolve
from rag.answering.claims import check_claims
from rag.answering.prompts import build_messages, needs_rewrite, rewrite_messages, strip_citations
from rag.answering.support import SupportOutOfTime, support_scorer
from rag.core.config import Settings
from rag.core.errors import GenerationError, ModelError, RagError
from rag.core.events import AnswerDelta, AnswerEvent, Claims, Failure, Progress, Sources
from rag.core.records import Passage
from rag.models.budget import RerankBudget, RerankPlan
from rag.models.embedder import Embedder
from rag.search.pageimages import png_base64, render_page
from rag.search.retrieval import Fusion, hybrid_search
from rag.search.store import Store

log = logging.getLogger(__name__)

NO_DOCUMENTS = ("No documents are indexed yet. Add PDFs (drop them on the upload area, or run "
                "`python -m rag ingest FILE`) and ask again.")
NOTHING_SELECTED = "No documents are selected. Choose at least one document in the library and ask again."
NOTHING_RELEVANT = ("I couldn't find anything about this in the selected documents. Try other words, or check "
                    "that the right documents are selected.")
DEFAULT_NUM_CTX = 8192
INTERRUPTED = "The answer was interrupted"  # how a Failure after a partial answer begins
VISUAL_ANSWER_PAGES = 3  # pages shown to a vision chat model with the question (RAG_VISUAL_ANSWER)


@dataclass(frozen=True)
class AskOptions:
    """Per-question choices (the UI's settings panel); anything left None uses the engine's settings."""

    think: bool | None = None
    top_k: int | None = None
    rerank: bool | None = None
    candidate_pool: int | None = None
    chat_model: str | None = None


class Answerer:
    """Answers questions from the store with the chat model, reranking when a reranker is available."""

    visual: Any = None  # a page-image embedder (rag.models.visual.PageEmbedder) searching page images too

    def __init__(self, settings: Settings, embedder: Embedder, store: Store, chat: Any,
                 reranker: Any | None = None, budget: RerankBudget | None = None) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self.chat = chat
        self.reranker = reranker
        # The reranker's measured speed lives in the budget: the engine keeps one per reranker, for the process.
        self.budget = budget or RerankBudget.from_settings(settings)
        self._reranker_failed: str | None = None

    def ask(self, question: str, history: Sequence[dict[str, str]] = (), doc_ids: Sequence[str] | None = None,
            options: AskOptions = AskOptions()) -> Iterator[AnswerEvent]:
        """Answer ``question`` from the documents ``doc_ids`` (default: all), yielding events."""
        asked = time.perf_counter()
        s = self.settings
        think = s.think if options.think is None else options.think
        top_k = options.top_k or s.top_k
        pool = options.candidate_pool or s.candidate_pool
        use_rerank = (s.rerank if options.rerank is None else options.rerank) and self.reranker is not None

        ready = self.store.ready_ids()
        if not ready:
            yield from _notice(NO_DOCUMENTS)
            return
        ready_set = set(ready)
        scope = [d for d in (ready if doc_ids is None else doc_ids) if d in ready_set]
        if not scope:
            yield from _notice(NOTHING_SELECTED)
            return
        history = _window(history, s.history_turns)

        try:
            query = question
            if needs_rewrite(question, history):
                yield Progress("rewriting")
                query = self._rewrite(question, history) or question
                yield Progress("rewritten", query)
            yield Progress("retrieving", query)
            # Without the reranker only the first top_k are used: read a few more, as chunks of a page merge.
            candidates = hybrid_search(self.store, self.embedder, query, scope, pool, Fusion.from_settings(s),
                                       keep=None if use_rerank else 2 * top_k, visual=self.visual)
            # As many of the best candidates as the reranker's time budget allows (twice what the answer uses,
            # when they fit), said before it starts, as it may take seconds.
            plan = self._plan(query, candidates, top_k) if use_rerank and candidates else None
            if plan is not None:
                yield Progress("reranking", plan.detail)
                passages = self._rerank(query, candidates, plan, top_k)
            else:
                passages = candidates[:top_k]
        except ModelError as exc:
            yield Failure(str(exc))
            return
        if not passages:
            yield from _notice(NOTHING_RELEVANT, query=query)
            return

        num_ctx = min(s.chat_num_ctx or DEFAULT_NUM_CTX, self._context_length())
        budget = num_ctx - s.max_answer_tokens - 64
        messages, sent = build_messages(question, passages, history, budget, self.chat.count_tokens)
        if s.visual_answer:
            messages = self._with_page_images(messages, sent)
        if len(sent) < len(passages):
            log.info("Dropped %d lowest-ranked passages to fit %d tokens", len(passages) - len(sent), num_ctx)

        yield Progress("generating", f"{len(sent)} passages")
        answer: list[str] = []
        failure: str | None = None
        try:
            for delta in self.chat.stream(messages, think=think, num_ctx=num_ctx, max_tokens=s.max_answer_tokens):
                if isinstance(delta, AnswerDelta):
                    answer.append(delta.text)
                yield delta
        except GenerationError as exc:  # what was streamed stays, marked as cut short
            reason = str(exc).rstrip()
            reason += "" if reason.endswith((".", "!", "?")) else "."
            failure = f"{INTERRUPTED}: {reason} The answer above is incomplete; ask again once that is fixed."
        except ModelError as exc:
            failure = str(exc)
        cited, other, dropped = resolve("".join(answer), sent)
        if dropped:
            log.info("Dropped %d citation(s) to sources that don't exist", dropped)
        yield Sources(cited, other + passages[len(sent):], dropped, query)
        text = "".join(answer)
        if s.claim_check and text.strip() and not failure:  # a cut-short answer's last statement is cut too
            yield self._check(text, sent, question, time.perf_counter() - asked)
        if failure:
            yield Failure(failure)

    # --- steps --------------------------------------------------------------------------------------------------
    def _check(self, text: str, sent: Sequence[Passage], question: str, elapsed: float) -> Claims:
        """The claim check of an answer that took ``elapsed`` seconds so far: statements without figures judged by
        the reranker where RAG_CLAIM_CHECK_RERANKER lets it, else (and whenever the reranker fails) by their
        words."""
        started = time.perf_counter()
        reranker = self.reranker if self._reranker_failed is None else None
        judge = "words"
        try:
            scorer = support_scorer(self.settings.claim_check_reranker, reranker, self.budget, text, sent, question,
                                    elapsed)
            claims = check_claims(text, sent, scorer, question=question)
            if scorer is not None and scorer.calls:
                judge = f"the reranker ({scorer.calls} calls, {scorer.spent:.2f} s)"
        except SupportOutOfTime as exc:
            log.info("Claim check by words: %s", exc)
            claims = check_claims(text, sent, question=question)
        except (RagError, RuntimeError, OSError, ValueError) as exc:  # the answer stands; the words judge
            log.warning("The reranker could not judge the answer's statements, judged by their words instead: %s",
                        exc)
            claims = check_claims(text, sent, question=question)
        claims = replace(claims, seconds=time.perf_counter() - started)
        log.info("Checked %d statements in %.1f ms (%.1f%% of the answer's %.1f s; words without figures judged by "
                 "%s): %d re-pointed, %d unsupported", len(claims.claims), claims.seconds * 1000,
                 100 * claims.seconds / max(elapsed, 1e-9), elapsed, judge, claims.repointed, claims.unsupported)
        return claims

    def _with_page_images(self, messages: list[dict[str, Any]], sent: Sequence[Passage]) -> list[dict[str, Any]]:
        """The messages with the pages of the first ``VISUAL_ANSWER_PAGES`` sources attached to the question as
        images (RAG_VISUAL_ANSWER), as the chat protocol carries them: Ollama's ``images`` (base64 PNG), or
        ``image_url`` parts of an OpenAI-compatible message. A page that can't be rendered is left out."""
        backend = self.settings.chat_backend
        if backend not in ("ollama", "openai"):
            log.info("RAG_VISUAL_ANSWER: the %s chat backend takes no images; the question goes without", backend)
            return messages
        pages = list(dict.fromkeys((p.doc_id, p.page_start) for p in sent))[:VISUAL_ANSWER_PAGES]
        images = []
        for doc_id, page in pages:
            try:
                images.append(png_base64(render_page(self.store.file_path(doc_id), page,
                                                     self.settings.visual_max_pixels)))
            except (OSError, RagError, ValueError) as exc:
                log.warning("Page %d of %s could not be rendered for the chat model: %s", page, doc_id, exc)
        if not images:
            return messages
        last = dict(messages[-1])
        if backend == "ollama":
            last["images"] = images
        else:
            last["content"] = [{"type": "text", "text": last["content"]}] + [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}} for image in images]
        return [*messages[:-1], last]

    def _rewrite(self, question: str, history: Sequence[dict[str, str]]) -> str:
        text = self.chat.complete(rewrite_messages(question, history), max_tokens=96)
        text = text.strip().strip('"').splitlines()[0].strip() if text.strip() else ""
        return text[:500]

    def _plan(self, query: str, candidates: list[Passage], top_k: int) -> RerankPlan | None:
        try:
            return self.budget.plan(self.reranker, query, [p.text for p in candidates], breadth=2 * top_k)
        except (RuntimeError, OSError, ValueError) as exc:  # the reranker can't load (its tokenizer counts)
            self._unavailable(exc)
            return None

    def _rerank(self, query: str, candidates: list[Passage], plan: RerankPlan, top_k: int) -> list[Passage]:
        s = self.settings
        try:
            scores = self.budget.score(self.reranker, query, plan)
        except (RuntimeError, OSError, ValueError, ModelError) as exc:  # no weights offline, server down, ...
            self._unavailable(exc)
            return candidates[:top_k]
        # Only scored passages can be kept (with their full text); those the budget left out are dropped.
        ranked = sorted((replace(p, score=float(sc)) for p, sc in zip(candidates[:len(scores)], scores, strict=True)),
                        key=lambda p: -p.score)
        if not ranked or ranked[0].score < s.min_relevance:
            return []
        keep = [p for p in ranked if p.score >= s.rerank_threshold][:top_k]
        return keep if len(keep) >= s.min_k else ranked[:max(s.min_k, len(keep))][:top_k]

    def _unavailable(self, exc: Exception) -> None:
        if self._reranker_failed is None:
            log.warning("Reranker unavailable, answering without it: %s", exc)
        self._reranker_failed = str(exc)

    def _context_length(self) -> int:
        try:
            return int(self.chat.context_length())
        except ModelError:
            return DEFAULT_NUM_CTX


def _notice(message: str, query: str = "") -> Iterator[AnswerEvent]:
    yield AnswerDelta(message)
    yield Sources([], [], 0, query)


def _window(history: Sequence[dict[str, Any]], turns: int) -> list[dict[str, str]]:
    """The last ``turns`` user/assistant messages as plain text; reasoning blocks and citations left out."""
    clean = []
    for m in history:
        if m.get("role") not in ("user", "assistant") or (m.get("metadata") or {}).get("title"):
            continue  # a collapsible reasoning block, not part of the conversation
        content = _THINK.sub("", flatten(m.get("content", "")))
        if content.strip():
            clean.append({"role": m["role"], "content": strip_citations(content) if m["role"] == "assistant"
                          else content})
    return clean[-turns:] if turns else []


_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


def flatten(content: Any) -> str:
    """Message content as text (Gradio sends a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(flatten(c) for c in content)
    return "" if content is None else str(content)
