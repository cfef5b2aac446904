"""The Docker engine for the container tests: find it, or start Debian's ``dockerd``.

``docker_daemon()`` yields once ``docker info`` answers. When no daemon runs and this is
root with ``dockerd`` installed (``scripts/setup-docker``), it starts one (log in the cache
dir) and stops it again on exit; a daemon that was already running is left alone.

Error handling: a missing ``docker``/``dockerd``/``docker compose`` raises
``DockerMissing`` (a setup fault: the tests fail and name ``scripts/setup-docker``); a
daemon that cannot start on this kernel raises ``DockerCannotRun`` with dockerd's own
words (the only case in which the tests skip).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

CACHE = Path(os.environ.get("CHORUS_DEPLOY_TEST_CACHE", "/var/cache/chorus-deploy-test"))


class DockerMissing(RuntimeError):
    """A tool the container tests need is not installed."""


class DockerCannotRun(RuntimeError):
    """dockerd is installed but cannot run on this machine."""


def docker(*args: str, check: bool = True, timeout: float = 600,
           input: str | None = None, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS``; on failure (``check``) raise with the command's output."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          input=input, env=env, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} exited {done.returncode}:\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _answers() -> bool:
    return docker("info", "--format", "{{.ServerVersion}}", check=False,
                  timeout=30).returncode == 0


def _require(binaries: Sequence[str]) -> None:
    for binary in binaries:
        if shutil.which(binary) is None and shutil.which(binary, path="/usr/sbin") is None:
            raise DockerMissing(f"{binary} is not installed: run scripts/setup-docker")
    if docker("compose", "version", check=False, timeout=30).returncode != 0:
        raise DockerMissing("the docker compose v2 plugin is missing: run scripts/setup-docker")


def _why(log_path: Path) -> str:
    """The end of dockerd's log, led by its panic line, with a hint for a known state."""
    lines = log_path.read_text(errors="replace").splitlines()
    panics = [line for line in lines[-80:] if line.startswith("panic:")]
    why = "\n".join(panics[-1:] + lines[-15:])
    if "reservePools" in why:
        # docker 20.10 panics at start when its network store holds a network without
        # IPAM data, left by a daemon killed while creating one (seen here when two test
        # runs shared a daemon); moving the store aside lets it recreate the defaults.
        why += ("\nhint: dockerd's network store is damaged: move aside "
                "/var/lib/docker/network/files/local-kv.db and retry")
    return why


@contextlib.contextmanager
def docker_daemon(start_timeout: float = 60) -> Iterator[None]:
    """A running Docker engine for the block (see the module docstring)."""
    _require(["docker", "debootstrap"])
    if _answers():
        yield
        return
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin")
    if dockerd is None:
        raise DockerMissing("dockerd is not installed: run scripts/setup-docker")
    if os.geteuid() != 0:
        raise DockerCannotRun("no Docker engine is running and only root can start dockerd")
    CACHE.mkdir(parents=True, exist_ok=True)
    log_path = CACHE / "dockerd.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + start_timeout
        while not _answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise DockerCannotRun("dockerd could not start here:\n" + _why(log_path))
            time.sleep(0.5)  # a daemon starting in another process: nothing to await
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
