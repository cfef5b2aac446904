"""Start a throwaway real redis-server for tests.

``redis_server()`` runs ``redis-server`` on a reserved port (``tests.ports``: outside the
kernel's ephemeral range, never 6379, never handed to two test processes) bound to
127.0.0.1, in its own temp dir, without persistence; it yields a ``RedisServer`` whose
``url`` clients use once *that process* answers on the port; on exit it stops it.

Use it from a fixture::

    @pytest.fixture(scope="session")
    def redis_url() -> Iterator[str]:
        with redis_server() as server:
            yield server.url

Readiness is "our process serves the port": ``INFO server`` on the port must report our
child's ``process_id``. A PING alone is not enough: when the port was taken meanwhile by
a process outside the reservation protocol, PING is answered by that process while ours
dies of the failed bind.

Error handling: ``RedisUnavailable`` if the binary is missing (fixtures turn it into a
skip); a server that exits before serving (it lost its port) is retried on a freshly
reserved port; ``RuntimeError`` with the server's log if it is not serving within the
deadline or every attempt failed.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.ports import PortReservation, reserve_port

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
    "sentinel_process",
    "sentinel_setup",
]

DEFAULT_REDIS_PORT = 6379  # the shared system Redis: tests never touch it
CLUSTER_BUS_OFFSET = 10000  # Redis Cluster's bus listens on port + 10000
# Failure detection is tuned for correctness on a loaded machine, not for speed: no test
# relies on Redis noticing a dead peer (failovers are ordered with SENTINEL FAILOVER), so
# a process starved for a second or two must not be declared down and failed over.
CLUSTER_NODE_TIMEOUT_MS = 15000
SENTINEL_DOWN_AFTER_MS = 30000
SENTINEL_FAILOVER_TIMEOUT_MS = 30000


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


def _serves(port: int, pid: int) -> bool:
    """True if the server answering on ``port`` is process ``pid``."""
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5,
                         retry=Retry(NoBackoff(), 0))  # the caller polls: no hidden retries
    try:
        return int(client.info("server")["process_id"]) == pid
    except (redis.AuthenticationError, redis.exceptions.NoPermissionError):
        # A server that requires a password, or whose default ACL user may only PING (the
        # ACL tests), answers NOAUTH / NOPERM: it is up on our reserved port, which no
        # process outside the reservation protocol takes.
        return True
    except (OSError, redis.RedisError):
        return False
    finally:
        client.close()


def _wait_serving(process: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """Poll until ``process`` serves ``port`` (True), it exits or the deadline passes."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _serves(port, process.pid):
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


def _log_since(log: Path, offset: int) -> str:
    """What the server wrote to ``log`` after byte ``offset`` (the last 2000 characters)."""
    if not log.exists():
        return "(no log)"
    return log.read_bytes()[offset:].decode(errors="replace")[-2000:]


def _launch(
    argv: Callable[[int], list[str]], log: Path, *, offsets: tuple[int, ...] = (0,),
    timeout: float = 10.0, attempts: int = 5,
) -> tuple[subprocess.Popen[bytes], PortReservation]:
    """Start ``argv(port)`` on a reserved port until it serves it; returns the process
    and the reservation (the caller releases it after stopping the process).

    Error handling: a process that exits on "Address already in use" lost its port to a
    process outside the reservation protocol: retried on a new port, ``attempts`` times.
    Any other exit, or still not serving by ``timeout``: RuntimeError with its log.
    """
    for _ in range(attempts):
        reservation = reserve_port(offsets)
        start = log.stat().st_size if log.exists() else 0
        command = argv(reservation.port)
        with log.open("ab") as out:  # what it prints before its logfile is open, too
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        if _wait_serving(process, reservation.port, time.monotonic() + timeout):
            return process, reservation
        running = process.poll() is None
        _stop(process)
        reservation.release()
        text = _log_since(log, start)
        if running:
            raise RuntimeError(f"{command[0]} on 127.0.0.1:{reservation.port} not serving "
                               f"within {timeout} s:\n{text}")
        if "Address already in use" not in text:
            raise RuntimeError(f"{command[0]} on 127.0.0.1:{reservation.port} exited:\n{text}")
    raise RuntimeError(f"redis-server lost its port {attempts} times:\n{text}")


def _server_argv(binary: str, workdir: Path, extra: tuple[str, ...]) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(workdir),
                "--logfile", str(workdir / "redis.log"), *extra]

    return argv


def _binary(name: str = "redis-server") -> str:
    binary = shutil.which(name)
    if binary is None:
        raise RedisUnavailable(f"{name} is not on PATH")
    return binary


@contextlib.contextmanager
def redis_server(
    *, startup_timeout: float = 10.0, attempts: int = 5, extra: tuple[str, ...] = (),
    cluster: bool = False,
) -> Iterator[RedisServer]:
    """Run a private redis-server for the duration of the ``with`` block.

    ``extra`` are more command-line options (e.g. ``("--replicaof", "127.0.0.1", "7000")``);
    ``cluster`` makes it a Redis Cluster node (its bus port is reserved as well).

    Resource handling: the process is terminated (killed after 5 s), its port reservation
    released (it is held for the whole block, so ``respawn`` finds the port still ours)
    and its temp dir removed on exit, also when the body raises.
    """
    binary = _binary()
    if cluster:
        extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS), *extra)
    offsets = (0, CLUSTER_BUS_OFFSET) if cluster else (0,)
    with tempfile.TemporaryDirectory(prefix="chorus-redis-") as tmp:
        workdir = Path(tmp)
        process, reservation = _launch(
            _server_argv(binary, workdir, extra), workdir / "redis.log", offsets=offsets,
            timeout=startup_timeout, attempts=attempts)
        try:
            yield RedisServer(reservation.port, process, workdir)
        finally:
            _stop(process)
            reservation.release()


@contextlib.contextmanager
def respawn(server: RedisServer, *, startup_timeout: float = 10.0) -> Iterator[RedisServer]:
    """Start a fresh, empty redis-server on a stopped server's port (a restart without
    persistence); it is stopped on exit. Call it inside the original's ``with`` block:
    the port stays reserved there, and being outside the ephemeral range no outbound
    connection can have taken it while the server was down.

    Error handling: RuntimeError if the new process is not serving the port in time.
    """
    if server.process.poll() is None:
        raise RuntimeError("respawn() needs the old server stopped first")
    process = subprocess.Popen(_server_argv(_binary(), server.workdir, ())(server.port),
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        if not _wait_serving(process, server.port, time.monotonic() + startup_timeout):
            raise RuntimeError(f"respawned redis-server on {server.port} is not serving it:\n"
                               f"{_log_since(server.workdir / 'redis.log', 0)}")
        yield RedisServer(server.port, process, server.workdir)
    finally:
        _stop(process)


class PersistentRedis:
    """A redis-server run from a config file (persistence as the file says) that can be
    restarted on the same port and data directory; see ``persistent_redis``."""

    def __init__(self, config_file: Path, workdir: Path, extra: tuple[str, ...]) -> None:
        self.config_file, self.workdir, self.extra = config_file, workdir, extra
        # Held for the server's whole life (restarts included): see tests.ports.
        self.reservation = reserve_port()
        self.port = self.reservation.port
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
        if not _wait_serving(self.process, self.port, time.monotonic() + timeout):
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
            server.reservation.release()


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


def _sentinel_argv(workdir: Path, primary: int, service: str) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:  # a config file per port: sentinels rewrite theirs
        conf = workdir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\nlogfile {workdir}/sentinel.log\n"
            f"sentinel monitor {service} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {service} {SENTINEL_DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {service} {SENTINEL_FAILOVER_TIMEOUT_MS}\n"
        )
        return [_binary(), str(conf), "--sentinel"]

    return argv


@contextlib.contextmanager
def _sentinel(workdir: Path, primary: int, service: str) -> Iterator[RedisServer]:
    process, reservation = _launch(
        _sentinel_argv(workdir, primary, service), workdir / "sentinel.log")
    try:
        yield RedisServer(reservation.port, process, workdir)
    finally:
        _stop(process)
        reservation.release()


@contextlib.contextmanager
def sentinel_process(primary: int, service: str) -> Iterator[RedisServer]:
    """One sentinel monitoring the primary on ``primary`` as ``service``, in its own temp
    dir (for tests that move the primary themselves, e.g. ``SENTINEL REMOVE`` then
    ``SENTINEL MONITOR`` another server); stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="chorus-snt-") as tmp, \
            _sentinel(Path(tmp), primary, service) as sentinel:
        yield sentinel


def _sentinel_converged(client: redis.Redis, service: str, replica: int, others: int) -> bool:
    """This sentinel sees the primary up, the replica up and linked, and every other
    sentinel (so a failover ordered through one reaches all through hello messages)."""
    master: Any = client.sentinel_master(service)
    replicas: Any = client.sentinel_slaves(service)
    return (master["flags"] == "master"  # not s_down / o_down / failover_in_progress
            and master["num-other-sentinels"] == others
            and any(r["port"] == replica and r["flags"] == "slave"
                    and r["master-link-status"] == "ok" for r in replicas))


# As every shipped Sentinel config (deploy/README.md, "what a failover costs"): a primary
# without a linked replica refuses writes, so nothing acknowledged by the old primary
# after the replica's promotion vanishes when the sentinels demote it ~10 s later. The lag
# bound is generous: the promotion closes the replication link at once, and a replica
# starved for seconds on a loaded machine must not fail writes.
_GUARDED = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "60",
            "--repl-diskless-sync-delay", "0")


@contextlib.contextmanager
def sentinel_setup(service: str = "chorus-test") -> Iterator[SentinelSetup]:
    """Primary + replica (both with ``min-replicas-to-write 1``) + 3 sentinels on reserved
    ports; ready when every sentinel sees the primary and the linked replica up and knows
    the other two sentinels (so ``SENTINEL FAILOVER`` can promote the replica and every
    sentinel learns it). Everything is stopped on exit. After a failover ``primary`` and
    ``replica`` name the servers as they were started, not their roles.

    Sentinels declare nothing down for ``SENTINEL_DOWN_AFTER_MS``: on a loaded machine a
    second-long stall must not start an unplanned failover under a running test.
    """
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(redis_server(extra=_GUARDED))
        replica = stack.enter_context(
            redis_server(extra=(*_GUARDED, "--replicaof", "127.0.0.1", str(primary.port)))
        )
        replica_client = redis.Redis(port=replica.port)

        def replica_linked() -> bool:
            return bool(replica_client.info("replication")["master_link_status"] == "up")

        _until("replica link up", replica_linked, 20)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chorus-snt-")))
        sentinels = tuple(
            stack.enter_context(_sentinel(workdir, primary.port, service)) for _ in range(3)
        )
        for sentinel in sentinels:
            client = redis.Redis(port=sentinel.port, decode_responses=True)

            def converged(client: redis.Redis = client) -> bool:
                return _sentinel_converged(client, service, replica.port, len(sentinels) - 1)

            _until("sentinel sees primary, replica and the other sentinels", converged, 30)
        yield SentinelSetup(primary, replica, sentinels, service)


@dataclass(frozen=True, slots=True)
class ClusterSetup:
    """A Redis Cluster of primaries only, all slots assigned."""

    nodes: tuple[RedisServer, ...]

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(f"127.0.0.1:{n.port}" for n in self.nodes)


def _cluster_converged(client: redis.Redis, nodes: int) -> bool:
    """This node serves (cluster_state:ok), sees all slots assigned and every node."""
    info = client.cluster("info")
    return (info["cluster_state"] == "ok" and int(info["cluster_slots_ok"]) == 16384
            and int(info["cluster_known_nodes"]) == nodes)


@contextlib.contextmanager
def cluster_setup(primaries: int = 3) -> Iterator[ClusterSetup]:
    """``primaries`` cluster-enabled servers (port and bus port reserved) joined by
    ``redis-cli --cluster create``; ready when every node reports ``cluster_state:ok``
    with all slots and all nodes known. Stopped on exit.

    Nodes are declared failed only after ``CLUSTER_NODE_TIMEOUT_MS``: a node starved on
    a loaded machine must not take the cluster down (CLUSTERDOWN) under a running test.

    Error handling: RedisUnavailable without redis-cli; RuntimeError if the cluster does
    not form (the redis-cli output is in the message).
    """
    cli = _binary("redis-cli")
    with contextlib.ExitStack() as stack:
        nodes = tuple(stack.enter_context(redis_server(cluster=True)) for _ in range(primaries))
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        done = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, timeout=120, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]!r}")
        for node in nodes:
            client = redis.Redis(port=node.port)

            def converged(client: redis.Redis = client) -> bool:
                return _cluster_converged(client, primaries)

            _until("cluster_state:ok with every slot and node", converged, 30)
        yield ClusterSetup(nodes)
