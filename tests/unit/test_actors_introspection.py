"""Introspection (tree, actor snapshots) and admin actions (stop, restart, crash, dynamic)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from actors_helpers import Events, count, live_thespian_actors, make_runtime, worker

from actors import (
    ActorNotFound,
    ActorRef,
    CrashNotAllowed,
    Restart,
    Runtime,
    StopRefused,
    WhichChildren,
    supervisor,
)
from actors.testing import ManualClock


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    rt = make_runtime(ManualClock())
    yield rt
    await rt.shutdown(0.2)


def build(rt: Runtime, events: Events) -> ActorRef:
    inner = supervisor("inner", [worker(events, "x")], kind="inner-sup")
    return rt.start(supervisor("root", [worker(events, "a"), inner]))


def shape(nodes: list[dict[str, Any]]) -> list[Any]:
    return [(n["id"], n["kind"], n["parent"], n["state"], shape(n["children"])) for n in nodes]


async def test_tree_shows_ids_kinds_parents_and_states(runtime: Runtime) -> None:
    build(runtime, [])
    assert shape(runtime.tree()) == [
        ("root", "supervisor", None, "running", [
            ("root/a", "worker", "root", "running", []),
            ("root/inner", "inner-sup", "root", "running", [
                ("root/inner/x", "worker", "root/inner", "running", []),
            ]),
        ]),
    ]


async def test_snapshot_counts_messages_and_restarts(runtime: Runtime) -> None:
    build(runtime, [])
    for _ in range(3):
        runtime.tell("root/a", "inc")
    assert await runtime.ask("root/a", "get") == 3
    snap = runtime.actor("root/a")
    assert snap["messages"] == 4 and snap["restarts"] == 0 and snap["last_failure"] is None
    runtime.crash_actor("root/a", "test crash")
    snap = runtime.actor("root/a")
    assert snap["restarts"] == 1 and snap["messages"] == 0  # a fresh incarnation
    assert snap["last_failure"]["reason"] == "InjectedCrash('test crash')"
    assert runtime.actor("root")["messages"] == 1  # the failure report it handled


async def test_unknown_actor_raises_actor_not_found(runtime: Runtime) -> None:
    build(runtime, [])
    for action in (runtime.actor, runtime.stop_actor, runtime.restart_actor,
                   runtime.crash_actor):
        with pytest.raises(ActorNotFound):
            action("root/nope")


async def test_crash_actor_is_refused_without_the_flag() -> None:
    rt = make_runtime(allow_crash=False)
    build(rt, [])
    with pytest.raises(CrashNotAllowed):
        rt.crash_actor("root/a")
    assert rt.actor("root/a")["restarts"] == 0
    await rt.shutdown(1.0)


async def test_stop_actor_refuses_a_permanent_actor_and_leaves_it_running(
    runtime: Runtime,
) -> None:
    events: Events = []
    build(runtime, events)
    runtime.tell("root/a", "inc")
    events.clear()
    for actor_id in ("root/a", "root/inner", "root/inner/x", "root"):
        with pytest.raises(StopRefused, match=f"refused to stop {actor_id}: .*restart it"):
            runtime.stop_actor(actor_id)
    assert events == []
    assert count(runtime, "root/a") == 1  # the same incarnation, state intact
    assert runtime.actor("root/a")["restart"] == "permanent"
    assert runtime.missing_children() == []


async def test_stop_actor_stops_temporary_and_transient_children(runtime: Runtime) -> None:
    events: Events = []
    build(runtime, events)
    runtime.start_child("root/inner", worker(events, "tmp", Restart.TEMPORARY))
    runtime.start_child("root/inner", worker(events, "tra", Restart.TRANSIENT))
    events.clear()
    runtime.stop_actor("root/inner/tmp")
    runtime.stop_actor("root/inner/tra")
    assert events == [("stop", "root/inner/tmp"), ("stop", "root/inner/tra")]
    assert sorted(runtime.registry.ids()) == ["root", "root/a", "root/inner", "root/inner/x"]
    # the temporary spec is gone; the transient one is kept, not running, and not "missing"
    assert await runtime.ask("root/inner", WhichChildren()) == [
        ("root/inner/x", "permanent", True), ("root/inner/tra", "transient", False)]
    assert runtime.missing_children() == []


async def test_forced_stop_keeps_the_spec_reports_it_missing_and_restart_brings_it_back(
    runtime: Runtime,
) -> None:
    events: Events = []
    build(runtime, events)
    events.clear()
    runtime.stop_actor("root/a", force=True)
    assert events == [("stop", "root/a")]
    assert "root/a" not in runtime.registry
    assert await runtime.ask("root", WhichChildren()) == [
        ("root/a", "permanent", False), ("root/inner", "permanent", True)]
    assert runtime.missing_children() == ["root/a"]
    assert live_thespian_actors(runtime) == len(runtime.registry) == 3
    runtime.restart_actor("root/a")
    assert events[-1] == ("start", "root/a")
    assert runtime.actor("root/a")["state"] == "running"
    assert runtime.missing_children() == []


async def test_forced_stop_of_a_supervisor_reports_only_the_supervisor_missing(
    runtime: Runtime,
) -> None:
    events: Events = []
    build(runtime, events)
    events.clear()
    runtime.stop_actor("root/inner", force=True)
    assert events == [("stop", "root/inner/x")]
    assert sorted(runtime.registry.ids()) == ["root", "root/a"]
    assert runtime.missing_children() == ["root/inner"]
    runtime.restart_actor("root/inner")
    assert sorted(runtime.registry.ids()) == ["root", "root/a", "root/inner", "root/inner/x"]
    assert runtime.missing_children() == []


async def test_restart_actor_gives_a_fresh_instance(runtime: Runtime) -> None:
    events: Events = []
    build(runtime, events)
    runtime.tell("root/a", "inc")
    events.clear()
    runtime.restart_actor("root/a")
    assert events == [("stop", "root/a"), ("start", "root/a")]  # graceful, then fresh
    assert count(runtime, "root/a") == 0
    snap = runtime.actor("root/a")
    assert snap["restarts"] == 1 and snap["state"] == "running" and snap["last_failure"] is None


async def test_restart_actor_of_the_root_is_refused(runtime: Runtime) -> None:
    build(runtime, [])
    with pytest.raises(ActorNotFound):
        runtime.restart_actor("root")


async def test_dynamic_temporary_child_is_started_and_never_restarted(
    runtime: Runtime,
) -> None:
    events: Events = []
    build(runtime, events)
    ref = runtime.start_child("root/inner", worker(events, "dyn", Restart.TEMPORARY))
    assert ref == ActorRef(runtime, "root/inner/dyn") and ref.alive
    assert events[-1] == ("start", "root/inner/dyn")
    assert runtime.actor("root/inner/dyn")["parent"] == "root/inner"
    with pytest.raises(ValueError, match="already running"):
        runtime.start_child("root/inner", worker(events, "dyn", Restart.TEMPORARY))
    assert runtime.actor("root/inner")["restarts"] == 0  # the refusal did not hurt it
    runtime.crash_actor("root/inner/dyn")
    assert not ref.alive
    assert [c[0] for c in await runtime.ask("root/inner", WhichChildren())] == ["root/inner/x"]
    assert live_thespian_actors(runtime) == len(runtime.registry) == 4


async def test_dynamic_child_under_a_missing_supervisor(runtime: Runtime) -> None:
    build(runtime, [])
    with pytest.raises(ActorNotFound):
        runtime.start_child("root/ghost", worker([], "w"))


async def test_ref_tells_and_asks_and_survives_restarts(runtime: Runtime) -> None:
    build(runtime, [])
    ref = ActorRef(runtime, "root/a")
    ref.tell("inc")
    assert await ref.ask("get") == 1
    runtime.crash_actor("root/a")
    ref.tell("inc")
    assert await ref.ask("get") == 1  # same ref, new incarnation
    assert {ref, ActorRef(runtime, "root/a")} == {ref}


async def test_dead_letters_are_counted(runtime: Runtime) -> None:
    build(runtime, [])
    runtime.tell("root/nobody", "hello")
    ActorRef(runtime, "root/nobody").tell("hello")
    assert runtime.dead_letters == 2
