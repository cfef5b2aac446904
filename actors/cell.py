"""Cell: the thespian actor that hosts one incarnation of an ``Actor`` behaviour.

Thespian retries a message whose handler raised (re-running its side effects) and then
bounces a ``PoisonMessage`` to the sender while the actor lives on. The cell therefore
catches everything itself and turns it into a failure report to the supervisor.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import string
import time
import traceback
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, ClassVar

from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorAddress, ActorExitRequest, ActorSystemMessage
from thespian.system.utilis import withPossibleInitArgs

from actors.errors import ActorStopped, InjectedCrash
from actors.messages import (
    SYSTEM_TYPES,
    ChildExited,
    ChildFailed,
    CrashRequest,
    EffectDone,
    Envelope,
    Init,
    Kill,
    StopRequest,
    TimerFired,
)
from actors.registry import ActorRecord, Failure
from actors.thespian_base import load_simple_system_base

if TYPE_CHECKING:
    from actors.actor import Actor, ErrorCallback, ResultCallback
    from actors.loop import Runtime

log = logging.getLogger("actors")
_simple_system_base: Any = load_simple_system_base()  # without its unused imports


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = {cls}
    sub: type
    for sub in cls.__subclasses__():
        found |= _all_subclasses(sub)
    return found


# thespian's own messages (ActorExitRequest, ChildActorExited, PoisonMessage, ...), as a
# set so that telling a user message costs one membership test before the behaviour.
_THESPIAN_TYPES: frozenset[type] = frozenset(_all_subclasses(ActorSystemMessage))


class Cell(ThespianActor):
    """One actor incarnation. Created by the runtime or a supervisor, then sent ``Init``."""

    def __init__(self) -> None:
        super().__init__()
        self.runtime: Runtime
        self.actor_id = ""
        self.behavior: Actor | None = None
        self.record: ActorRecord | None = None
        self.parent_id: str | None = None
        self.incarnation = 0
        self.alive = False
        self._reply: asyncio.Future[Any] | None = None
        self._effects: dict[int, tuple[asyncio.Task[Any], Any, Any]] = {}
        self._timers: dict[int, tuple[Any, Any, float, bool]] = {}
        self._next_id = 0

    # -- dispatch -------------------------------------------------------------------------
    def receiveMessage(self, message: Any, sender: Any) -> None:  # thespian calls this name
        cls = message.__class__
        if cls in SYSTEM_TYPES:
            self._system(message)
        elif cls in _THESPIAN_TYPES:
            if cls is ActorExitRequest and self.alive:
                self._cleanup()  # thespian removes the actor after this returns
                self._exit(False, "exit requested")
            # ChildActorExited and friends: supervisors track children themselves
        elif self.alive:  # the hot path: one set lookup above, then the behaviour
            self.record.messages += 1  # type: ignore[union-attr]
            try:
                self.behavior.receive(message)  # type: ignore[union-attr]
            except Exception as error:
                self._fail(error)
        elif self.record is not None or self.behavior is not None:
            self.runtime.dead_letters += 1

    def _system(self, message: Any) -> None:
        cls = message.__class__
        if cls is Init:
            self._init(message)
        elif cls is Kill:
            self._killed(message.reason)
        elif not self.alive:
            if cls is Envelope and not message.future.done():
                message.future.set_exception(ActorStopped(self.actor_id))
            else:
                self.runtime.dead_letters += 1
        elif cls is Envelope:
            self._ask(message)
        elif cls is EffectDone:
            self._effect_done(message)
        elif cls is TimerFired:
            self._timer_fired(message)
        elif cls is StopRequest:
            self._stop_requested(message.reason)
        elif cls is CrashRequest:
            self._fail(InjectedCrash(message.reason))

    def _init(self, init: Init) -> None:
        self.runtime = init.runtime
        self.actor_id = init.actor_id
        self.parent_id = init.parent_id
        self.incarnation = init.incarnation
        record = ActorRecord(init.actor_id, init.kind, init.parent_id, init.restart, cell=self)
        record.address = self.myAddress
        self.record = record
        self.runtime.registry.add(record)
        self.alive = True
        try:
            behavior = init.factory()
            behavior._cell = self
            self.behavior = behavior
            if not init.kind:
                record.kind = behavior.kind or type(behavior).__name__
            behavior.on_start()
        except Exception as error:
            self._fail(error)
            return
        if self.alive and record.state == "starting":
            record.state = "running"

    def _ask(self, envelope: Envelope) -> None:
        assert self.record is not None and self.behavior is not None
        self.record.messages += 1
        self._reply = future = envelope.future
        try:
            result = self.behavior.receive(envelope.message)
        except Exception as error:
            if not future.done():
                future.set_exception(error)
            self._fail(error)
        else:
            if self._reply is not None and not future.done():
                future.set_result(result)
        finally:
            self._reply = None

    # -- replies -----------------------------------------------------------------------
    def reply_now(self, value: Any) -> None:
        future, self._reply = self._reply, None
        if future is not None and not future.done():
            future.set_result(value)

    def defer_reply(self) -> Any:
        from actors.actor import Reply

        future, self._reply = self._reply, None
        return None if future is None else Reply(future)

    def start_child_cell(self, init: Init) -> Any:
        """Create a child cell and run its ``Init`` now, inside this handler.

        Running ``Init`` synchronously (instead of queueing it) makes starts depth-first
        as in OTP: a child and its whole subtree are registered and started before the
        next sibling starts, so a later sibling can already talk to an earlier one.
        Returns the child's thespian address.

        The cell is created as a thespian *primary* actor, not as a thespian child of this
        cell: supervision is ours, and thespian's own child bookkeeping costs O(children)
        per exit (a linear ``list.index`` with Python-level address comparisons), which made
        stopping a supervisor of 10,000 children take about 25 s instead of 0.2 s.
        """
        address, child = new_cell(self.runtime._system)  # registers only; runs nothing
        child.receiveMessage(init, self.myAddress)
        return address

    # -- sending -----------------------------------------------------------------------
    def send_to(self, actor_id: str, message: Any) -> None:
        record = self.runtime.registry.get(actor_id)
        if record is None:
            self.runtime.dead_letters += 1
            return
        self.send(record.address, message)

    # -- effects ---------------------------------------------------------------------------
    def start_effect(
        self,
        coro: Coroutine[Any, Any, Any],
        on_result: ResultCallback | None,
        on_error: ErrorCallback | None,
    ) -> asyncio.Task[Any]:
        self._next_id += 1
        effect_id = self._next_id
        task = self.runtime.loop.create_task(coro)
        self._effects[effect_id] = (task, on_result, on_error)
        task.add_done_callback(lambda t: self._effect_finished(effect_id, t))
        return task

    def _effect_finished(self, effect_id: int, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or not self.alive or effect_id not in self._effects:
            return
        error = task.exception()
        result = None if error is not None else task.result()
        self.runtime.post(self, EffectDone(effect_id, result, error))

    def _effect_done(self, done: EffectDone) -> None:
        entry = self._effects.pop(done.effect_id, None)
        if entry is None:
            return
        _, on_result, on_error = entry
        assert self.record is not None
        self.record.messages += 1
        try:
            if done.error is not None:
                if on_error is None:
                    raise done.error
                on_error(done.error)
            elif on_result is not None:
                on_result(done.result)
        except Exception as error:
            self._fail(error)

    # -- timers ------------------------------------------------------------------------------
    def start_timer(self, delay: float, message: Any, repeat: bool) -> int:
        self._next_id += 1
        timer_id = self._next_id
        handle = self.runtime.clock.call_later(delay, self._timer_due, timer_id)
        self._timers[timer_id] = (handle, message, delay, repeat)
        return timer_id

    def _timer_due(self, timer_id: int) -> None:
        entry = self._timers.get(timer_id)
        if entry is not None and self.alive:
            self.runtime.post(self, TimerFired(timer_id, entry[1]))

    def _timer_fired(self, fired: TimerFired) -> None:
        entry = self._timers.get(fired.timer_id)
        if entry is None:
            return
        _, message, delay, repeat = entry
        if repeat:
            handle = self.runtime.clock.call_later(delay, self._timer_due, fired.timer_id)
            self._timers[fired.timer_id] = (handle, message, delay, repeat)
        else:
            del self._timers[fired.timer_id]
        assert self.record is not None and self.behavior is not None
        self.record.messages += 1
        try:
            self.behavior.receive(message)
        except Exception as error:
            self._fail(error)

    def cancel_timer(self, timer_id: int) -> None:
        entry = self._timers.pop(timer_id, None)
        if entry is not None:
            entry[0].cancel()

    def timer_active(self, timer_id: int) -> bool:
        return timer_id in self._timers

    # -- endings ------------------------------------------------------------------------------
    def _stop_requested(self, reason: str) -> None:
        assert self.record is not None and self.behavior is not None
        self.record.state = "stopping"
        try:
            stop_now = self.behavior.on_stop_requested(reason)
        except Exception as error:
            self._fail(error)
            return
        if stop_now:
            self.stop_normally(reason)

    def stop_normally(self, reason: str) -> None:
        """Run ``on_stop`` and exit; the supervisor learns of a normal exit."""
        if not self.alive:
            return
        assert self.behavior is not None
        self._cleanup()
        try:
            self.behavior.on_stop()
        except Exception:
            log.exception("actor %s: on_stop raised", self.actor_id)
        self._exit(True, reason)

    def _killed(self, reason: str) -> None:
        """The release path of a kill: ``on_kill`` runs (a live incarnation only), then
        effects, timers and children go, then the supervisor is told."""
        if self.alive and self.behavior is not None:
            try:
                self.behavior.on_kill(reason)
            except Exception:
                log.exception("actor %s: on_kill raised", self.actor_id)
        self._cleanup()
        self._exit(False, reason)

    def _fail(self, error: BaseException) -> None:
        if not self.alive:
            return
        tb = "".join(traceback.format_exception(error))
        assert self.record is not None
        self.record.state = "failed"
        self.runtime.registry.note_failure(self.actor_id, Failure(time.time(), repr(error), tb))
        self._cleanup()
        # behavior is None when the factory itself raised: there is no instance to tell.
        if self.behavior is not None:
            try:
                self.behavior.on_failure(error)
            except Exception:
                log.exception("actor %s: on_failure raised", self.actor_id)
        self.alive = False  # drop everything until the supervisor kills this incarnation
        log.warning("actor %s failed: %r", self.actor_id, error)
        self._notify_parent(ChildFailed(self.actor_id, self.incarnation, error, tb))

    def _cleanup(self) -> None:
        if self.behavior is not None:
            self.behavior._release()
        for task, _, _ in self._effects.values():
            task.cancel()
        self._effects.clear()
        for handle, *_ in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def _exit(self, normal: bool, reason: str) -> None:
        record = self.record
        was_alive = self.alive
        self.alive = False
        if record is not None:
            if record.state != "failed":
                record.state = "stopped"
            self.runtime.registry.remove(self.actor_id, record)
        if was_alive:  # a failed incarnation has already reported its failure
            self._notify_parent(ChildExited(self.actor_id, self.incarnation, normal, reason))
        self.runtime.exits += 1
        self.send(self.myAddress, ActorExitRequest())

    def _notify_parent(self, message: ChildFailed | ChildExited) -> None:
        if self.parent_id is None:
            self.runtime.root_event(message)
        else:
            self.send_to(self.parent_id, message)


_LETTERS = string.ascii_letters


def address_name(count: int) -> str:
    """simpleSystemBase's ``_namegen``: ``count`` in base 52 written with ASCII letters
    (0 is "a"), without its recursion."""
    digits = []
    while True:
        count, digit = divmod(count, 52)
        digits.append(_LETTERS[digit])
        if not count:
            return "".join(reversed(digits))


def new_cell(system: Any) -> tuple[Any, Cell]:
    """A new primary ``Cell`` in ``system`` (a simpleSystemBase ActorSystem) and its
    address, registered as ``ActorSystem.createActor(Cell)`` registers it: the same
    ``/A~<n>`` address from the system's primary counter, the same ``ActorRef`` entry
    in its registry, the parent being the system.

    What createActor adds on its way -- a class-by-name resolution, a capability check,
    the constructor's argument matching, two logger lookups and a DEBUG call -- is a
    no-op for ``Cell`` and was a tenth of a connection's start. Messages reach the cell
    through ``receiveMessage`` directly: thespian's per-instance ``_receive`` wrapper
    only logs each message at DEBUG (below Thespian's level here).
    ``tests/unit/test_thespian_internals.py`` checks the names used.
    """
    base = system._systemBase
    with base._private_lock:
        count = base._primaryCount
        base._primaryCount = count + 1
    address = ActorAddress("/A~" + address_name(count))
    cell = Cell()
    ref = _simple_system_base.ActorRef(system, system.systemAddress, address, cell)
    ref.globalName = None
    cell._myRef = ref
    cell._receive = cell.receiveMessage
    base.actorRegistry[address.actorAddressString] = ref
    return address, cell


# thespian builds each actor through ``withPossibleInitArgs.create``, which in 4.0.1
# iterates ``inspect.signature(__init__).parameters`` (names) as if they were Parameter
# objects: the ``.name`` raises AttributeError every time, so every creation falls
# through to a ``warnings.catch_warnings`` block, the removed ``getargspec`` and then
# ``getfullargspec`` -- about 10 us of a connection's start. This subclass asks once per
# class and passes the same arguments (those ``__init__`` names); an ``__init__`` without
# a signature gets thespian's own path.
class _InitArgs(withPossibleInitArgs):
    _names: ClassVar[dict[type, tuple[str, ...]]] = {}

    def create(self, klass: type) -> Any:
        names = _InitArgs._names.get(klass)
        if names is None:
            try:
                names = tuple(inspect.signature(klass.__init__).parameters)  # type: ignore[misc]
            except (ValueError, TypeError):
                return super().create(klass)
            _InitArgs._names[klass] = names
        kwargs = self.kwargs
        return klass(**{name: kwargs[name] for name in names if name in kwargs})


_simple_system_base.withPossibleInitArgs = _InitArgs
