"""Measuring answers on a user's own questions: ``python -m rag eval QUESTIONS.jsonl``.

``questions`` reads the question file, ``metrics`` scores one answer (pages found, citations, refusals, the
reference answer, claim check) and sums them up, ``runner`` asks each question through the engine and appends its
result to a file (so an interrupted run resumes), ``report`` writes the Markdown summary and the HTML report (and sets
two runs side by side), ``drafting`` drafts questions from the library for the user to review.

May import: rag.engine and everything below it.
"""
