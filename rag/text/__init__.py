"""Text by language: how each writing system becomes BM25 terms (``languages``: scripts, stemmers, stop words,
CJK and Thai segmentation) and how many Qwen3 tokens a text takes (``tokencount``, per script and language).

May import: rag.core.
"""
