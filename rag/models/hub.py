"""Model names and the Hugging Face cache: whether a name is an Ollama tag, and whether a model is on disk already."""

from __future__ import annotations

from pathlib import Path


def is_ollama_tag(name: str) -> bool:
    """Whether ``name`` is an Ollama ``model:tag`` (as ``qwen3:8b``) rather than a Hugging Face id or a folder."""
    return ":" in name and "://" not in name and not Path(name).expanduser().exists()


def hub_cached(model_id: str) -> bool:
    """Whether the model is a local folder or already in the Hugging Face cache (so loading it won't download)."""
    if Path(model_id).expanduser().exists():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(model_id, "config.json")
    except ValueError:  # not a valid repository id
        return False
    return isinstance(found, str)
