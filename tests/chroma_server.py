"""A real Chroma server (``chroma run``) on 127.0.0.1 for the server-mode tests; it can be stopped and restarted
on the same port and data folder to test an outage."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def chroma_command() -> str | None:
    """The ``chroma`` CLI installed with chromadb (beside this Python first), if any."""
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaServer:
    """``chroma run --path DIR --host 127.0.0.1 --port N`` as a child process."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path = path
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log = path.parent / f"chroma-{self.port}.log"

    def start(self, timeout: float = 60.0) -> ChromaServer:
        """Start the server and wait until it answers its heartbeat."""
        command = chroma_command()
        if command is None:
            raise RuntimeError("The `chroma` command (installed with chromadb) was not found")
        self.path.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as log:
            self._process = subprocess.Popen([command, "run", "--path", str(self.path), "--host", self.host,
                                              "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"chroma run exited: {self._log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.port}/api/v2/heartbeat", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma run did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server (its data stays in ``path``)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def clear(self) -> None:
        """Delete every collection, so the next test starts from an empty server."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        client = chromadb.HttpClient(host=self.host, port=self.port,
                                     settings=ChromaSettings(anonymized_telemetry=False))
        for collection in client.list_collections():
            client.delete_collection(collection.name)
