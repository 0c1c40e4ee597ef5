#!/bin/sh
# Start Ollama inside the container, make sure the two models are there, then run the app.
# Every setting comes from the environment (RAG_*, OLLAMA_HOST); see `python -m rag settings`.
set -eu

# Check the settings first (a missing RAG_AUTH fails here in a second, not after pulling gigabytes), and read the
# two Ollama models they name.
models=$(python -c "from rag.core.config import Settings; s = Settings.from_env(); print(s.embed_model, s.chat_model)")

# Ollama listens where OLLAMA_HOST says: 127.0.0.1 by default, so only the app reaches it.
ollama serve &
ollama_pid=$!
echo "Waiting for Ollama at ${OLLAMA_HOST:-127.0.0.1:11434} ..."
tries=0
until ollama list >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 120 ] || ! kill -0 "$ollama_pid" 2>/dev/null; then
        echo "Ollama did not start: see its output above." >&2
        exit 1
    fi
    sleep 1
done

for model in $models; do
    if ! ollama show "$model" >/dev/null 2>&1; then
        echo "Pulling $model (first start only; it is kept in ${OLLAMA_MODELS:-~/.ollama/models}) ..."
        ollama pull "$model"
    fi
done

exec python app.py
