"""Settings come from environment variables; bad values fail at start naming the variable."""

from pathlib import Path

import pytest

from rag.core.config import Settings, describe, env_name
from rag.core.errors import ConfigError


def test_defaults_work_on_a_laptop() -> None:
    s = Settings.from_env({})
    assert s.ollama_host == "http://127.0.0.1:11434"
    assert s.embed_model == "qwen3-embedding:0.6b"
    assert s.rerank_model == "Qwen/Qwen3-Reranker-0.6B"
    assert s.embed_dimensions is None and s.chroma_host is None
    assert s.data_dir == Path("data")


def test_values_are_read_from_the_environment() -> None:
    s = Settings.from_env({"OLLAMA_HOST": "http://gpu-box:11434", "RAG_EMBED_DIMENSIONS": "512",
                           "RAG_CHUNK_TOKENS": "256", "RAG_RERANK": "off", "RAG_DATA_DIR": "/tmp/x",
                           "RAG_CHROMA_HOST": "chroma.local", "RAG_MAX_UPLOAD_MB": "5"})
    assert s.ollama_host == "http://gpu-box:11434"
    assert s.embed_dimensions == 512 and s.chunk_tokens == 256 and s.rerank is False
    assert s.data_dir == Path("/tmp/x") and s.chroma_host == "chroma.local"
    assert s.max_upload_bytes == 5 * 1024 * 1024


def test_empty_values_mean_default() -> None:
    assert Settings.from_env({"RAG_EMBED_DIMENSIONS": "", "RAG_CHUNK_TOKENS": " "}).chunk_tokens == 400


@pytest.mark.parametrize(("env", "var"), [
    ({"RAG_CHUNK_TOKENS": "many"}, "RAG_CHUNK_TOKENS"),
    ({"RAG_CHUNK_TOKENS": "4"}, "RAG_CHUNK_TOKENS"),
    ({"RAG_EMBED_BATCH_SIZE": "0"}, "RAG_EMBED_BATCH_SIZE"),
    ({"RAG_RERANK": "maybe"}, "RAG_RERANK"),
    ({"RAG_EMBED_BACKEND": "tensorflow"}, "RAG_EMBED_BACKEND"),
    ({"RAG_CHROMA_PORT": "70000"}, "RAG_CHROMA_PORT"),
    ({"RAG_CHUNK_TOKENS": "100", "RAG_CHUNK_OVERLAP": "100"}, "RAG_CHUNK_OVERLAP"),
])
def test_invalid_values_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env(env)


def test_every_setting_is_documented() -> None:
    rows = describe()
    assert len(rows) >= 20
    assert all(doc for _, _, doc in rows)
    assert env_name("ollama_host") == "OLLAMA_HOST" and env_name("chat_model") == "RAG_CHAT_MODEL"


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="colour"):
        Settings.from_env({}, colour="blue")
