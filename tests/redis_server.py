"""Start a throwaway real redis-server for tests.

``redis_server()`` runs ``redis-server`` on a free port (never 6379) bound to 127.0.0.1,
in its own temp dir, without persistence; it waits until the server answers PING and
yields a ``RedisServer`` whose ``url`` clients use; on exit it stops the process.

Use it from a fixture::

    @pytest.fixture(scope="session")
    def redis_url() -> Iterator[str]:
        with redis_server() as server:
            yield server.url

Error handling: ``RedisUnavailable`` if the binary is missing (fixtures turn it into a
skip); ``RuntimeError`` with the server's log if it does not answer within the deadline
(a port taken between picking and binding is retried on a new port).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RedisServer", "RedisUnavailable", "redis_server"]

DEFAULT_REDIS_PORT = 6379  # the shared system Redis: tests never touch it


class RedisUnavailable(RuntimeError):
    """No redis-server binary on PATH."""


@dataclass(frozen=True, slots=True)
class RedisServer:
    """A running test server."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != DEFAULT_REDIS_PORT:
            return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait_ready(process: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """Poll until PING answers (True), the process dies or the deadline passes (False)."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _answers_ping(port):
            return True
        time.sleep(0.01)  # polling a socket with a deadline; no event to await here
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _spawn(binary: str, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(workdir), "--logfile", str(workdir / "redis.log")]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def redis_server(*, startup_timeout: float = 10.0, attempts: int = 3) -> Iterator[RedisServer]:
    """Run a private redis-server for the duration of the ``with`` block.

    Resource handling: the process is terminated (killed after 5 s) and its temp dir
    removed on exit, also when the body raises.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server is not on PATH")
    with tempfile.TemporaryDirectory(prefix="chorus-redis-") as tmp:
        workdir = Path(tmp)
        for _ in range(attempts):
            port = _free_port()
            process = _spawn(binary, workdir, port)
            if _wait_ready(process, port, time.monotonic() + startup_timeout):
                break
            _stop(process)
        else:
            log = workdir / "redis.log"
            text = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            raise RuntimeError(f"redis-server did not answer PING on 127.0.0.1:{port}:\n{text}")
        try:
            yield RedisServer(port, process, workdir)
        finally:
            _stop(process)
