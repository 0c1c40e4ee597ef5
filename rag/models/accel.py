"""ZeroGPU (Hugging Face Spaces): in-process model calls run inside ``spaces.GPU`` when that package is there.

On ZeroGPU hardware a GPU is lent per call to a function decorated with ``spaces.GPU``. The call runs in a forked
worker process and its arguments are pickled, so a model object can't be passed along: ``gpu_call(owner,
"method", *args)`` sends the owner's key and plain arguments (texts, token ids), and the worker finds the owner,
with its loaded model (inherited through the fork), in a registry. Results must be plain values too.

Without the ``spaces`` package (anywhere but a Space) these are plain method calls, and on a Space without
ZeroGPU ``spaces.GPU`` itself hands the function back unchanged.
"""

from __future__ import annotations

import functools
import logging
import weakref
from typing import Any, Callable, Generator, Iterator

log = logging.getLogger(__name__)

_OWNERS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


@functools.cache
def spaces_module() -> Any | None:
    """The ``spaces`` package, or None where it isn't installed."""
    try:
        import spaces
    except ImportError:
        return None
    return spaces


def init() -> bool:
    """Import ``spaces`` early and register the GPU entry points; True when the package is there.

    Call it before anything touches CUDA (ZeroGPU refuses to start otherwise) and before the app launches (ZeroGPU
    looks for decorated functions then).
    """
    spaces = spaces_module()
    if spaces is None:
        return False
    _entry_points(spaces)
    log.info("Hugging Face 'spaces' package found: in-process model calls go through spaces.GPU")
    return True


def reset() -> None:
    """Forget what was found and decorated (for tests that swap the ``spaces`` module)."""
    spaces_module.cache_clear()
    _entry_points.cache_clear()


def gpu_call(owner: Any, method: str, *args: Any, seconds: int = 60) -> Any:
    """``owner.method(*args)``, on a lent GPU for at most ``seconds`` when ZeroGPU is there."""
    spaces = spaces_module()
    if spaces is None:
        return getattr(owner, method)(*args)
    call, _ = _entry_points(spaces)
    return call(_register(owner), method, args, seconds)


def gpu_stream(owner: Any, method: str, *args: Any, seconds: int = 60) -> Generator[Any, None, None]:
    """Iterate ``owner.method(*args)`` (a generator), on a lent GPU for at most ``seconds`` when ZeroGPU is there."""
    spaces = spaces_module()
    if spaces is None:
        return getattr(owner, method)(*args)
    _, stream = _entry_points(spaces)
    return stream(_register(owner), method, args, seconds)


def _register(owner: Any) -> int:
    key = id(owner)
    _OWNERS[key] = owner
    return key


@functools.cache
def _entry_points(spaces: Any) -> tuple[Callable[..., Any], Callable[..., Generator[Any, None, None]]]:
    """The two functions decorated with ``spaces.GPU``: one returns a value, one streams."""
    return spaces.GPU(_call, duration=_duration), spaces.GPU(_stream, duration=_duration)


def _call(key: int, method: str, args: tuple[Any, ...], seconds: int) -> Any:
    return getattr(_OWNERS[key], method)(*args)


def _stream(key: int, method: str, args: tuple[Any, ...], seconds: int) -> Iterator[Any]:
    yield from getattr(_OWNERS[key], method)(*args)


def _duration(key: int, method: str, args: tuple[Any, ...], seconds: int) -> int:
    """How long ZeroGPU should reserve the GPU for one call (spaces.GPU calls it with the call's arguments)."""
    return seconds
