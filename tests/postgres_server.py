"""Start a throwaway real PostgreSQL cluster for tests and benches.

``postgres_server()`` runs ``initdb`` and ``pg_ctl`` from Debian's ``postgresql``
package (on PATH, else the newest ``/usr/lib/postgresql/*/bin``) on a free port (never
5432: the machine's own server is never touched), listening on 127.0.0.1 only, with no
Unix socket, trust authentication and durability off (fsync) for speed. PostgreSQL
refuses to run as root, so as root the cluster runs as an unprivileged system user:
``chorus-test`` (created with ``useradd`` when absent), else ``nobody``; its data
directory lives in a temp dir that user owns. It yields a ``PostgresServer`` whose
``dsn`` clients use (database ``postgres``, superuser ``postgres``); on exit the
cluster is stopped and the temp dir removed.

Use it from a fixture::

    @pytest.fixture(scope="session")
    def postgres_dsn() -> Iterator[str]:
        with postgres_server() as server:
            yield server.dsn

Error handling: ``PostgresUnavailable`` when the binaries are missing (fixtures turn it
into a skip; ``scripts/setup`` with CHORUS_SETUP_TESTS=1 installs them); RuntimeError
with the server's log when it does not start.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "PostgresUnavailable", "pg_binary", "postgres_server"]

DEFAULT_POSTGRES_PORT = 5432  # the machine's own server: never used by tests
TEST_USER = "chorus-test"


class PostgresUnavailable(RuntimeError):
    """initdb/pg_ctl are not installed."""


@dataclass(frozen=True, slots=True)
class PostgresServer:
    port: int
    datadir: Path

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def pg_binary(name: str) -> str:
    """The path of PostgreSQL program ``name`` (initdb, pg_ctl, postgres...)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if candidates:
        return candidates[-1]
    raise PostgresUnavailable(f"{name} not found on PATH or in /usr/lib/postgresql/*/bin "
                              "(install Debian's postgresql package: scripts/setup with "
                              "CHORUS_SETUP_TESTS=1)")


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != DEFAULT_POSTGRES_PORT:
            return port


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run PostgreSQL as when we are root (None: as ourselves)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(TEST_USER)
    useradd = shutil.which("useradd")
    if useradd is not None:
        made = subprocess.run([useradd, "--system", "--no-create-home", "--shell",
                               "/usr/sbin/nologin", TEST_USER], capture_output=True, check=False)
        if made.returncode == 0:
            return pwd.getpwnam(TEST_USER)
    return pwd.getpwnam("nobody")


def _run(args: list[str], user: pwd.struct_passwd | None, cwd: str,
         timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    options: dict[str, Any] = {}
    if user is not None:
        options = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, **options)


@contextlib.contextmanager
def postgres_server(*, attempts: int = 3) -> Iterator[PostgresServer]:
    """Run a private PostgreSQL cluster for the duration of the ``with`` block.

    Resource handling: ``pg_ctl stop -m immediate`` and the temp dir removed on exit,
    also when the body raises.
    """
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    user = _run_as()
    with tempfile.TemporaryDirectory(prefix="chorus-pg-") as tmp:
        if user is not None:
            os.chown(tmp, user.pw_uid, user.pw_gid)
        datadir, logfile = Path(tmp) / "data", Path(tmp) / "postgres.log"
        made = _run([initdb, "-D", str(datadir), "-U", "postgres", "--auth=trust",
                     "--no-locale", "-E", "UTF8", "--no-sync"], user, tmp)
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{made.stdout}\n{made.stderr}")
        for _ in range(attempts):
            port = _free_port()
            options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                       "-c max_connections=200")
            started = _run([pg_ctl, "start", "-w", "-t", "30", "-D", str(datadir),
                            "-l", str(logfile), "-o", options], user, tmp)
            if started.returncode == 0:
                break
        else:
            log = logfile.read_text(errors="replace")[-3000:] if logfile.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start:\n{started.stderr}\n{log}")
        try:
            yield PostgresServer(port, datadir)
        finally:
            _run([pg_ctl, "stop", "-m", "immediate", "-w", "-D", str(datadir)], user, tmp)
