"""Loopback ports for the servers tests start, reserved so that nothing else takes them.

Why not "bind port 0, close it, hand the number to the server": port 0 is served from
the kernel's ephemeral range, the range every outbound connection takes its local port
from. Between the close and the server's bind, any ``connect()`` on the machine (or a
parallel test run making the same pick) can take the number; a client reconnecting to a
stopped server's ephemeral port can even connect to itself (TCP simultaneous open) and
hold it; and a readiness probe then talks to whoever holds the port, not to our server.

``reserve_port(offsets)`` gives a base port P such that every ``P + offset`` is

- outside the ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``), so no
  outbound connection takes it while it is reserved, also between a stop and a restart;
- reserved by no other process following this protocol: an ``flock`` on
  ``<tmp>/chorus-test-ports/<port>``, held until ``release()`` (or until the process
  ends: the kernel drops the lock, so nothing goes stale after a crash);
- bindable on 127.0.0.1 right now (a service outside the protocol may hold it).

Redis Cluster asks for ``offsets=(0, 10000)``: its bus port is the port + 10000.

Error handling: ``RuntimeError`` when no candidate port is left (every one is reserved
or in use). A server may still lose a race against a process outside the protocol;
starters detect that (the server exits, or another process answers) and reserve anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PortReservation", "reserve_port", "reserved_port"]

LOWEST = 20000  # below: well-known services and `chorus cluster up`'s default 17400..
HIGHEST = 65535
_LOCK_DIR = Path(tempfile.gettempdir()) / "chorus-test-ports"


def _ephemeral_range() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)  # the Linux default


def _candidates(offsets: tuple[int, ...]) -> list[int]:
    """Base ports whose every offset is in [LOWEST, HIGHEST] and not ephemeral; when the
    ephemeral range leaves no room, any port (the flock and bind checks still apply)."""
    ephemeral = _ephemeral_range()
    top = HIGHEST - max(offsets)
    ports = [p for p in range(LOWEST, top + 1)
             if all(p + o not in ephemeral for o in offsets)]
    if not ports:
        ports = list(range(LOWEST, top + 1))
    random.shuffle(ports)  # concurrent runs rarely contend for the same lock file
    return ports


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        # The servers set SO_REUSEADDR too: a TIME_WAIT left by an earlier user is no obstacle.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _lock(port: int) -> int | None:
    """An open fd holding the exclusive lock of ``port``; None if another holds it."""
    _LOCK_DIR.mkdir(exist_ok=True)
    fd = os.open(_LOCK_DIR / str(port), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class PortReservation:
    """Ports ``port + offset`` held for this process until ``release()``."""

    def __init__(self, port: int, fds: list[int]) -> None:
        self.port = port
        self._fds = fds

    def release(self) -> None:
        """Give the ports back (idempotent). The lock files stay: deleting a lock file
        races with a process opening it, and an unlocked file reserves nothing."""
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)


def reserve_port(offsets: tuple[int, ...] = (0,)) -> PortReservation:
    """A reservation of ``P + offset`` for every offset (see the module docstring)."""
    for port in _candidates(offsets):
        fds: list[int] = []
        for offset in offsets:
            fd = _lock(port + offset)
            if fd is None:
                break
            fds.append(fd)
        else:
            if all(_bindable(port + o) for o in offsets):
                return PortReservation(port, fds)
        for fd in fds:
            os.close(fd)
    raise RuntimeError(f"no free test port left for offsets {offsets} (all reserved or in use)")


@contextlib.contextmanager
def reserved_port(offsets: tuple[int, ...] = (0,)) -> Iterator[int]:
    """``reserve_port`` for the duration of a ``with`` block; yields the base port."""
    reservation = reserve_port(offsets)
    try:
        yield reservation.port
    finally:
        reservation.release()
