"""Servers under test: one small adapter class per server, plus process control.

An adapter says everything the harness needs to drive one server: how to start it, the
WebSocket path, the subscribe handshake (commands sent after the upgrade and the reply
each waits for), how to publish, how big the envelope around our payload is on the wire,
and how to answer application-level pings. Adding a server is one more class
registered in `ADAPTERS`; the peers (python-socketio, websockets) are such classes.

`ServerProcess` starts the adapter's command as a subprocess (optionally pinned with
`taskset`), waits for its port, and reads its CPU time and RSS from /proc.

Resource handling: every started server is registered for an atexit kill and is killed
(its whole process group) by `stop()`; `stop()` is idempotent.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import hashlib
import hmac
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_LIVE: set[subprocess.Popen[bytes]] = set()


@dataclass(frozen=True)
class HandshakeStep:
    """Send `payload` as a text frame (nothing when empty), then wait for a message
    containing a marker."""

    payload: bytes
    markers: tuple[bytes, ...]
    # When set, connection i sends variants[i % len(variants)] instead of `payload`
    # (e.g. one pre-made connection token per client).
    variants: tuple[bytes, ...] = ()


class ServerAdapter(abc.ABC):
    """How to run and drive one server. Subclasses fill in the class attributes."""

    name = "abstract"
    ws_path = "/ws"
    # Bytes the server adds around our payload in each delivered frame payload.
    frame_overhead = 0
    # Reply to an application-level ping message (None: the server sends none).
    app_ping: bytes | None = None
    # What the client answers to app_ping (None: app_ping itself, as Centrifugo wants).
    app_pong: bytes | None = None
    # What precedes the publisher's timestamp in a delivered frame (see bench/wsclient.py).
    stamp_marker = b'"t":'
    # True when `channels` in the handshake is meaningful (idle scenario's K).
    has_channels = False
    # Processes that listen on the port (the server is ready when all of them do).
    processes = 1
    # A path answering 200 once the server serves (None: the server has none); the
    # startup scenario measures the time from process start to that first 200.
    ready_path: str | None = None

    @abc.abstractmethod
    def command(self, port: int, workdir: Path) -> list[str]:
        """The argv that serves on 127.0.0.1:`port`; may write config into `workdir`."""

    # HTTP-stream servers: what in the response body means the client is subscribed.
    ready_marker = b""

    def handshake(self, channels: int) -> list[HandshakeStep]:
        """Steps after the upgrade that subscribe the connection (to `channels` channels)."""
        return []

    def set_options(self, *, jwt_tokens: int = 0,  # noqa: B027
                    presence: bool = False) -> None:
        """`idle`/`storm --jwt`: connect with `jwt_tokens` distinct pre-made connection
        tokens; `--presence`: channels with presence and join/leave. No-op for servers
        without either (the baselines: their figures stay the upgrade-only floor)."""

    def stream_request(self, port: int) -> bytes | None:
        """For a server measured over an HTTP stream (SSE, HTTP streaming): the request
        that connects and subscribes a client; None for WebSocket."""
        return None

    @abc.abstractmethod
    def publish_url(self, port: int) -> str:
        """The URL a publication is POSTed to."""

    def publish_headers(self) -> dict[str, str]:
        """Headers for every publish request."""
        return {}

    def sign_publish(self, url: str, body: bytes) -> str:
        """The URL to POST `body` to (a server whose API signs each request adds the
        signature here)."""
        return url

    @abc.abstractmethod
    def publish_body(self, payload: bytes) -> bytes:
        """The POST body that makes subscribers of channel 0 receive `payload`."""


class BaselineAdapter(ServerAdapter):
    """bench/baseline_server.py: bare aiohttp + uvloop broadcast, no protocol on top."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.name = f"baseline-{mode}"

    def command(self, port: int, workdir: Path) -> list[str]:
        return [sys.executable, "-m", "bench.baseline_server", "--port", str(port),
                "--mode", self.mode]

    def publish_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/broadcast"

    def publish_body(self, payload: bytes) -> bytes:
        return payload


class HelloAdapter(ServerAdapter):
    """bench/hello_server.py: bare aiohttp + uvloop, one route (`GET /ready`); the
    start-up reference (it has no WebSocket: startup only)."""

    name = "baseline-hello"
    ready_path = "/ready"

    def command(self, port: int, workdir: Path) -> list[str]:
        return [sys.executable, "-m", "bench.hello_server", "--port", str(port)]

    def publish_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/ready"

    def publish_body(self, payload: bytes) -> bytes:
        return payload


class ChorusAdapter(ServerAdapter):
    """Chorus over Centrifugo JSON protocol v2 (`python -m broker serve`).

    The config is JSON (no YAML parser to load: what a JSON-configured node starts with).
    """

    name = "chorus"
    ws_path = "/connection/websocket"
    ready_path = "/ready"
    api_key = "bench"
    # {"push":{"channel":"bench","pub":{"data":<payload>}}}; extra pub fields
    # (offset, tags) would only make Chorus's frames bigger, i.e. its figures worse.
    frame_overhead = len(b'{"push":{"channel":"bench","pub":{"data":}}}')
    app_ping = b"{}"
    has_channels = True
    TOKEN_SECRET = "bench-token-secret-0123456789abcdef"  # signs the bench's own tokens
    jwt_tokens = 0  # > 0: connect with that many distinct HS256 tokens (set_options)
    presence = False  # channels with presence + join_leave (set_options)

    def set_options(self, *, jwt_tokens: int = 0, presence: bool = False) -> None:
        self.jwt_tokens = jwt_tokens
        self.presence = presence

    def config(self, port: int) -> dict[str, Any]:
        """The config mapping the node serves (subclasses add to it)."""
        client: dict[str, Any] = {"queue_max_size": 10485760}
        if self.jwt_tokens:
            client["token"] = {"hmac_secret_key": self.TOKEN_SECRET}
        else:
            client["insecure"] = True
        # Join/leave on, not forced: clients here do not ask for join/leave pushes, so a
        # join costs the server its bookkeeping, not N pushes to a channel of N.
        channel: dict[str, Any] = {"presence": True, "join_leave": True} if self.presence else {}
        if self.jwt_tokens:  # insecure mode lets anyone subscribe; a user needs this
            channel["allow_subscribe_for_client"] = True
        return {
            "client": client,
            "http_api": {"key": self.api_key},
            "channel": {"without_namespace": channel},
            "http_server": {"port": port},
            "websocket": {"message_size_limit": 65536},
        }

    def command(self, port: int, workdir: Path) -> list[str]:
        config = workdir / f"{self.name}-{port}.json"
        config.write_text(json.dumps(self.config(port), indent=1))
        return [sys.executable, "-m", "broker", "serve", "--config", str(config),
                "--port", str(port)]

    def handshake(self, channels: int) -> list[HandshakeStep]:
        steps = [HandshakeStep(b'{"id":1,"connect":{}}', (b'"id":1,', b'"id":1}'),
                               self._connect_variants())]
        for i in range(max(1, channels)):
            cid = i + 2
            ch = "bench" if i == 0 else f"bench-{i}"
            body = b'{"id":%d,"subscribe":{"channel":"%s"}}' % (cid, ch.encode())
            steps.append(HandshakeStep(body, (b'"id":%d,' % cid, b'"id":%d}' % cid)))
        return steps

    def _connect_variants(self) -> tuple[bytes, ...]:
        """One connect command per client, each with its own user's token; made here,
        in the harness, so the load generator's CPU does not include signing."""
        if not self.jwt_tokens:
            return ()
        from broker.auth import make_token

        return tuple(b'{"id":1,"connect":{"token":"%s"}}'
                     % make_token(self.TOKEN_SECRET, f"u{i}").encode()
                     for i in range(self.jwt_tokens))

    def publish_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/api/publish"

    def publish_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key, "Content-Type": "application/json"}

    def publish_body(self, payload: bytes) -> bytes:
        return b'{"channel":"bench","data":' + payload + b"}"


class ChorusNoJourneysAdapter(ChorusAdapter):
    """Chorus with ``journeys.enabled: false`` (``chorus`` records journeys, the default):
    the pair measures what connection journeys cost the fan-out."""

    name = "chorus-nojourneys"

    def config(self, port: int) -> dict[str, Any]:
        return {**super().config(port), "journeys": {"enabled": False}}


class ChorusStreamAdapter(ChorusAdapter):
    """Chorus measured over an HTTP-stream transport instead of WebSocket (`python -m
    bench fanout --transport sse,http_stream,uni_sse`): the same server and config, with
    the transport enabled.

    Bidirectional emulation (`sse`, `http_stream`) connects and subscribes with commands
    in the stream's own request (the server runs every command of it, as Centrifugo);
    the pong timeout is off, since answering pings would need `/emulation` requests the
    load generator does not make. `uni_sse` subscribes through the token's `channels`.
    """

    def __init__(self, transport: str) -> None:
        if transport not in ("sse", "http_stream", "uni_sse"):
            raise ValueError(f"--transport: unknown transport {transport!r} "
                             "(sse, http_stream, uni_sse)")
        self.transport = transport
        self.name = f"chorus-{transport}"
        self.ws_path = f"/connection/{transport}"
        self.ready_marker = b'"connect"' if transport == "uni_sse" else b'"id":2'
        if transport == "uni_sse":  # bare pushes: no {"push": ...} around them
            self.frame_overhead = len(b'{"channel":"bench","pub":{"data":}}')

    def config(self, port: int) -> dict[str, Any]:
        config = super().config(port)
        config["client"] = {**config["client"], "pong_timeout": "0s",
                            "token": {"hmac_secret_key": self.TOKEN_SECRET}}
        config[self.transport] = {"enabled": True}
        return config

    def stream_request(self, port: int) -> bytes:
        host = f"127.0.0.1:{port}"
        if self.transport == "uni_sse":
            from broker.auth import make_token

            token = make_token(self.TOKEN_SECRET, "bench", channels=["bench"])
            query = urlencode({"cf_connect": json.dumps({"token": token})})
            return f"GET {self.ws_path}?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        commands = '{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"bench"}}'
        if self.transport == "sse":
            query = urlencode({"cf_connect": commands})
            return f"GET {self.ws_path}?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        return (f"POST {self.ws_path} HTTP/1.1\r\nHost: {host}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(commands)}\r\n\r\n{commands}").encode()


TRANSPORTS = ("sse", "http_stream", "uni_sse")


class ChorusPusherAdapter(ChorusAdapter):
    """Chorus with Pusher clients (`python -m bench fanout --protocol pusher`): the same
    server and config plus one Pusher app.

    Clients connect to `/app/{key}?protocol=7`, wait for `pusher:connection_established`,
    subscribe with `pusher:subscribe` and answer `pusher:ping` with `pusher:pong`. The
    publisher triggers through Chorus's Pusher HTTP API (`POST /apps/{id}/events`, signed
    per request as the server libraries sign: key, timestamp, `body_md5`), so the payload
    travels as Pusher's data *string*: each delivery is
    `{"event":"m","channel":"bench","data":"{\\"t\\":...}"}` and the load client finds its
    timestamp after `t\\":`.
    """

    name = "chorus-pusher"
    app_id, key, secret = "bench", "bench-key", "bench-secret"
    ws_path = f"/app/{key}?protocol=7&client=bench&version=8.4.0"
    # Envelope plus the 8 escaping backslashes of the payload's 8 quotes.
    frame_overhead = len(b'{"event":"m","channel":"bench","data":""}') + 8
    app_ping = b'{"event":"pusher:ping","data":{}}'
    app_pong = b'{"event":"pusher:pong","data":{}}'
    stamp_marker = b't\\":'
    has_channels = True

    def config(self, port: int) -> dict[str, Any]:
        return {**super().config(port), "pusher": {"apps": [
            {"id": self.app_id, "key": self.key, "secret": self.secret}]}}

    def handshake(self, channels: int) -> list[HandshakeStep]:
        steps = [HandshakeStep(b"", (b"pusher:connection_established",))]
        for i in range(max(1, channels)):
            ch = "bench" if i == 0 else f"bench-{i}"
            body = b'{"event":"pusher:subscribe","data":{"channel":"%s"}}' % ch.encode()
            steps.append(HandshakeStep(body, (b'subscription_succeeded","channel":"%s"'
                                              % ch.encode(),)))
        return steps

    def publish_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/apps/{self.app_id}/events"

    def publish_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def publish_body(self, payload: bytes) -> bytes:
        return json.dumps({"name": "m", "channel": "bench",
                           "data": payload.decode()}, separators=(",", ":")).encode()

    def sign_publish(self, url: str, body: bytes) -> str:
        path = url[url.index("/apps/"):]
        query = {"auth_key": self.key, "auth_timestamp": str(int(time.time())),
                 "auth_version": "1.0", "body_md5": hashlib.md5(body).hexdigest()}
        signed = "&".join(f"{k}={query[k]}" for k in sorted(query))
        signature = hmac.new(self.secret.encode(), f"POST\n{path}\n{signed}".encode(),
                             hashlib.sha256).hexdigest()
        return f"{url}?{signed}&auth_signature={signature}"


class SocketIOAdapter(ServerAdapter):
    """Peer: python-socketio 5.x on aiohttp + uvloop (bench/peer_socketio.py).

    Engine.IO v4 straight over WebSocket: the server opens with `0{...}`; the client
    connects the default namespace (`40` -> `40{"sid":...}`), joins the room with an
    acked event (`421["join"]` -> `431["ok"]`) and answers Engine.IO pings (`2` -> `3`).
    Publications arrive as `42["pub",<payload>]`.
    """

    name = "python-socketio"
    ws_path = "/socket.io/?EIO=4&transport=websocket"
    frame_overhead = len(b'42["pub",]')
    app_ping = b"2"
    app_pong = b"3"

    def command(self, port: int, workdir: Path) -> list[str]:
        return [sys.executable, "-m", "bench.peer_socketio", "--port", str(port)]

    def handshake(self, channels: int) -> list[HandshakeStep]:
        return [HandshakeStep(b"40", (b"40{",)),
                HandshakeStep(b'421["join"]', (b"431[",))]

    def publish_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/publish"

    def publish_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def publish_body(self, payload: bytes) -> bytes:
        return payload


class WebsocketsAdapter(ServerAdapter):
    """Peer: the `websockets` library's asyncio server and `broadcast()`
    (bench/peer_websockets.py). Frames carry the payload alone, as the baselines'; the
    publish POST goes to a second, aiohttp, listener in the same process, whose port is
    chosen when the command is built."""

    name = "websockets"
    ws_path = "/"

    def __init__(self) -> None:
        self.trigger_port = 0

    def command(self, port: int, workdir: Path) -> list[str]:
        self.trigger_port = free_port()
        return [sys.executable, "-m", "bench.peer_websockets", "--port", str(port),
                "--trigger-port", str(self.trigger_port)]

    def publish_url(self, port: int) -> str:
        if not self.trigger_port:
            raise RuntimeError("websockets: publish_url() before command() chose the port")
        return f"http://127.0.0.1:{self.trigger_port}/broadcast"

    def publish_body(self, payload: bytes) -> bytes:
        return payload


class ChorusAiohttpReaderAdapter(ChorusAdapter):
    """Chorus with ``websocket.detach: false``: every socket stays aiohttp's
    (``WebSocketResponse`` and a reader coroutine) for its life, instead of leaving
    aiohttp after the upgrade as by default (``chorus``)."""

    name = "chorus-aiohttp"

    def config(self, port: int) -> dict[str, Any]:
        config = super().config(port)
        config["websocket"] = {**config["websocket"], "detach": False}
        return config


PEERS = ("python-socketio", "websockets")


PROTOCOLS = {"centrifugo": "chorus", "pusher": "chorus-pusher"}  # fanout --protocol


REDIS_URL_ENV = "BENCH_REDIS_URL"  # not CHORUS_*: chorus rejects unknown CHORUS_ vars


class ChorusRedisAdapter(ChorusAdapter):
    """Chorus on the Redis engine, ``workers`` processes (``chorus serve --workers N``).

    The Redis address comes from ``$BENCH_REDIS_URL`` (``python -m bench
    multinode`` starts a private redis-server and sets it). Raises RuntimeError without it.
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.processes = workers
        self.name = "chorus-redis" if workers == 1 else f"chorus-workers{workers}"

    def config(self, port: int) -> dict[str, Any]:
        url = os.environ.get(REDIS_URL_ENV)
        if not url:
            raise RuntimeError(f"{self.name} needs ${REDIS_URL_ENV} (python -m bench multinode "
                               "starts its own redis-server)")
        # The same config as `chorus`, plus the engine.
        return {**super().config(port), "engine": {"type": "redis",
                                                    "redis": {"address": [url]}}}

    def command(self, port: int, workdir: Path) -> list[str]:
        argv = super().command(port, workdir)
        return argv + (["--workers", str(self.workers)] if self.workers > 1 else [])


ADAPTERS: dict[str, Callable[[], ServerAdapter]] = {
    "baseline-send_str": lambda: BaselineAdapter("send_str"),
    "baseline-prebuilt": lambda: BaselineAdapter("prebuilt"),
    "baseline-hello": HelloAdapter,
    "chorus": ChorusAdapter,
    "chorus-nojourneys": ChorusNoJourneysAdapter,
    "chorus-redis": ChorusRedisAdapter,
    "chorus-aiohttp": ChorusAiohttpReaderAdapter,
    "chorus-pusher": ChorusPusherAdapter,
    "python-socketio": SocketIOAdapter,
    "websockets": WebsocketsAdapter,
    **{f"chorus-{t}": partial(ChorusStreamAdapter, t) for t in TRANSPORTS},
    "chorus-workers2": lambda: ChorusRedisAdapter(workers=2),
    # 50,000 connections need 3 workers under a 20,000 per-process file limit.
    "chorus-workers3": lambda: ChorusRedisAdapter(workers=3),
}


def make_adapter(name: str) -> ServerAdapter:
    """The adapter registered under `name`. Raises KeyError naming the known ones."""
    factory = ADAPTERS.get(name)
    if factory is None:
        raise KeyError(f"unknown server {name!r}; known: {', '.join(ADAPTERS)}")
    return factory()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def launch(argv: list[str], log_path: Path, core: int | None,
           env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (pinned to `core` with taskset unless None),
    output appended to `log_path`, from the repository root, with `env` (default: ours);
    killed at exit."""
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent, start_new_session=True,
            preexec_fn=_raise_nofile, env=env,
        )
    _LIVE.add(proc)
    return proc


def kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill `proc`'s whole process group (idempotent)."""
    _kill(proc)


def _kill_all() -> None:
    for proc in list(_LIVE):
        _kill(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    _LIVE.discard(proc)


atexit.register(_kill_all)


def proc_cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) seconds of `pid`, threads included, from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (its threads included) from /proc/<pid>/stat."""
    return sum(proc_cpu_times(pid))


def proc_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (worker processes), from /proc/.../children."""
    pids, i = [pid], 0
    while i < len(pids):
        path = Path(f"/proc/{pids[i]}/task/{pids[i]}/children")
        with contextlib.suppress(OSError):
            pids += [int(p) for p in path.read_text().split()]
        i += 1
    return pids


def _tree_sum(pid: int, read: Callable[[int], tuple[float, float]]) -> tuple[float, float]:
    """Sum `read` over the process tree of `pid`; a process gone meanwhile counts 0."""
    user = system = 0.0
    for p in proc_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            u, s = read(p)
            user, system = user + u, system + s
    return user, system


def listeners(port: int) -> set[int]:
    """Pids listening on TCP `port` (from `ss`)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                         text=True, check=False).stdout
    return {int(p) for p in re.findall(r"pid=(\d+)", out)}


def proc_rss_kb(pid: int) -> int:
    """VmRSS of `pid` in KB from /proc/<pid>/status (0 if the field is missing)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class ServerProcess:
    """One running server under test.

    Error handling: `start` raises RuntimeError (with the tail of the server's log) if
    the process exits or its port does not accept connections before the deadline.
    """

    def __init__(self, adapter: ServerAdapter, workdir: Path, core: int | None) -> None:
        self.adapter = adapter
        self.workdir = workdir
        self.core = core
        self.port = 0
        self.log_path = workdir / f"{adapter.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "server not started"
        return self._proc.pid

    def start(self, port: int | None = None, timeout: float = 20.0) -> None:
        """Start the server on `port` (default: a free one); return once it accepts TCP."""
        self.port = port or free_port()
        self._proc = launch(self.adapter.command(self.port, self.workdir), self.log_path,
                            self.core)
        self._wait_port(time.monotonic() + timeout)

    def _wait_port(self, deadline: float) -> None:
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.adapter.name} exited with {self._proc.returncode}:"
                                   f"\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            procs = self.adapter.processes
            if procs == 1 or len(listeners(self.port)) >= procs:  # every worker is up
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.adapter.name} did not listen on {self.port}:\n"
                           f"{self.log_tail()}")

    def alive(self) -> bool:
        """True while the server process runs."""
        return self._proc is not None and self._proc.poll() is None

    def cpu_seconds(self) -> float:
        """CPU seconds used by the server so far (worker processes included)."""
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) CPU seconds used by the server so far, summed over its live
        process tree (a `--workers N` parent and its workers)."""
        return _tree_sum(self.pid, proc_cpu_times)

    def rss_kb(self) -> int:
        """Current resident set size of the server in KB (process tree summed)."""
        return int(_tree_sum(self.pid, lambda p: (float(proc_rss_kb(p)), 0.0))[0])

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's combined stdout/stderr."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill the server's process group and reap it; safe to call twice."""
        if self._proc is not None:
            _kill(self._proc)
