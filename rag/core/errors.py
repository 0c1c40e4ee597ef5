"""The engine's exceptions. Each message says what happened and what the user can do about it."""

from __future__ import annotations


class RagError(Exception):
    """Base of every error the engine raises on purpose; ``str(err)`` is a message for the user."""


class ConfigError(RagError):
    """A setting has an invalid value; the message names the environment variable."""


# --- documents --------------------------------------------------------------------------------------------------
class DocumentError(RagError):
    """A file could not be turned into pages of text."""

    reason = "unreadable"


class EmptyFileError(DocumentError):
    """The file has zero bytes."""

    reason = "empty"


class NotAPdfError(DocumentError):
    """The bytes are not a PDF, whatever the file name says."""

    reason = "not a pdf"


class PasswordRequiredError(DocumentError):
    """The PDF is encrypted with a password we don't have."""

    reason = "password required"


class CorruptPdfError(DocumentError):
    """The PDF is damaged or malformed beyond repair."""

    reason = "corrupt"


class NoTextError(DocumentError):
    """No page has a text layer (a scanned or image-only document)."""

    reason = "no text layer"


class TooLargeError(DocumentError):
    """The file exceeds the size or page limit."""

    reason = "too large"


# --- models -----------------------------------------------------------------------------------------------------
class ModelError(RagError):
    """A model backend failed in a way the user must fix (server down, model missing, wrong kind of model)."""


class BackendUnavailable(ModelError):
    """The model server can't be reached."""


class ModelNotFound(ModelError):
    """The model isn't installed on the server / can't be loaded."""


class WrongModelKind(ModelError):
    """The model exists but can't do what it's asked (e.g. a chat model used for embeddings)."""


class GenerationError(ModelError):
    """The chat model failed while answering (e.g. Ollama sent an error mid-stream); text so far is kept."""


class MissingDependency(RagError):
    """An optional package is needed for this feature; the message names the pip command."""


# --- storage ----------------------------------------------------------------------------------------------------
class StoreError(RagError):
    """The index can't be read or written (data dir not writable, Chroma server unreachable, ...)."""


class DocumentNotFound(RagError):
    """No indexed document matches the given name or id."""


class ChatNotFound(RagError):
    """No saved conversation of this user matches the given id."""


# --- access -----------------------------------------------------------------------------------------------------
class AccessDenied(RagError):
    """The user may see this document or collection but not change it (or has reached a quota)."""


class CollectionNotFound(RagError):
    """No collection this user can see matches the given name or id."""

class EmbeddingSizeChanged(ModelError):
    """The embedding model returns vectors of another size than the index holds (a re-index is the remedy)."""
