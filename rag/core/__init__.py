"""What every package shares: ``Settings`` (``config``, the only reader of the environment), the errors users can
act on (``errors``), the typed events the engine yields (``events``), the records that flow through the pipeline
(``records``: Page, Chunk, Passage, Citation…) and the data folder's safe writes (``datadir``).

Imports nothing else of rag: every other package may import it.
"""
