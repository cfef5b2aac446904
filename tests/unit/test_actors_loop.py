"""The loop bridge: effects, timers, ask, and shutdown with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from actors_helpers import Events, Worker, live_thespian_actors, make_runtime, worker

from actors import (
    Actor,
    ActorNotFound,
    AskTimeout,
    ChildSpec,
    Runtime,
    TimerHandle,
    supervisor,
)
from actors.testing import ManualClock, Probe, ProbeActor
from tests.waiting import wait_until


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def runtime(clock: ManualClock) -> AsyncIterator[Runtime]:
    rt = make_runtime(clock)
    yield rt
    await rt.shutdown(0.2)


def one(spec: ChildSpec) -> ChildSpec:
    return supervisor("root", [spec])


# -- effects ------------------------------------------------------------------------------------
class Effects(Actor):
    """Starts effects on request and records their outcomes (into a Probe) from inside."""

    def __init__(self, probe: Probe, gate: asyncio.Event | None = None) -> None:
        self.probe = probe
        self.gate = gate

    async def work(self, value: Any) -> Any:
        await asyncio.sleep(0)
        if isinstance(value, Exception):
            raise value
        return value

    async def wait_forever(self) -> None:
        try:
            assert self.gate is not None
            await self.gate.wait()
        except asyncio.CancelledError:
            self.probe.note(("cancelled", self.id))
            raise

    def receive(self, message: Any) -> Any:
        what, arg = message
        if what == "handled":
            self.run_effect(self.work(arg), lambda r: self.probe.note(("result", r)),
                            lambda e: self.probe.note(("error", repr(e))))
        elif what == "unhandled":
            self.run_effect(self.work(arg), lambda r: self.probe.note(("result", r)))
        elif what == "forever":
            self.run_effect(self.wait_forever(), lambda r: self.probe.note(("result", r)),
                            lambda e: self.probe.note(("error", repr(e))))
        elif what == "stop":
            self.stop()


async def test_effect_result_comes_back_to_the_actor(runtime: Runtime) -> None:
    probe = Probe()
    runtime.start(one(ChildSpec("e", lambda: Effects(probe))))
    runtime.tell("root/e", ("handled", 42))
    await probe.wait_for(lambda m: ("result", 42) in m)
    assert runtime.actor("root/e")["messages"] == 2  # the request and the effect's result


async def test_effect_failure_goes_to_on_error_and_the_actor_lives(runtime: Runtime) -> None:
    probe = Probe()
    runtime.start(one(ChildSpec("e", lambda: Effects(probe))))
    runtime.tell("root/e", ("handled", ValueError("io down")))
    await probe.wait_for(lambda m: ("error", "ValueError('io down')") in m)
    snapshot = runtime.actor("root/e")
    assert snapshot["restarts"] == 0 and snapshot["last_failure"] is None


async def test_effect_failure_without_on_error_crashes_the_actor(runtime: Runtime) -> None:
    probe = Probe()
    starts: Events = []

    class Tracked(Effects):
        def on_start(self) -> None:
            starts.append(("start", self.id))

    runtime.start(one(ChildSpec("e", lambda: Tracked(probe))))
    runtime.tell("root/e", ("unhandled", ValueError("io down")))
    await asyncio.wait_for(_until(lambda: len(starts) == 2), 2.0)
    snapshot = runtime.actor("root/e")
    assert snapshot["restarts"] == 1
    assert snapshot["last_failure"]["reason"] == "ValueError('io down')"
    assert "in work" in snapshot["last_failure"]["traceback"]  # the coroutine's own frame
    assert not any(m[0] == "result" for m in probe.messages)


async def test_stopping_the_actor_cancels_its_effects_and_no_callback_runs(
    runtime: Runtime,
) -> None:
    probe = Probe()
    gate = asyncio.Event()
    runtime.start(one(ChildSpec("e", lambda: Effects(probe, gate))))
    runtime.tell("root/e", ("forever", None))
    await asyncio.sleep(0)  # let the coroutine start and block on the gate
    runtime.stop_actor("root/e", force=True)
    await probe.wait_for(lambda m: ("cancelled", "root/e") in m)
    gate.set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert [m for m in probe.messages if m[0] in ("result", "error")] == []
    assert "root/e" not in runtime.registry


async def _until(predicate: Any) -> None:
    await wait_until(predicate, "the effect's outcome", interval=0.001)


# -- timers (ManualClock) ----------------------------------------------------------------------
class Timed(Actor):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.handles: dict[str, TimerHandle] = {}

    def receive(self, message: Any) -> Any:
        match message:
            case ("once", delay):
                self.handles["once"] = self.start_timer(delay, "tick")
            case ("every", delay):
                self.handles["every"] = self.start_timer(delay, "tock", repeat=True)
            case ("cancel", name):
                self.handles[name].cancel()
            case ("active", name):
                return self.handles[name].active
            case "crash":
                raise RuntimeError("boom")
            case _:
                self.probe.note(message)
        return None


async def test_timer_fires_once_after_its_delay(clock: ManualClock, runtime: Runtime) -> None:
    probe = Probe()
    runtime.start(one(ChildSpec("t", lambda: Timed(probe))))
    runtime.tell("root/t", ("once", 5.0))
    clock.advance(4.9)
    assert probe.messages == []
    clock.advance(0.1)
    assert probe.messages == ["tick"]
    assert await runtime.ask("root/t", ("active", "once")) is False
    clock.advance(100)
    assert probe.messages == ["tick"]


async def test_cancelled_timer_never_fires(clock: ManualClock, runtime: Runtime) -> None:
    probe = Probe()
    runtime.start(one(ChildSpec("t", lambda: Timed(probe))))
    runtime.tell("root/t", ("once", 5.0))
    assert await runtime.ask("root/t", ("active", "once")) is True
    runtime.tell("root/t", ("cancel", "once"))
    clock.advance(10)
    assert probe.messages == [] and clock.pending == 0


async def test_repeating_timer_fires_every_period_until_cancelled(
    clock: ManualClock, runtime: Runtime
) -> None:
    probe = Probe()
    runtime.start(one(ChildSpec("t", lambda: Timed(probe))))
    runtime.tell("root/t", ("every", 2.0))
    clock.advance(7.0)
    assert probe.messages == ["tock"] * 3
    runtime.tell("root/t", ("cancel", "every"))
    clock.advance(10.0)
    assert probe.messages == ["tock"] * 3


@pytest.mark.parametrize("how", ["stop", "crash"])
async def test_timers_are_dropped_when_the_actor_stops_or_fails(
    clock: ManualClock, runtime: Runtime, how: str
) -> None:
    probe = Probe()
    runtime.start(one(ChildSpec("t", lambda: Timed(probe))))
    runtime.tell("root/t", ("once", 1.0))
    runtime.tell("root/t", ("every", 1.0))
    if how == "stop":
        runtime.stop_actor("root/t", force=True)
    else:
        runtime.tell("root/t", "crash")  # restarted as a fresh instance without timers
    assert clock.pending == 0
    clock.advance(5.0)
    assert probe.messages == []


async def test_timers_on_the_real_loop_clock() -> None:
    rt = Runtime()
    probe = Probe()
    rt.start(one(ChildSpec("t", lambda: Timed(probe))))
    rt.tell("root/t", ("every", 0.005))
    await probe.wait_for(lambda m: len(m) >= 3)
    assert await rt.shutdown(1.0)


# -- ask --------------------------------------------------------------------------------------
class Asked(Actor):
    def __init__(self) -> None:
        self.replies: list[Any] = []

    async def lookup(self, key: str) -> str:
        await asyncio.sleep(0)
        return key.upper()

    def receive(self, message: Any) -> Any:
        match message:
            case ("echo", value):
                return value
            case ("explicit", value):
                self.reply(value)
                return "ignored"
            case ("deferred", key):
                reply = self.defer_reply()
                assert reply is not None
                self.run_effect(self.lookup(key), reply.send, reply.fail)
            case "silent":
                self.defer_reply()  # never answered
            case "raise":
                raise KeyError("no such thing")
        return None


async def test_ask_returns_the_handler_result_or_an_explicit_reply(runtime: Runtime) -> None:
    ref = runtime.start(one(ChildSpec("q", Asked)))
    assert await runtime.ask("root/q", ("echo", 7)) == 7
    assert await runtime.ask("root/q", ("explicit", "x")) == "x"
    assert ref.id == "root"
    assert runtime.actor("root/q")["messages"] == 2


async def test_ask_with_a_reply_deferred_until_an_effect_completes(runtime: Runtime) -> None:
    runtime.start(one(ChildSpec("q", Asked)))
    assert await runtime.ask("root/q", ("deferred", "abc")) == "ABC"


async def test_ask_timeout_raises_without_blocking_the_loop(runtime: Runtime) -> None:
    runtime.start(one(ChildSpec("q", Asked)))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.get_running_loop().create_task(ticker())
    try:
        with pytest.raises(AskTimeout):
            await runtime.ask("root/q", "silent", timeout=0.1)
    finally:
        task.cancel()
    assert ticks >= 5  # other tasks ran while the ask waited
    assert await runtime.ask("root/q", ("echo", 1)) == 1  # the actor is still fine


async def test_ask_propagates_the_handler_exception_and_the_actor_restarts(
    runtime: Runtime,
) -> None:
    runtime.start(one(ChildSpec("q", Asked)))
    with pytest.raises(KeyError, match="no such thing"):
        await runtime.ask("root/q", "raise")
    assert runtime.actor("root/q")["restarts"] == 1


async def test_ask_of_an_unknown_actor_raises_actor_not_found(runtime: Runtime) -> None:
    runtime.start(one(ChildSpec("q", Asked)))
    with pytest.raises(ActorNotFound):
        await runtime.ask("root/nope", ("echo", 1))


async def test_tell_from_inside_a_handler_is_delivered_after_it(runtime: Runtime) -> None:
    probe = Probe()

    class Relay(Actor):
        def receive(self, message: Any) -> Any:
            self.runtime.tell("root/p", ("relayed", message))  # re-entrant: queued
            probe.note(("handled", message))

    runtime.start(supervisor("root", [ChildSpec("p", lambda: ProbeActor(probe)),
                                      ChildSpec("r", Relay)]))
    runtime.tell("root/r", 1)
    assert probe.messages[-2:] == [("handled", 1), ("relayed", 1)]


# -- shutdown -----------------------------------------------------------------------------------
class Stubborn(Worker):
    """Never agrees to stop; keeps an effect running that must be cancelled in the end."""

    def __init__(self, events: Events, probe: Probe) -> None:
        super().__init__(events)
        self.probe = probe

    async def forever(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.probe.note("effect cancelled")
            raise

    def on_start(self) -> None:
        super().on_start()
        self.run_effect(self.forever())

    def on_stop_requested(self, reason: str) -> bool:
        self.events.append(("refuse", self.id))
        return False


async def test_supervisor_kills_an_actor_that_outlives_its_shutdown_timeout(
    clock: ManualClock,
) -> None:
    rt = make_runtime(clock)
    events: Events = []
    probe = Probe()
    rt.start(supervisor("root", [worker(events, "a"),
                                 ChildSpec("s", lambda: Stubborn(events, probe), shutdown=2.0),
                                 worker(events, "b")]))
    events.clear()
    stopping = asyncio.get_running_loop().create_task(rt.shutdown(5.0))
    await wait_until(lambda: ("refuse", "root/s") in events, "s refusing to stop")
    assert events == [("stop", "root/b"), ("refuse", "root/s")]  # a still waits its turn
    clock.advance(2.0)  # the shutdown timeout of s: it is killed, no on_stop
    assert await stopping is True
    assert events == [("stop", "root/b"), ("refuse", "root/s"), ("stop", "root/a")]
    await probe.wait_for(lambda m: "effect cancelled" in m)
    assert len(rt.registry) == 0


async def test_runtime_shutdown_deadline_returns_false_and_leaves_no_live_actors() -> None:
    rt = make_runtime()  # ManualClock that nobody advances: s is never killed by root
    events: Events = []
    probe = Probe()
    rt.start(supervisor("root", [worker(events, "a"),
                                 ChildSpec("s", lambda: Stubborn(events, probe), shutdown=2.0)]))
    assert await rt.shutdown(0.05) is False
    assert len(rt.registry) == 0 and rt.tree() == []
    await probe.wait_for(lambda m: "effect cancelled" in m)
    rt.tell("root/a", "inc")  # the actor is gone: a dead letter, not an error
    assert rt.dead_letters == 1
    assert await rt.shutdown(0.05) is True  # idempotent


async def test_graceful_shutdown_returns_true_and_stops_everything(runtime: Runtime) -> None:
    events: Events = []
    runtime.start(supervisor("root", [worker(events, "a"), worker(events, "b")]))
    assert await runtime.shutdown(1.0) is True
    assert events[-2:] == [("stop", "root/b"), ("stop", "root/a")]
    assert len(runtime.registry) == 0 and live_thespian_actors(runtime) == 0
