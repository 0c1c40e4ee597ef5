"""The three models: embedder, chat model and reranker, wherever they run.

Bottom to top, and imports only go down:

- the interfaces, one per kind: ``embedder`` (``Embedder``, the Qwen3-Embedding query format), ``chat``
  (``ChatModel``, the ``<think>`` splitter), ``reranker`` (``Reranker``, the Qwen3-Reranker prompt); with
  ``budget`` (how much a question may send the reranker), ``hub`` (model names, the Hugging Face cache) and
  ``accel`` (ZeroGPU);
- ``providers``: one module per protocol (Ollama, OpenAI-compatible, ``/rerank``) and one per in-process model;
- ``factory``: settings → the provider each kind uses;
- ``backends``: where the models run (Ollama, in-process, a server) and why, for the status badge.

May import: rag.text, rag.core.
"""
