"""The data folder (RAG_DATA_DIR): checked writable at start, and failed writes explained in words a user can act on.

A read-only folder or a full disk otherwise surfaces deep inside Chroma as "attempt to write a readonly database"
or "database or disk is full", at start or half-way through an ingest.
"""

from __future__ import annotations

import errno
import mmap
import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable

from rag.core.errors import StoreError

_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


def process_tag() -> str:
    """``host:pid`` of this process, stamped on the work it claims in the data folder (an ingest, a queued job)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def has_ended(tag: str) -> bool:
    """True when ``tag`` (a :func:`process_tag`) names a process on this machine that no longer runs; False for this
    process, a process on another machine (its own restart takes its work up again) and a tag that names none."""
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and write a small file in it; raise a StoreError saying what to do if that fails."""
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise StoreError(f"Can't use the data folder: {storage_problem(folder, exc)}") from exc
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass  # nothing was written, or the folder went read-only meanwhile: nothing to clean up


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Make ``path`` by ``write``-ing a temporary file beside it and renaming that, so no reader, in this process or
    another, ever sees half a file; on failure (a full disk) the partial copy is removed and the error goes on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def is_fatal(exc: BaseException) -> bool:
    """True when a failed write means every later write fails too (a full disk, a read-only folder)."""
    return _kind(exc) != "other"


def storage_problem(folder: Path, exc: BaseException) -> str:
    """What a failed write under ``folder`` means, and what to do about it."""
    kind = _kind(exc)
    if kind == "full":
        return (f"the disk holding {folder} (RAG_DATA_DIR) is full. Free some space there, or set RAG_DATA_DIR to "
                "a folder on a disk with room.")
    if kind == "denied":
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else "read-only"
        return (f"{folder} (RAG_DATA_DIR) can't be written ({reason}). Make it writable, or set RAG_DATA_DIR to a "
                "folder you can write to.")
    return f"the index in {folder} (RAG_DATA_DIR) could not be written ({exc})."


def write_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a failed write to the index can raise: ours, the OS's, and Chroma's own (its core reports a full
    disk or a read-only database as a ``ChromaError``)."""
    from chromadb.errors import ChromaError

    return (StoreError, ChromaError, OSError, ValueError, RuntimeError)


def _kind(exc: BaseException) -> str:
    code = exc.errno if isinstance(exc, OSError) else None
    text = str(exc).lower()
    if code in _FULL or "disk is full" in text or "no space left" in text:
        return "full"
    if code in _DENIED or "readonly database" in text or "read-only file system" in text:
        return "denied"
    return "other"


def read_ahead(mapped: Any) -> None:
    """Ask the system to read a memory-mapped file (an ``mmap.mmap``; None is ignored) into its cache in the
    background, so that the first reads of it don't wait on the disk. A hint: where the system has no such call,
    or refuses it, nothing happens."""
    if mapped is not None and hasattr(mmap, "MADV_WILLNEED"):
        try:
            mapped.madvise(mmap.MADV_WILLNEED)
        except (OSError, ValueError):
            pass
