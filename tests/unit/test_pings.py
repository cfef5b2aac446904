"""The ping wheel: one slot per second, a ping per interval, a pong check per timeout."""

from __future__ import annotations

from broker.connection.pings import PingWheel


class Conn:
    def __init__(self, name: str, expects_pong: bool = True) -> None:
        self.name = name
        self.awaiting_pong = False
        self.expects_pong = expects_pong
        self.pings = 0

    def send_ping(self) -> None:
        self.pings += 1

    def pong(self) -> None:
        self.awaiting_pong = False


def test_each_connection_is_pinged_once_per_interval_first_after_a_full_one() -> None:
    wheel = PingWheel(interval=5, pong_timeout=0, on_no_pong=lambda c: None)
    conn = Conn("a")
    wheel.add(conn)
    for _ in range(4):
        wheel.tick()
    assert conn.pings == 0
    wheel.tick()
    assert conn.pings == 1
    for _ in range(10):
        wheel.tick()
    assert conn.pings == 3


def test_missing_pong_is_reported_pong_timeout_after_the_ping() -> None:
    dead: list[str] = []
    wheel = PingWheel(interval=10, pong_timeout=3, on_no_pong=lambda c: dead.append(c.name))
    alive, silent = Conn("alive"), Conn("silent")
    wheel.add(alive)
    wheel.add(silent)
    for _ in range(10):
        wheel.tick()
    assert alive.pings == silent.pings == 1
    alive.pong()
    for _ in range(2):
        wheel.tick()
    assert dead == []
    wheel.tick()
    assert dead == ["silent"]


def test_removed_connections_are_neither_pinged_nor_failed() -> None:
    dead: list[str] = []
    wheel = PingWheel(interval=3, pong_timeout=1, on_no_pong=lambda c: dead.append(c.name))
    conn = Conn("gone")
    wheel.add(conn)
    wheel.remove(conn)
    for _ in range(9):
        wheel.tick()
    assert conn.pings == 0 and dead == [] and len(wheel) == 0


def test_a_unidirectional_connection_is_pinged_but_never_held_to_a_pong() -> None:
    lost: list[Conn] = []
    wheel = PingWheel(interval=2, pong_timeout=1, on_no_pong=lost.append)
    uni, bidi = Conn("uni", expects_pong=False), Conn("bidi")
    wheel.add(uni)
    wheel.add(bidi)
    for _ in range(6):
        wheel.tick()
    assert uni.pings == bidi.pings == 3
    assert lost and all(conn is bidi for conn in lost), "only the bidi client owes pongs"
