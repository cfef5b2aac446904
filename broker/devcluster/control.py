"""``chorus cluster restart NAME``: stop one process of the local cluster and start it again;
``chorus cluster env``: the runbooks' environment variables for this cluster.

What systemd, Docker or Kubernetes do for a production process, for the loopback cluster:
the runbooks (``docs/runbooks/``) use it where an operator would run ``systemctl restart``
— a node after a drain, a Redis server that was lost. The process is started again with
the command line ``up`` recorded (a node with its config file, a Redis server with its
own ``redis.conf``: a lost primary returns as itself, and Sentinel turns it into a
replica), in its own session, and its new pid replaces the old one in ``state.json``, so
``down`` stops it as before.

Guarantees: a running process is signalled only while its command line still shows what
``up`` started (as ``down``), gets SIGTERM (nginx SIGQUIT) so a node drains, and is
killed after ``STOP_TIMEOUT`` with anything left in its session. ``cluster_restart``
returns once the new process answers (a node: ``/ready`` 200; Redis and Sentinel: PING;
nginx: ``/health``).

Error handling: ClusterError for an unknown name (the known ones are listed), a state
written before processes recorded their command line, or a process that does not come
back (the message names its log).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

from broker.devcluster.launcher import (
    START_TIMEOUT,
    STATE_FILE,
    STOP_TIMEOUT,
    ClusterError,
    _alive,
    _answers_ping,
    _http_ok,
    _ours,
    _reap,
    _until,
    _write_state,
    leftover_processes,
    node_env,
)

__all__ = ["cluster_env", "cluster_restart"]


def _answers(state: dict[str, Any], name: str) -> Any:
    """The check that the process ``name`` serves again."""
    ports = state["ports"]
    kind, _, number = name.rpartition("-")
    if name.startswith("node-"):
        port = ports["nodes"][int(name.split("-")[1]) - 1]
        return partial(_http_ok, f"http://127.0.0.1:{port}/ready")
    if name == "nginx":
        return partial(_http_ok, f"http://127.0.0.1:{ports['balancer']}/health")
    if kind == "sentinel":
        return partial(_answers_ping, ports["sentinels"][int(number) - 1])
    return partial(_answers_ping, ports["primary" if name == "redis-primary" else "replica"])


def _stop(entry: dict[str, Any]) -> None:
    """SIGTERM (nginx: SIGQUIT) the process if it still runs what ``up`` started; wait for
    its whole session to be gone, killing what is left after ``STOP_TIMEOUT``."""
    alone = {"processes": [entry]}
    if _alive(entry["pid"]) and _ours(entry):
        os.kill(entry["pid"], signal.SIGQUIT if entry["name"] == "nginx" else signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while leftover_processes(alone) and time.monotonic() < deadline:
        _reap(entry["pid"])
        time.sleep(0.05)  # another process exiting: nothing to await
    for pid in leftover_processes(alone):
        os.kill(pid, signal.SIGKILL)
    _until(f"{entry['name']} gone", lambda: not leftover_processes(alone), 5.0)


def cluster_restart(state_dir: Path, name: str) -> dict[str, Any]:
    """Stop ``name`` if it runs, start it again, wait until it answers; returns its entry.

    Error handling: ClusterError (see the module docstring)."""
    path = state_dir / STATE_FILE
    if not path.exists():
        raise ClusterError(f"no cluster state in {state_dir}: nothing is up")
    state: dict[str, Any] = json.loads(path.read_text())
    entries = {e["name"]: e for e in state["processes"]}
    entry = entries.get(name)
    if entry is None:
        raise ClusterError(f"no process {name!r} in this cluster; known: {', '.join(entries)}")
    if "argv" not in entry:
        raise ClusterError("this cluster was started by an older Chorus that did not record "
                           "command lines: `cluster down` and `up` again")
    _stop(entry)
    log = Path(entry["log"])
    env = node_env() if name.startswith("node-") else None
    with log.open("ab") as out:
        process = subprocess.Popen(entry["argv"], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env=env, cwd=state_dir)
    entry["pid"] = process.pid
    _write_state(state_dir, state)
    _until(f"{name} answering again", _answers(state, name), START_TIMEOUT, process, log)
    return dict(entry)


def cluster_env(state_dir: Path) -> str:
    """``export`` lines setting the variables ``docs/runbooks/README.md`` describes, for
    this cluster (``eval "$(chorus cluster env)"``). They hold its secrets.

    Error handling: ClusterError when nothing is up."""
    import yaml

    path = state_dir / STATE_FILE
    if not path.exists():
        raise ClusterError(f"no cluster state in {state_dir}: nothing is up")
    state: dict[str, Any] = json.loads(path.read_text())
    config = state_dir / "node-1.yaml"
    secret = yaml.safe_load(config.read_text())["admin"]["secret"]
    ports = state["ports"]
    nodes = " ".join(f"http://127.0.0.1:{p}" for p in ports["nodes"])
    values = {
        "CHORUS_ADMIN": f"http://127.0.0.1:{ports['nodes'][0]}",
        "CHORUS_ADMIN_TOKEN": secret,
        "CHORUS_NODES": nodes,
        "CHORUS_API": f"http://127.0.0.1:{ports['balancer']}",
        "CHORUS_API_KEY": state["api_key"],
        "CHORUS_CONFIG": str(config),
        "REDIS_SENTINEL": f"-h 127.0.0.1 -p {ports['sentinels'][0]}",
        "REDIS_MASTER": state["master_name"],
        "CHORUS_CLUSTER_DIR": str(state_dir),
    }
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in values.items())
