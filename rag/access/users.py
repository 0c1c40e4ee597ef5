"""Logins kept in a users file (``RAG_USERS_FILE``): one ``name:argon2-hash`` a line, never a plain password.

``python -m rag users add NAME`` writes a line (asking for the password); the app checks a login against the file
each time, so a new or changed user works without a restart. Passwords are hashed with argon2id
(``argon2-cffi``'s ``PasswordHasher``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from rag.core.datadir import atomic_write
from rag.core.errors import ConfigError

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # a login name: no ':' (the separator), no spaces


def check_name(name: str) -> str:
    """``name`` if it can be a login (letters, digits, ``. _ @ -``; at most 64), else a ConfigError saying so."""
    if not NAME.match(name or ""):
        raise ConfigError(f"'{name}' can't be a login name: use letters, digits and . _ @ - (at most 64, no spaces "
                          "or ':').")
    return name


def read(path: Path) -> dict[str, str]:
    """The users file as {name: hash}; a missing file is empty; malformed lines are skipped (and logged)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"Can't read the users file {path} (RAG_USERS_FILE): {exc}") from exc
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not NAME.match(name) or not hashed.startswith("$argon2"):
            log.warning("%s line %d is not name:argon2-hash; skipped", path, number)
            continue
        users[name] = hashed
    return users


def add(path: Path, name: str, password: str) -> bool:
    """Add ``name`` with ``password`` (hashed) to the users file, or change its password; True if it was new."""
    from argon2 import PasswordHasher

    check_name(name)
    if not password:
        raise ConfigError("The password is empty: choose one.")
    users = read(path)
    new = name not in users
    users[name] = PasswordHasher().hash(password)
    lines = "".join(f"{n}:{h}\n" for n, h in users.items())

    def write(tmp: Path) -> None:
        tmp.write_text(lines, encoding="utf-8")
        os.chmod(tmp, 0o600)  # hashes only, but nobody else needs to read them

    atomic_write(path, write)
    return new


def verify(path: Path, name: str, password: str) -> bool:
    """Whether ``password`` is ``name``'s in the users file."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    hashed = read(path).get(name)
    if not hashed or not password:
        return False
    try:
        return bool(PasswordHasher().verify(hashed, password))
    except (VerificationError, InvalidHashError):
        return False
