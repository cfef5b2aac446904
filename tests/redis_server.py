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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

__all__ = [
    "ClusterSetup",
    "PersistentRedis",
    "RedisServer",
    "RedisUnavailable",
    "SentinelSetup",
    "cluster_setup",
    "persistent_redis",
    "redis_server",
    "respawn",
    "sentinel_setup",
]

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


CLUSTER_MAX_PORT = 55535  # a cluster node also listens on port + 10000


def _free_port(max_port: int = 65535) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != DEFAULT_REDIS_PORT and port <= max_port:
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


def _spawn(
    binary: str, workdir: Path, port: int, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(workdir), "--logfile", str(workdir / "redis.log"), *extra]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _binary(name: str = "redis-server") -> str:
    binary = shutil.which(name)
    if binary is None:
        raise RedisUnavailable(f"{name} is not on PATH")
    return binary


@contextlib.contextmanager
def redis_server(
    *, startup_timeout: float = 10.0, attempts: int = 3, extra: tuple[str, ...] = (),
    max_port: int = 65535,
) -> Iterator[RedisServer]:
    """Run a private redis-server for the duration of the ``with`` block.

    ``extra`` are more command-line options (e.g. ``("--replicaof", "127.0.0.1", "7000")``);
    ``max_port`` bounds the port picked (cluster nodes need room for their bus port).

    Resource handling: the process is terminated (killed after 5 s) and its temp dir
    removed on exit, also when the body raises.
    """
    binary = _binary()
    with tempfile.TemporaryDirectory(prefix="chorus-redis-") as tmp:
        workdir = Path(tmp)
        for _ in range(attempts):
            port = _free_port(max_port)
            process = _spawn(binary, workdir, port, extra)
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


@contextlib.contextmanager
def respawn(server: RedisServer, *, startup_timeout: float = 10.0) -> Iterator[RedisServer]:
    """Start a fresh, empty redis-server on a stopped server's port (a restart without
    persistence); it is stopped on exit.

    Error handling: RuntimeError if the port does not answer PING within the deadline.
    """
    if server.process.poll() is None:
        raise RuntimeError("respawn() needs the old server stopped first")
    process = _spawn(_binary(), server.workdir, server.port)
    try:
        if not _wait_ready(process, server.port, time.monotonic() + startup_timeout):
            raise RuntimeError(f"respawned redis-server on {server.port} did not answer PING")
        yield RedisServer(server.port, process, server.workdir)
    finally:
        _stop(process)


class PersistentRedis:
    """A redis-server run from a config file (persistence as the file says) that can be
    restarted on the same port and data directory; see ``persistent_redis``."""

    def __init__(self, config_file: Path, workdir: Path, extra: tuple[str, ...]) -> None:
        self.config_file, self.workdir, self.extra = config_file, workdir, extra
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (loading what its data directory holds) and wait for PING."""
        args = [_binary(), str(self.config_file), "--port", str(self.port),
                "--bind", "127.0.0.1", "--dir", str(self.workdir),
                "--logfile", str(self.workdir / "redis.log"), *self.extra]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        if not _wait_ready(self.process, self.port, time.monotonic() + timeout):
            _stop(self.process)
            path = self.workdir / "redis.log"
            log = path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"
            raise RuntimeError(f"redis-server from {self.config_file} did not start:\n{log}")

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM (Redis flushes its AOF and exits) or, with ``crash``, SIGKILL."""
        assert self.process is not None, "not started"
        if crash:
            self.process.kill()
            self.process.wait()
        else:
            _stop(self.process)

    def restart(self, *, crash: bool = False) -> None:
        self.stop(crash=crash)
        self.start()


@contextlib.contextmanager
def persistent_redis(config_file: Path, *, extra: tuple[str, ...] = ()) -> Iterator[
        PersistentRedis]:
    """A redis-server started from ``config_file`` (its persistence settings) with the
    port, bind address, data directory (a temp dir) and log file overridden, plus
    ``extra`` options. Stopped and its directory removed on exit.

    Error handling: RedisUnavailable without the binary; RuntimeError (with the log) if
    it does not answer PING.
    """
    _binary()
    with tempfile.TemporaryDirectory(prefix="chorus-aof-") as tmp:
        server = PersistentRedis(config_file, Path(tmp), extra)
        server.start()
        try:
            yield server
        finally:
            if server.process is not None:
                _stop(server.process)


def _until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` until true. Error handling: RuntimeError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, redis.RedisError):
            if check():
                return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"test redis: {what} not reached within {timeout} s")
        time.sleep(0.05)  # a subprocess' state; there is nothing to await


@dataclass(frozen=True, slots=True)
class SentinelSetup:
    """A primary, its replica and three sentinels monitoring it as ``service``."""

    primary: RedisServer
    replica: RedisServer
    sentinels: tuple[RedisServer, ...]
    service: str

    @property
    def sentinel_addresses(self) -> tuple[str, ...]:
        return tuple(f"127.0.0.1:{s.port}" for s in self.sentinels)


@contextlib.contextmanager
def _sentinel(workdir: Path, primary: int, service: str) -> Iterator[RedisServer]:
    port = _free_port()
    conf = workdir / f"sentinel-{port}.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\nlogfile {workdir}/sentinel-{port}.log\n"
        f"sentinel monitor {service} 127.0.0.1 {primary} 2\n"
        f"sentinel down-after-milliseconds {service} 1000\n"
        f"sentinel failover-timeout {service} 3000\n"
    )
    process = subprocess.Popen(
        [_binary(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        if not _wait_ready(process, port, time.monotonic() + 10):
            raise RuntimeError(f"sentinel on {port} did not answer PING")
        yield RedisServer(port, process, workdir)
    finally:
        _stop(process)


@contextlib.contextmanager
def sentinel_setup(service: str = "chorus-test") -> Iterator[SentinelSetup]:
    """Primary + replica + 3 sentinels on free ports; ready when every sentinel sees the
    replica (so ``SENTINEL FAILOVER`` can promote it; sentinels find each other a few
    seconds later through hello messages). Everything is stopped on exit."""
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(redis_server())
        replica = stack.enter_context(
            redis_server(extra=("--replicaof", "127.0.0.1", str(primary.port)))
        )
        replica_client = redis.Redis(port=replica.port)

        def replica_linked() -> bool:
            return bool(replica_client.info("replication")["master_link_status"] == "up")

        _until("replica link up", replica_linked, 10)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chorus-snt-")))
        sentinels = tuple(
            stack.enter_context(_sentinel(workdir, primary.port, service)) for _ in range(3)
        )
        for sentinel in sentinels:
            client = redis.Redis(port=sentinel.port)

            def sees_replica(client: redis.Redis = client) -> bool:
                return bool(client.sentinel_slaves(service))

            _until("sentinel sees the replica", sees_replica, 20)
        yield SentinelSetup(primary, replica, sentinels, service)


@dataclass(frozen=True, slots=True)
class ClusterSetup:
    """A Redis Cluster of primaries only, all slots assigned."""

    nodes: tuple[RedisServer, ...]

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(f"127.0.0.1:{n.port}" for n in self.nodes)


@contextlib.contextmanager
def cluster_setup(primaries: int = 3) -> Iterator[ClusterSetup]:
    """``primaries`` cluster-enabled servers joined by ``redis-cli --cluster create``;
    ready when every node reports ``cluster_state:ok``. Stopped on exit.

    Error handling: RedisUnavailable without redis-cli; RuntimeError if the cluster does
    not form (the redis-cli output is in the message).
    """
    cli = _binary("redis-cli")
    with contextlib.ExitStack() as stack:
        nodes = tuple(
            stack.enter_context(redis_server(extra=(
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{i}.conf",
                "--cluster-node-timeout", "2000",
            ), max_port=CLUSTER_MAX_PORT))
            for i in range(primaries)
        )
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        done = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, timeout=60, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]!r}")
        for node in nodes:
            client = redis.Redis(port=node.port)

            def cluster_ok(client: redis.Redis = client) -> bool:
                return bool(client.cluster("info")["cluster_state"] == "ok")

            _until("cluster_state:ok", cluster_ok, 20)
        yield ClusterSetup(nodes)
