"""Supervision: strategies, restart types, intensity and escalation, ordered start/stop."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from actors_helpers import Events, Worker, count, live_thespian_actors, make_runtime, worker

from actors import (
    Actor,
    ChildSpec,
    Restart,
    RestartIntensityExceeded,
    Runtime,
    Strategy,
    WhichChildren,
    supervisor,
)
from actors.messages import ChildFailed
from actors.testing import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def runtime(clock: ManualClock) -> AsyncIterator[Runtime]:
    rt = make_runtime(clock)
    yield rt
    await rt.shutdown(0.2)  # some tests leave an actor that never stops by itself


def three(events: Events, strategy: Strategy, **kw: Any) -> ChildSpec:
    return supervisor("root", [worker(events, c) for c in "abc"], strategy=strategy, **kw)


def bump_all(rt: Runtime) -> None:
    for cid in ("root/a", "root/b", "root/c"):
        rt.tell(cid, "inc")


# -- strategies -------------------------------------------------------------------------------
async def test_one_for_one_restarts_only_the_failed_child(runtime: Runtime) -> None:
    events: Events = []
    runtime.start(three(events, Strategy.ONE_FOR_ONE))
    bump_all(runtime)
    events.clear()
    runtime.tell("root/b", "crash")
    assert events == [("start", "root/b")]  # a crashed actor gets no on_stop
    assert [count(runtime, c) for c in ("root/a", "root/b", "root/c")] == [1, 0, 1]


async def test_one_for_all_stops_the_others_in_reverse_then_restarts_all_in_order(
    runtime: Runtime,
) -> None:
    events: Events = []
    runtime.start(three(events, Strategy.ONE_FOR_ALL))
    bump_all(runtime)
    events.clear()
    runtime.tell("root/b", "crash")
    assert events == [
        ("stop", "root/c"), ("stop", "root/a"),
        ("start", "root/a"), ("start", "root/b"), ("start", "root/c"),
    ]
    assert [count(runtime, c) for c in ("root/a", "root/b", "root/c")] == [0, 0, 0]


async def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it(
    runtime: Runtime,
) -> None:
    events: Events = []
    runtime.start(three(events, Strategy.REST_FOR_ONE))
    bump_all(runtime)
    events.clear()
    runtime.tell("root/b", "crash")
    assert events == [("stop", "root/c"), ("start", "root/b"), ("start", "root/c")]
    assert [count(runtime, c) for c in ("root/a", "root/b", "root/c")] == [1, 0, 0]


async def test_rest_for_one_failure_of_the_last_child_touches_nobody_else(
    runtime: Runtime,
) -> None:
    events: Events = []
    runtime.start(three(events, Strategy.REST_FOR_ONE))
    bump_all(runtime)
    events.clear()
    runtime.tell("root/c", "crash")
    assert events == [("start", "root/c")]
    assert [count(runtime, c) for c in ("root/a", "root/b", "root/c")] == [1, 1, 0]


# -- restart types ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        (Restart.PERMANENT, "crash", True),
        (Restart.PERMANENT, "stop", True),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TRANSIENT, "stop", False),
        (Restart.TEMPORARY, "crash", False),
        (Restart.TEMPORARY, "stop", False),
    ],
)
async def test_restart_type_decides_on_failure_and_on_normal_exit(
    runtime: Runtime, restart: Restart, how: str, restarted: bool
) -> None:
    events: Events = []
    runtime.start(supervisor("root", [worker(events, "w", restart), worker(events, "x")]))
    runtime.tell("root/w", "inc")
    events.clear()
    runtime.tell("root/w", how)
    if restarted:
        assert events[-1] == ("start", "root/w")
        assert count(runtime, "root/w") == 0
        assert runtime.actor("root/w")["restarts"] == 1
    else:
        assert ("start", "root/w") not in events
        assert "root/w" not in runtime.registry
        children = await runtime.ask("root", WhichChildren())
        assert [c[0] for c in children] == ["root/x"]  # the spec is dropped too
    assert "root/x" in runtime.registry
    assert live_thespian_actors(runtime) == len(runtime.registry)


# -- failure reporting -------------------------------------------------------------------------
class Sender(Actor):
    """Forwards "poke" to its target; records anything it receives back."""

    def __init__(self, got: list[Any]) -> None:
        self.got = got

    def receive(self, message: Any) -> Any:
        if message == "poke":
            self.tell("root/victim", "crash")
        else:
            self.got.append(message)


async def test_a_crash_goes_to_the_supervisor_not_to_the_sender(runtime: Runtime) -> None:
    events: Events = []
    got: list[Any] = []
    runtime.start(supervisor("root", [ChildSpec("sender", lambda: Sender(got)),
                                      worker(events, "victim")]))
    events.clear()
    runtime.tell("root/sender", "poke")
    assert got == []  # no PoisonMessage, no failure report to the sender
    assert events == [("start", "root/victim")]  # the supervisor restarted it
    snapshot = runtime.actor("root/victim")
    failure = snapshot["last_failure"]
    assert snapshot["restarts"] == 1 and snapshot["state"] == "running"
    assert "RuntimeError" in failure["reason"] and "crashed on purpose" in failure["reason"]
    assert "Traceback" in failure["traceback"] and "in receive" in failure["traceback"]
    assert runtime.actor("root/sender")["last_failure"] is None


class FailsToBuild(Actor):
    def __init__(self, events: Events) -> None:
        events.append(("build", "x"))
        raise ValueError("cannot build")


async def test_a_factory_that_raises_is_a_failure_bounded_by_intensity() -> None:
    failures: list[Any] = []
    rt = make_runtime(on_root_failure=failures.append)
    events: Events = []
    rt.start(supervisor("root", [ChildSpec("x", lambda: FailsToBuild(events))], max_restarts=2))
    assert events == [("build", "x")] * 3  # first start + 2 restarts, then escalation
    assert len(failures) == 1 and isinstance(failures[0].error, RestartIntensityExceeded)
    assert await rt.shutdown(1.0)


# -- intensity and escalation ------------------------------------------------------------------
async def test_restarts_within_intensity_then_gives_up_and_root_failure_is_reported(
    clock: ManualClock,
) -> None:
    failures: list[ChildFailed] = []
    rt = make_runtime(clock, on_root_failure=failures.append)
    events: Events = []
    rt.start(supervisor("root", [worker(events, "a"), worker(events, "b")], max_restarts=2,
                        period=10))
    for _ in range(2):
        rt.tell("root/a", "crash")
        clock.advance(1)
    assert failures == []
    events.clear()
    rt.tell("root/a", "crash")  # third restart within 10 s: too many
    assert events == [("stop", "root/b")]  # children stopped, a not restarted
    assert len(failures) == 1 and failures[0].child_id == "root"
    assert isinstance(failures[0].error, RestartIntensityExceeded)
    assert rt.registry.ids() == ["root"] and rt.actor("root")["state"] == "failed"
    assert "RestartIntensityExceeded" in rt.actor("root")["last_failure"]["reason"]
    assert live_thespian_actors(rt) == 1  # only the failed root cell, kept for introspection
    assert await rt.shutdown(1.0)


async def test_restarts_outside_the_window_do_not_count(clock: ManualClock) -> None:
    failures: list[ChildFailed] = []
    rt = make_runtime(clock, on_root_failure=failures.append)
    events: Events = []
    rt.start(supervisor("root", [worker(events, "a")], max_restarts=1, period=10))
    for _ in range(5):
        rt.tell("root/a", "crash")
        clock.advance(10.5)  # the previous restart leaves the window
    assert failures == [] and rt.actor("root/a")["restarts"] == 5
    clock.advance(-10.5 + 5)  # now 5 s after the last restart: the next one is too many
    rt.tell("root/a", "crash")
    assert len(failures) == 1
    await rt.shutdown(1.0)


async def test_nested_supervisor_over_intensity_is_restarted_by_its_parent_with_fresh_children(
    runtime: Runtime,
) -> None:
    events: Events = []
    inner = supervisor("inner", [worker(events, "w1"), worker(events, "w2")], max_restarts=1)
    runtime.start(supervisor("root", [worker(events, "peer"), inner], max_restarts=5))
    for cid in ("root/peer", "root/inner/w1", "root/inner/w2"):
        runtime.tell(cid, "inc")
    runtime.tell("root/inner/w1", "crash")  # within inner's intensity
    assert count(runtime, "root/inner/w2") == 1 and runtime.actor("root/inner")["restarts"] == 0
    runtime.tell("root/inner/w2", "inc")
    events.clear()
    runtime.tell("root/inner/w1", "crash")  # second restart: inner gives up and escalates
    assert events == [
        ("stop", "root/inner/w2"),  # inner stops its live children (w1 failed: no on_stop)
        ("start", "root/inner/w1"), ("start", "root/inner/w2"),  # the new inner's children
    ]
    assert runtime.actor("root/inner")["restarts"] == 1
    assert "RestartIntensityExceeded" in runtime.actor("root/inner")["last_failure"]["reason"]
    assert count(runtime, "root/inner/w1") == 0 and count(runtime, "root/inner/w2") == 0
    assert count(runtime, "root/peer") == 1  # one_for_one at the root: the peer kept its state
    assert sorted(runtime.registry.ids()) == [
        "root", "root/inner", "root/inner/w1", "root/inner/w2", "root/peer"]
    assert live_thespian_actors(runtime) == 5


async def test_never_restarts_past_intensity(clock: ManualClock) -> None:
    failures: list[ChildFailed] = []
    rt = make_runtime(clock, on_root_failure=failures.append)
    events: Events = []
    inner = supervisor("inner", [worker(events, "w")], max_restarts=3, period=5)
    rt.start(supervisor("root", [inner], max_restarts=2, period=5))
    starts = 0
    for _ in range(50):
        if "root/inner/w" not in rt.registry:
            break
        rt.tell("root/inner/w", "crash")
    starts = events.count(("start", "root/inner/w"))
    # 3 inner incarnations (the root restarts inner twice), each: first start + 3 restarts.
    assert starts == 3 * (1 + 3)
    assert len(failures) == 1
    await rt.shutdown(1.0)


# -- ordered start and stop --------------------------------------------------------------------
async def test_children_start_in_order_and_stop_in_reverse_order() -> None:
    rt = make_runtime()
    events: Events = []
    inner = supervisor("inner", [worker(events, "x"), worker(events, "y")])
    rt.start(supervisor("root", [worker(events, "a"), inner, worker(events, "b")]))
    assert events == [("start", "root/a"), ("start", "root/inner/x"),
                      ("start", "root/inner/y"), ("start", "root/b")]
    events.clear()
    assert await rt.shutdown(1.0) is True
    assert events == [("stop", "root/b"), ("stop", "root/inner/y"),
                      ("stop", "root/inner/x"), ("stop", "root/a")]
    assert len(rt.registry) == 0


# -- failures while a supervisor is busy stopping -------------------------------------------
class Lingering(Worker):
    """Refuses a graceful stop (finishes "later"); only its shutdown timeout ends it."""

    def on_stop_requested(self, reason: str) -> bool:
        self.events.append(("linger", self.id))
        return False


@pytest.mark.parametrize("restart", [Restart.PERMANENT, Restart.TEMPORARY])
async def test_a_failure_during_a_stop_is_handled_after_it(
    clock: ManualClock, runtime: Runtime, restart: Restart
) -> None:
    events: Events = []
    runtime.start(supervisor("root", [
        ChildSpec("slow", lambda: Lingering(events), shutdown=3.0),
        worker(events, "x", restart),
    ]))
    runtime.stop_actor("root/slow", force=True)  # the supervisor now waits up to 3 s for it
    assert events[-1] == ("linger", "root/slow")
    runtime.tell("root/x", "crash")  # fails while the stop is in progress
    clock.advance(3.0)  # slow is killed; the supervisor handles x's failure now
    assert "root/slow" not in runtime.registry
    if restart is Restart.PERMANENT:
        assert events[-1] == ("start", "root/x") and runtime.actor("root/x")["state"] == "running"
    else:
        assert "root/x" not in runtime.registry
    assert live_thespian_actors(runtime) == len(runtime.registry)


async def test_a_supervisor_killed_at_its_shutdown_timeout_does_not_disturb_its_successor(
    clock: ManualClock, runtime: Runtime
) -> None:
    events: Events = []
    inner = supervisor("inner", [ChildSpec("w", lambda: Lingering(events), shutdown=math.inf)],
                       shutdown=1.0)
    runtime.start(supervisor("root", [inner, worker(events, "b")],
                             strategy=Strategy.ONE_FOR_ALL))
    runtime.tell("root/b", "crash")  # root stops inner, which waits for w forever
    assert events[-1] == ("linger", "root/inner/w")
    events.clear()
    clock.advance(1.0)  # root kills inner (and so w) and restarts both
    assert events == [("start", "root/inner/w"), ("start", "root/b")]
    # The old w's exit report must not be taken for the new w's: no second start. (The new
    # inner started w fresh, which is not a restart from its point of view.)
    assert runtime.actor("root/inner/w")["restarts"] == 0
    assert runtime.actor("root/inner")["restarts"] == 1
    assert live_thespian_actors(runtime) == len(runtime.registry) == 4
