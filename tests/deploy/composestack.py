"""deploy/compose.yaml brought up for real, under the test-only override.

``Stack`` runs ``docker compose -f deploy/compose.yaml -f tests/deploy/compose.test.yaml
-p chorus-deploy-test`` with fresh secrets and free loopback ports in its environment
(never deploy/.env, never the standard ports). Every address the tests use is on
127.0.0.1: the ports the override publishes there.

- ``build()`` builds the Chorus image (deploy/Dockerfile, unchanged) through compose.
- ``up()`` starts the stack (``up -d --wait``) and returns the seconds from the start of
  ``up`` until every node answered ``/ready`` with 200 on its published port.
- ``down()`` removes containers, networks and volumes (``down -v``); ``leftovers()``
  lists what of the project is still there.

Error handling: a failing compose command raises ``RuntimeError`` with its output and
the tail of every service's log, so a broken stack explains itself.
"""

from __future__ import annotations

import os
import resource
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.dockerhost import docker
from tests.functional.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
PROJECT = "chorus-deploy-test"
NODES = ("chorus-1", "chorus-2", "chorus-3")
WANTED_NOFILE = 1048576  # what deploy/compose.yaml asks for


def available_nofile() -> int:
    """The open-file limit containers can get here: 1048576 where root may raise its hard
    limit (CAP_SYS_RESOURCE), else the hard limit this process already has."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= WANTED_NOFILE:
        return WANTED_NOFILE
    probe = subprocess.run(
        ["python3", "-c", "import resource as r; "
         f"r.setrlimit(r.RLIMIT_NOFILE, ({WANTED_NOFILE}, {WANTED_NOFILE}))"],
        capture_output=True, check=False)
    return WANTED_NOFILE if probe.returncode == 0 else hard


@dataclass
class Stack:
    """One test run of the compose project (see the module docstring)."""

    secrets: dict[str, str] = field(default_factory=lambda: {
        name: secrets.token_urlsafe(24) for name in (
            "CHORUS_CLIENT_TOKEN_HMAC_SECRET_KEY", "CHORUS_HTTP_API_KEY",
            "CHORUS_ADMIN_PASSWORD", "CHORUS_ADMIN_SECRET", "CHORUS_PROMETHEUS_TOKEN")})
    ports: dict[str, int] = field(default_factory=lambda: {
        name: free_port() for name in ("NGINX", "PROMETHEUS", "NODE1", "NODE2", "NODE3")})
    nofile: int = field(default_factory=available_nofile)
    volumes_before: set[str] = field(default_factory=set)  # every volume before the run

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHORUS_")}
        env.update(self.secrets)
        env.update({f"CHORUS_TEST_{name}_PORT": str(port) for name, port in self.ports.items()})
        env["CHORUS_TEST_NOFILE"] = str(self.nofile)
        env["COMPOSE_BAKE"] = "false"  # no buildx here: compose's own BuildKit client builds
        return env

    @property
    def api_key(self) -> str:
        return self.secrets["CHORUS_HTTP_API_KEY"]

    def node_url(self, index: int) -> str:
        """http://127.0.0.1:<port> of chorus-<index+1> (published by the override)."""
        return f"http://127.0.0.1:{self.ports[f'NODE{index + 1}']}"

    @property
    def nginx_ws(self) -> str:
        return f"ws://127.0.0.1:{self.ports['NGINX']}/connection/websocket"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['PROMETHEUS']}"

    def compose(self, *args: str, check: bool = True, timeout: float = 600,
                ) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "-f", "deploy/compose.yaml",
                   "-f", "tests/deploy/compose.test.yaml", "-p", PROJECT, *args]
        done = subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[2:])} exited {done.returncode}:\n"
                               f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{self.logs()}")
        return done

    def logs(self, tail: int = 15) -> str:
        done = subprocess.run(["docker", "compose", "-f", "deploy/compose.yaml", "-f",
                               "tests/deploy/compose.test.yaml", "-p", PROJECT, "logs",
                               "--no-color", "--tail", str(tail)], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)
        return done.stdout[-12000:]

    def container(self, service: str) -> str:
        """The id of the (only) container of ``service``, running or not."""
        found = self.compose("ps", "-a", "-q", service).stdout.split()
        assert len(found) == 1, f"{service}: containers {found}"
        return found[0]

    def exec(self, service: str, *command: str) -> str:
        return self.compose("exec", "-T", service, *command, timeout=60).stdout

    def build(self) -> float:
        started = time.monotonic()
        self.compose("build", *NODES, timeout=1800)
        return time.monotonic() - started

    def up(self, timeout: float = 300) -> float:
        """``up -d --wait``; seconds from its start until every node's /ready said 200.

        Docker's engine sometimes loses a container it has just started ("No such
        container" from ``--wait``, seen once in 12 runs here, never reproduced alone);
        that one daemon-side error is answered by tearing the stack down and bringing it
        up once more. Any other failure, or a second one, fails the test."""
        try:
            return self._up(timeout)
        except RuntimeError as error:
            if "No such container" not in str(error):
                raise
            subprocess.run(["docker", "compose", "-f", "deploy/compose.yaml", "-f",
                            "tests/deploy/compose.test.yaml", "-p", PROJECT, "down", "-v"],
                           cwd=REPO, env=self.env, capture_output=True, timeout=120)
            return self._up(timeout)

    def _up(self, timeout: float) -> float:
        started = time.monotonic()
        command = ["docker", "compose", "-f", "deploy/compose.yaml", "-f",
                   "tests/deploy/compose.test.yaml", "-p", PROJECT, "up", "-d", "--wait"]
        process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        ready: float | None = None
        while ready is None and process.poll() is None:
            if all(self.ready(i) for i in range(len(NODES))):
                ready = time.monotonic() - started
            elif time.monotonic() - started > timeout:
                process.kill()
            else:
                time.sleep(0.2)  # containers starting in another process: nothing to await
        output, _ = process.communicate(timeout=timeout)
        if process.returncode != 0:
            raise RuntimeError(f"compose up exited {process.returncode}:\n{output[-4000:]}\n"
                               f"{self.logs()}")
        if ready is None and all(self.ready(i) for i in range(len(NODES))):
            ready = time.monotonic() - started
        assert ready is not None, f"not every node became ready:\n{self.logs()}"
        return ready

    def ready(self, index: int) -> bool:
        try:
            with urllib.request.urlopen(f"{self.node_url(index)}/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def down(self) -> float:
        started = time.monotonic()
        self.compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=300)
        return time.monotonic() - started

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes still labelled with this compose project."""
        label = f"label=com.docker.compose.project={PROJECT}"
        return {kind: docker(*command, "--filter", label, "-q").stdout.split()
                for kind, command in (("containers", ("ps", "-a")),
                                      ("networks", ("network", "ls")),
                                      ("volumes", ("volume", "ls")))}


def volumes() -> set[str]:
    """Every volume name on the engine (anonymous ones included)."""
    return set(docker("volume", "ls", "-q").stdout.split())
