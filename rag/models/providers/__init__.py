"""The providers: one module per protocol, one per in-process model, none importing another.

- ``ollama``: embeddings, streamed chat and Qwen3-Reranker (by log-probabilities) from an Ollama server;
- ``openai``: embeddings and streamed chat from an OpenAI-compatible server (vLLM, llama.cpp, LM Studio, DashScope);
- ``rerank_service``: a ``/rerank`` service (Jina/Cohere shape, TEI);
- ``local_embedder``, ``local_chat``, ``local_reranker``: sentence-transformers / transformers in this process.

Below them, shared by some: ``http`` (one remote service: key, retries, error messages), ``local_runtime``
(device and number format) and ``lean_qwen3`` (the reranker's lean forward pass).

May import: the interfaces in rag.models (never the factory), rag.text, rag.core.
"""
