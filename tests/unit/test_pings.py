"""The ping wheel: one slot per second, a ping per interval, a pong check per timeout;
the deadline wheel of sockets without a connect yet."""

from __future__ import annotations

from broker.connection.pings import DeadlineWheel, PingWheel


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


class Pending:
    def __init__(self) -> None:
        self.deadline_slot = -1


def test_a_deadline_comes_once_never_before_the_delay_at_most_one_tick_after() -> None:
    due: list[Pending] = []
    wheel = DeadlineWheel(delay=3, on_due=due.append)
    wheel.tick()  # a tick just happened: the worst case for "never early"
    member = Pending()
    wheel.add(member)
    assert member.deadline_slot >= 0 and len(wheel) == 1
    for _ in range(3):  # 3 ticks may take as little as 2s of real time since the add
        wheel.tick()
    assert due == []
    wheel.tick()  # >= 3s since the add
    assert due == [member] and member.deadline_slot == -1 and len(wheel) == 0
    for _ in range(10):
        wheel.tick()
    assert due == [member]


def test_a_removed_member_never_comes_due_and_removal_is_idempotent() -> None:
    due: list[Pending] = []
    wheel = DeadlineWheel(delay=0.2, on_due=due.append)
    kept, removed = Pending(), Pending()
    wheel.add(kept)
    wheel.add(removed)
    wheel.remove(removed)
    wheel.remove(removed)
    assert removed.deadline_slot == -1
    for _ in range(wheel.size):
        wheel.tick()
    assert due == [kept]
    assert wheel.resolution == 0.2
