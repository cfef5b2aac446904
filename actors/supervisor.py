"""Supervisors declared as data: child specs, a strategy and a restart intensity.

Failure policy:
    A child that fails (its code raised) or exits is handled by its supervisor, by the
    child's ``restart`` type: ``PERMANENT`` children are always restarted, ``TRANSIENT``
    ones only after a failure, ``TEMPORARY`` ones never (their spec is dropped). A restart
    follows the ``strategy``: ``ONE_FOR_ONE`` restarts the child alone; ``ONE_FOR_ALL``
    stops every other child (in reverse start order) and restarts them all in order;
    ``REST_FOR_ONE`` does the same for the children started after it. More than
    ``max_restarts`` restarts within ``period`` seconds and the supervisor gives up: it
    stops its children and fails itself, so its own supervisor decides (escalation).
    A failure of the root is reported to ``Runtime.on_root_failure``.

Stopping is ordered: children stop one at a time in reverse start order, each given its
spec's ``shutdown`` seconds for a graceful stop before it is killed.

Admin stop (``TerminateChild``, as OTP's ``terminate_child``): the child is stopped and not
restarted. A temporary child's spec is dropped; any other keeps its spec, not running, so
introspection (``child_status``, readiness) still sees it as missing and ``RestartChild``
starts it again.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.actor import Actor
from actors.intensity import RestartIntensity
from actors.messages import ChildExited, ChildFailed, Init, Kill, StopRequest
from actors.ref import ActorRef


class Restart(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to run one child: ``factory`` builds a fresh behaviour for every (re)start."""

    id: str
    factory: Callable[[], Actor]
    restart: Restart = Restart.PERMANENT
    shutdown: float = 5.0
    kind: str = ""


# Incarnation numbers are unique across the process, not per supervisor instance: a
# restarted supervisor's children must never share a number with its predecessor's, or a
# late exit report from an old child would be taken for the new one's.
_incarnations = itertools.count(1)


class RestartIntensityExceeded(Exception):
    """Raised inside a supervisor that gave up; its own supervisor sees this failure."""


# Messages a supervisor understands (send with tell or ask).
@dataclass(frozen=True, slots=True)
class StartChild:
    """Ask a supervisor to start a child from ``spec``."""

    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class TerminateChild:
    """Ask a supervisor to stop child ``child_id`` (it is not restarted)."""

    child_id: str  # the child's own id (full path)


@dataclass(frozen=True, slots=True)
class RestartChild:
    """Ask a supervisor to restart child ``child_id``."""

    child_id: str


@dataclass(frozen=True, slots=True)
class WhichChildren:
    """Ask a supervisor for its children: answered with ``(id, restart, running)`` each."""


@dataclass(slots=True)
class _StopTimeout:
    """A child's stop took too long: kill that incarnation."""

    child_id: str
    incarnation: int


@dataclass(slots=True)
class _Child:
    """A supervisor's record of one child: its spec, address and incarnation."""

    spec: ChildSpec
    address: Any = None
    incarnation: int = 0


@dataclass(slots=True)
class _StopPlan:
    """Children still to stop, one at a time, and what to do when all are down."""

    pending: list[str]
    then: Callable[[], None]
    current: str | None = None
    timer: Any = None
    queued: list[tuple[str, bool, str]] = field(default_factory=list)


def supervisor(
    id: str,
    children: Sequence[ChildSpec],
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = 3,
    period: float = 5.0,
    restart: Restart = Restart.PERMANENT,
    shutdown: float = math.inf,
    kind: str = "supervisor",
) -> ChildSpec:
    """A child spec for a supervisor (usable as the root or nested in a tree)."""
    specs = tuple(children)
    return ChildSpec(
        id,
        lambda: Supervisor(specs, strategy=strategy, max_restarts=max_restarts, period=period),
        restart=restart,
        shutdown=shutdown,
        kind=kind,
    )


class Supervisor(Actor):
    """Starts its children in order and keeps them running by its strategy."""

    kind = "supervisor"

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        period: float = 5.0,
    ) -> None:
        self.strategy = strategy
        self.intensity = RestartIntensity(max_restarts, period)
        self._initial = tuple(children)
        self._children: dict[str, _Child] = {}  # by full id, in start order
        self._plan: _StopPlan | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def on_start(self) -> None:
        for spec in self._initial:
            self._add(spec)

    def on_stop_requested(self, reason: str) -> bool:
        self._stop_children(list(reversed(self._children)), self.stop)
        return False

    def _release(self) -> None:
        # Failing or killed: nothing may outlive us unowned.
        for child in self._children.values():
            if child.address is not None:
                self._cell.send(child.address, Kill("supervisor ended"))
                child.address = None

    # -- messages ------------------------------------------------------------------------
    def receive(self, message: Any) -> Any:
        if isinstance(message, ChildFailed):
            self._child_down(message.child_id, message.incarnation, True, repr(message.error))
        elif isinstance(message, ChildExited):
            self._child_down(message.child_id, message.incarnation, not message.normal,
                             message.reason)
        elif isinstance(message, _StopTimeout):
            self._stop_timed_out(message)
        elif isinstance(message, StartChild):
            return self._add(message.spec)
        elif isinstance(message, TerminateChild):
            self._terminate(message.child_id)
        elif isinstance(message, RestartChild):
            self._restart_one(message.child_id)
        elif isinstance(message, WhichChildren):
            return [(cid, restart.value, running) for cid, restart, running in self.child_status()]
        else:
            return super().receive(message)
        return None

    # -- introspection (the runtime reads these synchronously, from the loop thread) ------
    def child_status(self) -> list[tuple[str, Restart, bool]]:
        """Every child spec held, in start order: (full id, restart type, running now)."""
        return [(cid, c.spec.restart, c.address is not None) for cid, c in self._children.items()]

    def declares(self, child_id: str) -> bool:
        """True when this supervisor holds a spec for ``child_id`` (running or not)."""
        return child_id in self._children

    # -- starting ------------------------------------------------------------------------
    def _full_id(self, spec: ChildSpec) -> str:
        return f"{self.id}/{spec.id}"

    def _add(self, spec: ChildSpec) -> ActorRef:
        full_id = self._full_id(spec)
        if full_id in self._children and self._children[full_id].address is not None:
            raise ValueError(f"child {full_id!r} is already running")
        self._children[full_id] = child = _Child(spec)
        self._spawn(full_id, child)
        return ActorRef(self.runtime, full_id)

    def _spawn(self, full_id: str, child: _Child) -> None:
        cell = self._cell
        child.incarnation = next(_incarnations)
        child.address = cell.start_child_cell(Init(self.runtime, full_id, child.spec.kind,
                                                   self.id, child.spec.factory,
                                                   child.incarnation, child.spec.restart))

    # -- failures ------------------------------------------------------------------------
    def _child_down(self, child_id: str, incarnation: int, abnormal: bool, reason: str) -> None:
        child = self._children.get(child_id)
        if child is None or child.incarnation != incarnation or child.address is None:
            return  # a stale report about an incarnation we already replaced
        plan = self._plan
        if plan is not None:
            if plan.current == child_id:
                self._kill(child)
                self._stop_next(plan)
            elif child_id in plan.pending:
                plan.pending.remove(child_id)
                self._kill(child)
            else:
                # Not part of this stop: end the dead incarnation now (a failed cell lingers
                # until killed) and apply the policy once the stop is done.
                self._kill(child)
                plan.queued.append((child_id, abnormal, reason))
            return
        self._kill(child)
        self._apply_policy(child_id, abnormal, reason)

    def _apply_policy(self, child_id: str, abnormal: bool, reason: str) -> None:
        child = self._children[child_id]
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and not abnormal):
            del self._children[child_id]
            self.runtime.registry.forget_history(child_id)
            return
        if not self.intensity.record(self.runtime.clock.now()):
            self._give_up(f"{child_id} failed {self.intensity.recent} times within "
                          f"{self.intensity.period}s (last: {reason})")
            return
        ids = list(self._children)
        if self.strategy is Strategy.ONE_FOR_ONE:
            affected = [child_id]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            affected = ids
        else:
            affected = ids[ids.index(child_id):]
        running = [cid for cid in reversed(affected) if self._children[cid].address is not None]
        self._stop_children(running, lambda: self._restart(affected))

    def _restart(self, ids: list[str]) -> None:
        for cid in ids:
            child = self._children.get(cid)
            if child is None:
                continue
            if child.spec.restart is Restart.TEMPORARY:
                del self._children[cid]  # stopped as a sibling; never restarted
                continue
            self.runtime.registry.note_restart(cid)
            self._spawn(cid, child)

    def _give_up(self, why: str) -> None:
        def fail() -> None:
            raise RestartIntensityExceeded(why)

        running = [cid for cid in reversed(self._children)
                   if self._children[cid].address is not None]
        self._stop_children(running, fail)

    # -- admin actions -------------------------------------------------------------------------
    def _terminate(self, child_id: str) -> None:
        child = self._children.get(child_id)
        if child is None:
            return

        def done() -> None:
            # A temporary child's spec goes; any other stays, not running, so the tree
            # still knows it is missing and RestartChild can bring it back.
            current = self._children.get(child_id)
            if current is not None and current.spec.restart is Restart.TEMPORARY:
                del self._children[child_id]
                self.runtime.registry.forget_history(child_id)

        if child.address is None:
            done()
        else:
            self._stop_children([child_id], done)

    def _restart_one(self, child_id: str) -> None:
        child = self._children.get(child_id)
        if child is not None:
            running = [child_id] if child.address is not None else []
            self._stop_children(running, lambda: self._restart([child_id]))

    # -- ordered stopping ------------------------------------------------------------------------
    def _stop_children(self, ids: list[str], then: Callable[[], None]) -> None:
        if self._plan is not None:  # already stopping: chain after the current plan
            previous = self._plan.then

            def chained() -> None:
                previous()
                self._stop_children([i for i in ids if self._running(i)], then)

            self._plan.then = chained
            return
        self._plan = _StopPlan(list(ids), then)
        self._stop_next(self._plan)

    def _running(self, child_id: str) -> bool:
        child = self._children.get(child_id)
        return child is not None and child.address is not None

    def _stop_next(self, plan: _StopPlan) -> None:
        if plan.timer is not None:
            plan.timer.cancel()
            plan.timer = None
        while plan.pending:
            cid = plan.pending.pop(0)
            child = self._children.get(cid)
            if child is None or child.address is None:
                continue
            plan.current = cid
            self._cell.send(child.address, StopRequest("stopped by supervisor"))
            if math.isfinite(child.spec.shutdown):
                plan.timer = self.start_timer(child.spec.shutdown,
                                              _StopTimeout(cid, child.incarnation))
            return
        plan.current = None
        self._plan = None
        plan.then()
        for queued in plan.queued:
            if self._plan is None and queued[0] in self._children:
                self._apply_policy(*queued)
            elif self._plan is not None:
                self._plan.queued.append(queued)

    def _stop_timed_out(self, timeout: _StopTimeout) -> None:
        plan = self._plan
        child = self._children.get(timeout.child_id)
        if plan is None or plan.current != timeout.child_id or child is None:
            return
        if child.incarnation == timeout.incarnation:
            plan.timer = None
            self._kill(child)
            self._stop_next(plan)

    def _kill(self, child: _Child) -> None:
        if child.address is not None:
            self._cell.send(child.address, Kill("stopped"))
            child.address = None
