"""``chorus cluster up|down|status``: a multi-node Chorus on loopback, for trying things.

``up`` starts, from Debian's packages, a Redis primary, its replica and three Sentinels,
``--nodes`` Chorus nodes joined through the Sentinel topology, and nginx balancing
WebSockets and the API over them; it returns when every piece answers, then prints the
endpoints, the API key and a connection token. Configs, logs and ``state.json`` (every
pid) live in the state dir (default ``.chorus-cluster/``). ``down`` stops exactly what
``up`` recorded, nodes with SIGTERM so they drain, and nothing else.

Guarantees: every process runs in its own session (its pid is the session id), so
``down`` finds their children too (nginx workers, Redis replication forks) and leaves
no process behind. A recorded pid is signalled only while its command line still shows
what ``up`` started (a recycled pid is never touched).

Error handling: :class:`ClusterError` (the CLI prints it and exits 1) for a missing
binary, a port in use, a process that exits or does not answer in time — ``up`` then
stops what it had started, and the message names the log to read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from broker.devcluster.conf import MASTER_NAME, ClusterPlan, Ports

__all__ = ["ClusterError", "cluster_down", "cluster_up",
           "leftover_processes", "node_env", "run_cluster"]

STATE_FILE = "state.json"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0  # above the nodes' 5 s shutdown_timeout


class ClusterError(RuntimeError):
    """The cluster could not be started or stopped; the message says why."""


def _until(what: str, check: Callable[[], bool], timeout: float,
           process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll ``check`` (other processes' state: nothing to await) until it holds.

    Error handling: ClusterError naming ``what`` and ``log`` on timeout or when
    ``process`` exits."""
    deadline = time.monotonic() + timeout
    while not check():
        hint = f" (see {log})" if log else ""
        if process is not None and process.poll() is not None:
            raise ClusterError(f"{what}: the process exited{hint}")
        if time.monotonic() > deadline:
            raise ClusterError(f"{what}: not reached within {timeout:.0f} s{hint}")
        time.sleep(0.05)


def _redis_info(port: int, *command: str) -> str:
    """A raw RESP command's reply as text ("" when the server does not answer)."""
    payload = f"*{len(command)}\r\n" + "".join(f"${len(c)}\r\n{c}\r\n" for c in command)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(payload.encode())
            return sock.recv(65536).decode(errors="replace")
    except OSError:
        return ""


def _answers_ping(port: int) -> bool:
    return "PONG" in _redis_info(port, "PING")


def _sees_replica(sentinel: int, replica: int) -> bool:
    return f"{replica}" in _redis_info(sentinel, "SENTINEL", "REPLICAS", MASTER_NAME)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _port_free(port: int) -> bool:
    """Nothing listens on ``port``: the servers set SO_REUSEADDR, so connections of an
    earlier run still in TIME_WAIT do not count."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _binary(name: str, package: str) -> str:
    """``name``'s path; installs Debian's ``package`` first when absent and root."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"chorus cluster: installing {package} (apt-get install -y {package})",
              file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", package], check=False,
                       stdout=subprocess.DEVNULL)
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise ClusterError(f"{name} not found: install it (apt-get install -y {package})")
    return found


class _Launcher:
    """Starts processes in their own sessions and records them in ``state.json``
    as they start, so a failed ``up`` can be undone by ``down`` too."""

    def __init__(self, plan: ClusterPlan, state: dict[str, Any]) -> None:
        self.plan, self.state = plan, state
        self.logs = plan.dir_of("logs")

    def spawn(self, name: str, argv: list[str], expect: str,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       env=env, cwd=self.plan.state_dir)
        self.state["processes"].append({"name": name, "pid": process.pid, "expect": expect,
                                        "log": str(log), "argv": argv})
        _write_state(self.plan.state_dir, self.state)
        return process

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    path = state_dir / STATE_FILE
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)  # it holds the API key and secrets


def cluster_up(plan: ClusterPlan) -> dict[str, Any]:
    """Start the cluster described by ``plan``; returns the recorded state.

    Error handling: ClusterError (everything started so far is stopped first)."""
    state_dir = plan.state_dir
    if (state_dir / STATE_FILE).exists():
        raise ClusterError(f"{state_dir}/{STATE_FILE} exists: a cluster is up "
                           f"(`chorus cluster down --state-dir {state_dir}` first)")
    redis, nginx = _binary("redis-server", "redis-server"), _binary("nginx", "nginx")
    taken = [p for p in plan.ports.all() if not _port_free(p)]
    if taken:
        raise ClusterError(f"ports in use: {taken}; pick another --base-port")
    ports = plan.ports
    workdirs = [f"redis-{ports.primary}", f"redis-{ports.replica}",
                *(f"sentinel-{p}" for p in ports.sentinels)]
    for sub in ("logs", "nginx/tmp", *workdirs):
        plan.dir_of(sub).mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {**_public(plan), "processes": []}
    launcher = _Launcher(plan, state)
    try:
        _start_redis(plan, launcher, redis)
        _start_nodes(plan, launcher)
        _start_nginx(plan, launcher, nginx)
    except BaseException:
        if (state_dir / STATE_FILE).exists():  # something was started: stop it
            with contextlib.suppress(ClusterError):
                cluster_down(state_dir, quiet=True)
        raise
    return state


def _public(plan: ClusterPlan) -> dict[str, Any]:
    from broker.auth import make_token

    ports = plan.ports
    return {
        "state_dir": str(plan.state_dir), "master_name": MASTER_NAME,
        "ports": {"balancer": ports.balancer, "nodes": list(ports.nodes),
                  "primary": ports.primary, "replica": ports.replica,
                  "sentinels": list(ports.sentinels)},
        "api_key": plan.api_key, "admin_password": plan.admin_password,
        "token": make_token(plan.hmac_secret, "demo", ttl=24 * 3600),
    }


def _start_redis(plan: ClusterPlan, launcher: _Launcher, redis: str) -> None:
    ports = plan.ports
    for name, port, conf in (("redis-primary", ports.primary, plan.redis_conf(ports.primary)),
                             ("redis-replica", ports.replica,
                              plan.redis_conf(ports.replica, replica_of=ports.primary))):
        path = plan.dir_of(f"redis-{port}") / "redis.conf"
        path.write_text(conf)
        proc = launcher.spawn(name, [redis, str(path)], expect=f":{port}")
        _until(f"{name} on {port}", partial(_answers_ping, port), START_TIMEOUT, proc,
               plan.dir_of(f"redis-{port}") / "redis.log")
    _until("replica linked to the primary",
           lambda: "master_link_status:up" in _redis_info(ports.replica, "INFO", "replication"),
           START_TIMEOUT, log=plan.dir_of(f"redis-{ports.replica}") / "redis.log")
    for index, port in enumerate(ports.sentinels, 1):
        path = plan.dir_of(f"sentinel-{port}") / "sentinel.conf"
        path.write_text(plan.sentinel_conf(port))
        proc = launcher.spawn(f"sentinel-{index}", [redis, str(path), "--sentinel"],
                              expect=f":{port}")
        # Ready for a failover once it has seen the replica through the primary's INFO.
        _until(f"sentinel-{index} sees the replica",
               partial(_sees_replica, port, ports.replica), START_TIMEOUT, proc,
               plan.dir_of(f"sentinel-{port}") / "sentinel.log")


def node_env() -> dict[str, str]:
    """A node's environment: this one without ``CHORUS_*`` (only its file configures it),
    with the source tree importable."""
    # Works from a source tree as well as from an installed package: the directory that
    # holds the ``broker`` package (not ``broker/`` itself, whose ``types.py`` would
    # shadow the standard library's ``types``).
    source_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    return {k: v for k, v in env.items() if not k.startswith("CHORUS_")}


def _start_nodes(plan: ClusterPlan, launcher: _Launcher) -> None:
    env = node_env()
    started = []
    for index, port in enumerate(plan.ports.nodes, 1):
        path = plan.state_dir / f"node-{index}.yaml"
        path.write_text(yaml.safe_dump(plan.node_config(index), sort_keys=False))
        path.chmod(0o600)
        argv = [sys.executable, "-m", "broker", "serve", "--config", str(path)]
        started.append((index, port, launcher.spawn(f"node-{index}", argv, str(path), env)))
    for index, port, proc in started:  # started together, awaited together: faster
        _until(f"node-{index} ready on {port}",
               partial(_http_ok, f"http://127.0.0.1:{port}/ready"), START_TIMEOUT, proc,
               launcher.log(f"node-{index}"))


def _start_nginx(plan: ClusterPlan, launcher: _Launcher, nginx: str) -> None:
    root = plan.dir_of("nginx")
    conf = root / "nginx.conf"
    conf.write_text(plan.nginx_conf())
    if os.geteuid() == 0:  # workers drop to "nobody": let them use their temp dirs
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / "tmp" / kind).mkdir(exist_ok=True)
            shutil.chown(root / "tmp" / kind, "nobody")
    argv = [nginx, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]
    proc = launcher.spawn("nginx", argv, expect=str(conf))
    port = plan.ports.balancer
    _until(f"nginx on {port}", partial(_http_ok, f"http://127.0.0.1:{port}/health"),
           START_TIMEOUT, proc, root / "error.log")


# -- stopping -------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, session id) of ``pid``; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[3])


def _alive(pid: int) -> bool:
    with_stat = _proc_stat(pid)
    return with_stat is not None and with_stat[0] not in "ZX"


def _ours(entry: dict[str, Any]) -> bool:
    """The pid still runs what ``up`` started (its command line shows ``expect``)."""
    try:
        cmdline = Path(f"/proc/{entry['pid']}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return str(entry["expect"]).encode() in cmdline


def leftover_processes(state: dict[str, Any]) -> list[int]:
    """Live (non-zombie) processes in the sessions of the recorded processes."""
    sessions = {int(entry["pid"]) for entry in state.get("processes", [])}
    found = []
    for path in Path("/proc").iterdir():
        if path.name.isdigit():
            stat = _proc_stat(int(path.name))
            if stat is not None and stat[1] in sessions and stat[0] not in "ZX":
                found.append(int(path.name))
    return sorted(found)


def _reap(pid: int) -> None:
    """Collect our own child's exit status, when ``up`` ran in this process."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def cluster_down(state_dir: Path, *, quiet: bool = False) -> list[str]:
    """Stop every recorded process (nginx first, Redis last); returns their names.

    Nodes get SIGTERM and drain; whatever is left after ``STOP_TIMEOUT`` is killed.
    Error handling: ClusterError when there is no state (nothing is up) or processes
    survive SIGKILL."""
    path = state_dir / STATE_FILE
    if not path.exists():
        raise ClusterError(f"no cluster state in {state_dir}: nothing to stop")
    state = json.loads(path.read_text())
    entries = [e for e in reversed(state["processes"]) if _ours(e)]
    for entry in entries:
        with_signal = signal.SIGQUIT if entry["name"] == "nginx" else signal.SIGTERM
        os.kill(entry["pid"], with_signal)
        if not quiet:
            print(f"stopping {entry['name']} (pid {entry['pid']})", file=sys.stderr)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and leftover_processes(state):
        for entry in entries:
            _reap(entry["pid"])
        time.sleep(0.05)  # other processes exiting: nothing to await
    for pid in leftover_processes(state):
        os.kill(pid, signal.SIGKILL)
    _until("every process gone", lambda: not leftover_processes(state), 5.0)
    for entry in entries:
        _reap(entry["pid"])
    path.unlink()
    return [e["name"] for e in entries]


# -- command line ---------------------------------------------------------------------


def run_cluster(args: argparse.Namespace) -> int:
    """The ``chorus cluster`` handler; exit status 0, or 1 with the error printed."""
    state_dir = Path(args.state_dir).resolve()
    try:
        if args.action == "up":
            state_dir.mkdir(parents=True, exist_ok=True)
            plan = ClusterPlan(state_dir, Ports.layout(args.base_port, args.nodes),
                               insecure=args.insecure)
            print(describe(cluster_up(plan)))
        elif args.action == "restart":
            from broker.devcluster.control import cluster_restart

            entry = cluster_restart(state_dir, args.name or "")
            print(f"chorus cluster: {entry['name']} restarted (pid {entry['pid']})")
        elif args.action == "env":
            from broker.devcluster.control import cluster_env

            print(cluster_env(state_dir))
        elif args.action == "down":
            names = cluster_down(state_dir)
            print(f"chorus cluster: stopped {len(names)} processes")
        else:
            if not (state_dir / STATE_FILE).exists():
                raise ClusterError(f"no cluster state in {state_dir}: nothing is up")
            state = json.loads((state_dir / STATE_FILE).read_text())
            for entry in state["processes"]:
                running = "running" if _alive(entry["pid"]) and _ours(entry) else "GONE"
                print(f"{entry['name']:<14} pid {entry['pid']:<8} {running}")
    except (ClusterError, ValueError, OSError) as error:
        print(f"chorus cluster: {error}", file=sys.stderr)
        return 1
    return 0


def describe(state: dict[str, Any]) -> str:
    """The endpoints, key and token, for people."""
    ports, lb = state["ports"], f"127.0.0.1:{state['ports']['balancer']}"
    nodes = "\n".join(f"  node-{i}          http://127.0.0.1:{p}  (/ready /metrics admin: /)"
                      for i, p in enumerate(ports["nodes"], 1))
    sentinels = ", ".join(f"127.0.0.1:{p}" for p in ports["sentinels"])
    count = len(state["processes"])
    return f"""chorus cluster up ({count} processes, state in {state['state_dir']})
  WebSocket       ws://{lb}/connection/websocket   (nginx, least_conn)
  server API      http://{lb}/api/<method>   X-API-Key: {state['api_key']}
{nodes}
  Redis           primary 127.0.0.1:{ports['primary']}, replica 127.0.0.1:{ports['replica']}
  Sentinels       {sentinels}  (master name {state['master_name']})
  admin password  {state['admin_password']}
  token (user "demo", 24 h):
    {state['token']}
try:
  curl -X POST http://{lb}/api/publish -H "X-API-Key: {state['api_key']}" \\
       -d '{{"channel": "news", "data": {{"text": "hello"}}}}'
  redis-cli -p {ports['sentinels'][0]} SENTINEL FAILOVER {state['master_name']}
stop: chorus cluster down --state-dir {state['state_dir']}"""
