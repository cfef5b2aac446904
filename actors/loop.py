"""Runtime: a thespian ``simpleSystemBase`` ActorSystem driven from the asyncio loop.

``simpleSystemBase`` runs every actor synchronously in the calling thread: ``tell``
returns once the message and everything it caused have been handled. So the runtime is
used from the event-loop thread only, and nothing in it ever blocks: I/O runs as effects
on the loop, time comes from the loop's timers, and ``ask`` resolves an asyncio future.

Error handling:
    A message sent from inside an actor's handler through ``Runtime.tell`` (rather than
    ``Actor.tell``) is queued and delivered right after the current dispatch, because
    re-entering thespian from a handler would reorder its queue. Messages to actors that
    are gone are dropped and counted in ``dead_letters``. If the root supervisor gives up,
    ``on_root_failure`` is called with the failure; the runtime keeps serving introspection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from thespian.actors import ActorSystem

from actors.cell import _THESPIAN_TYPES, Cell, new_cell
from actors.errors import (
    ActorNotFound,
    AskTimeout,
    CrashNotAllowed,
    RuntimeClosed,
    StopRefused,
)
from actors.messages import ChildExited, ChildFailed, CrashRequest, Envelope, Init, StopRequest
from actors.ref import ActorRef
from actors.registry import Registry
from actors.supervisor import (
    ChildSpec,
    Restart,
    RestartChild,
    StartChild,
    Supervisor,
    TerminateChild,
)

log = logging.getLogger("actors")
# simpleSystemBase logs every delivered message at DEBUG: message contents (client frames
# with their tokens, payloads) would reach the logs, at a large cost per message. The
# runtime logs what matters itself, so thespian's own chatter stops at INFO.
logging.getLogger("Thespian").setLevel(logging.INFO)

_PRUNE_EVERY = 1024


def _no_wakeups() -> None:
    """Stands in for simpleSystemBase._realizeWakeups (see ``Runtime.__init__``)."""


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Where the runtime gets time: the loop in production, ``ManualClock`` in tests."""

    def now(self) -> float: ...

    def call_later(
        self, delay: float, callback: Callable[..., None], *args: Any
    ) -> Cancellable: ...


class LoopClock:
    """The event loop's monotonic clock and timers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> float:
        return self._loop.time()

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> Cancellable:
        return self._loop.call_later(delay, callback, *args)


class Runtime:
    """Hosts one supervision tree. Create it inside a running loop, then ``start(spec)``."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Clock | None = None,
        allow_crash: bool = False,
        on_root_failure: Callable[[ChildFailed | ChildExited], None] | None = None,
    ) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.clock: Clock = clock or LoopClock(self.loop)
        self.allow_crash = allow_crash
        self.on_root_failure = on_root_failure
        self.registry = Registry()
        self.dead_letters = 0
        self.root: ActorRef | None = None
        self.root_down: ChildFailed | ChildExited | None = None
        self._system: Any = ActorSystem("simpleSystemBase", transientUnique=True, logDefs=False)
        base = self._system._systemBase
        # simpleSystemBase scans its wakeup list (``wakeupAfter`` timers) before every
        # delivery. The runtime never uses thespian wakeups — timers come from the loop —
        # so the scan is pure cost on every tell; skip it.
        if not base._wakeUps:
            base._realizeWakeups = _no_wakeups
        # Direct delivery (``_send``) skips thespian's wakeup scan too: only without them.
        self._direct = base._realizeWakeups is _no_wakeups
        self._base = base
        self._base_tell = base.tell
        self._dispatching = False
        self._backlog: deque[tuple[Any, Any, Cell | None]] = deque()
        self._root_stopped = asyncio.Event()
        self._closed = False
        self.exits = 0  # incarnations ended since thespian's registry was last pruned

    @property
    def closed(self) -> bool:
        """True once ``shutdown`` has finished; nothing can be told any more."""
        return self._closed

    # -- the tree -----------------------------------------------------------------------------
    def start(self, spec: ChildSpec) -> ActorRef:
        """Start the root of the tree (usually ``supervisor(...)``); returns its ref."""
        if self.root is not None:
            raise RuntimeError("the runtime already has a root")
        address, _ = new_cell(self._system)
        self._deliver(address, Init(self, spec.id, spec.kind, None, spec.factory,
                                    restart=spec.restart))
        self.root = ActorRef(self, spec.id)
        return self.root

    def start_child(self, supervisor_ref: ActorRef | str, spec: ChildSpec) -> ActorRef:
        """Start a dynamic child under a supervisor (synchronously, from loop code).

        Raises ActorNotFound if the supervisor is gone, ValueError if a child with that id
        is already running (checked here: raised inside the supervisor, it would fail it).
        """
        sup_id = supervisor_ref.id if isinstance(supervisor_ref, ActorRef) else supervisor_ref
        child_id = f"{sup_id}/{spec.id}"
        if sup_id not in self.registry:
            raise ActorNotFound(sup_id)
        if child_id in self.registry:
            raise ValueError(f"child {child_id!r} is already running")
        self.tell(sup_id, StartChild(spec))
        return ActorRef(self, child_id)

    def root_event(self, event: ChildFailed | ChildExited) -> None:
        """Called by the root cell when it fails or exits."""
        self.root_down = event
        self._root_stopped.set()
        if isinstance(event, ChildFailed):
            log.error("root supervisor failed: %r", event.error)
            if self.on_root_failure is not None:
                self.on_root_failure(event)

    async def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop the whole tree in reverse start order; True if it finished in time.

        Resource handling: after ``timeout`` every remaining actor is killed at once
        (effects cancelled, no ``on_stop``) and the thespian system is shut down.
        """
        if self._closed:
            return True
        graceful = True
        if self.root is not None and self.root.id in self.registry:
            self.tell(self.root, StopRequest("shutdown"))
            try:
                await asyncio.wait_for(self._root_stopped.wait(), timeout)
            except TimeoutError:
                graceful = False
                log.warning("actor tree did not stop within %.1fs; killing the rest", timeout)
        for actor_id in reversed(self.registry.ids()):
            record = self.registry.get(actor_id)
            if record is not None and record.cell is not None:
                record.cell._cleanup()
                record.cell.alive = False
                self.registry.remove(actor_id, record)
        self._closed = True
        self._system.shutdown()
        return graceful

    # -- talking to actors --------------------------------------------------------------------
    def tell(self, target: ActorRef | str, message: Any) -> None:
        """Deliver ``message`` to the actor named by ``target``; dropped if it is gone."""
        record = self.registry.get(target.id if isinstance(target, ActorRef) else target)
        if record is None:
            self.dead_letters += 1
            return
        self._deliver(record.address, message, record.cell)

    def post(self, cell: Cell, message: Any) -> None:
        """Deliver to one specific incarnation (effects and timers use this)."""
        if cell.alive:
            self._deliver(cell.myAddress, message, cell)

    async def ask(self, target: ActorRef | str, message: Any, timeout: float = 5.0) -> Any:
        """Send ``message`` and await the reply without blocking the loop.

        The reply is ``receive``'s return value, or what the actor gives ``reply`` /
        a deferred ``Reply`` later (for example after an effect completes).

        Raises:
            ActorNotFound: no live actor has that id.
            AskTimeout: no reply within ``timeout`` seconds.
            ActorStopped: the actor stopped before replying.
            Exception: whatever the handler raised (the actor itself has failed too).
        """
        actor_id = target.id if isinstance(target, ActorRef) else target
        record = self.registry.get(actor_id)
        if record is None:
            raise ActorNotFound(actor_id)
        future: asyncio.Future[Any] = self.loop.create_future()
        self._deliver(record.address, Envelope(message, future), record.cell)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AskTimeout(f"{actor_id} did not reply within {timeout}s") from None

    def _deliver(self, address: Any, message: Any, cell: Cell | None = None) -> None:
        if self._dispatching:
            self._backlog.append((address, message, cell))
            return
        if self._closed:
            raise RuntimeClosed("the actor runtime is shut down")
        self._dispatching = True
        try:
            self._send(address, message, cell)
            backlog = self._backlog
            while backlog:
                self._send(*backlog.popleft())
            if self.exits >= _PRUNE_EVERY:
                self._prune_dead_addresses()
        finally:
            self._dispatching = False

    def _send(self, address: Any, message: Any, cell: Cell | None) -> None:
        """One delivery and everything it causes, as thespian's ``tell`` does it.

        With thespian's queue empty (the usual case between dispatches), handing a
        message of ours to its cell is what ``simpleSystemBase.tell`` would do -- queue
        it, pop it, find the cell, call ``receiveMessage`` -- minus that machinery (a
        timer object, a lock, two registry reads, a DEBUG log call per message: about a
        third of a short message's cost). What the handler sent (``Actor.tell``, exits)
        is then run through thespian's queue as before, in order. Anything already
        queued, and thespian's own messages, take thespian's path so the order and
        thespian's exit handling stay its own.

        Error handling: ``Cell.receiveMessage`` catches what a behaviour raises; an error
        of the runtime itself is logged once here (thespian would retry the message, re-
        running its side effects, then drop it).
        """
        base = self._base
        if (cell is None or not self._direct or base._pendingSends
                or message.__class__ in _THESPIAN_TYPES):
            # The system base's own tell: ActorSystem.tell only adds a type check of the
            # address, which the registry already guarantees.
            self._base_tell(address, message)
            return
        try:
            cell.receiveMessage(message, None)
        except Exception:
            log.exception("actor %s: the runtime failed delivering %r",
                          cell.actor_id, type(message).__name__)
        if base._pendingSends:
            base._runSends()

    def _prune_dead_addresses(self) -> None:
        """Drop thespian's registry entries of dead actors.

        simpleSystemBase never deletes an ended actor's entry; it sets it to None, so its
        registry grows by one entry per actor ever created (every restart, every
        connection). A missing entry and a None one mean the same to thespian (the message
        is dropped), so deleting them is safe between dispatches. Amortised: one sweep per
        ``_PRUNE_EVERY`` ended incarnations.
        """
        self.exits = 0
        base = self._system._systemBase
        registry = base.actorRegistry
        for key in [key for key, ref in registry.items() if ref is None]:
            del registry[key]
        # Cells are primary actors, so thespian tells the system's "external requester"
        # proxy of each exit; it keeps them for ``ActorSystem.listen``, which we never use.
        external = registry[self._system.systemAddress.actorAddressString].instance
        responses = getattr(external, "responses", None)
        if responses:
            responses.clear()

    # -- introspection and admin actions ------------------------------------------------
    def tree(self) -> list[dict[str, Any]]:
        """The live supervision tree as nested dicts (see ``ActorRecord.snapshot``)."""
        return self.registry.tree()

    def actor(self, actor_id: str) -> dict[str, Any]:
        record = self.registry.get(actor_id)
        if record is None:
            raise ActorNotFound(actor_id)
        return record.snapshot()

    def stop_actor(self, actor_id: str, *, force: bool = False) -> None:
        """Stop an actor gracefully; its supervisor does not restart it.

        A permanent actor is one the tree must always have (a shard, a monitor, a
        supervisor): stopped, it would stay down for good while its supervisor keeps its
        spec, so that is refused unless ``force`` (tests, or an operator who means it;
        ``restart_actor`` brings it back). Temporary and transient actors stop freely.

        Raises ActorNotFound if no live actor has that id, StopRefused for a permanent
        actor without ``force``.
        """
        record = self.registry.get(actor_id)
        if record is None:
            raise ActorNotFound(actor_id)
        if record.restart is Restart.PERMANENT and not force:
            raise StopRefused(actor_id, record.parent)
        if record.parent is None:
            self.tell(actor_id, StopRequest("stopped by admin"))
        else:
            self.tell(record.parent, TerminateChild(actor_id))

    def restart_actor(self, actor_id: str) -> None:
        """Stop an actor and start a fresh instance (does not count toward intensity).

        Also starts a child its supervisor declares but is not running (one stopped with
        ``stop_actor(force=True)``). Raises ActorNotFound for the root and unknown ids.
        """
        record = self.registry.get(actor_id)
        parent = record.parent if record is not None else self._declaring_supervisor(actor_id)
        if parent is None:
            raise ActorNotFound(actor_id)
        self.tell(parent, RestartChild(actor_id))

    def _supervisor(self, actor_id: str) -> Supervisor | None:
        """The live Supervisor behaviour of ``actor_id``, or None (read in place: the
        runtime and every actor run on this thread, so nothing changes under us)."""
        record = self.registry.get(actor_id)
        cell = None if record is None else record.cell
        behavior = None if cell is None or not cell.alive else cell.behavior
        return behavior if isinstance(behavior, Supervisor) else None

    def _declaring_supervisor(self, actor_id: str) -> str | None:
        """The id of the live supervisor holding a spec for ``actor_id``, if any.

        Child ids are ``<supervisor id>/<spec id>`` (see ``Supervisor._full_id``)."""
        parent_id = actor_id.rpartition("/")[0]
        sup = self._supervisor(parent_id) if parent_id else None
        return parent_id if sup is not None and sup.declares(actor_id) else None

    def missing_children(self) -> list[str]:
        """Permanent children the tree declares that are not running, breadth first.

        Walks from the root through live supervisors' specs (not the registry), so a
        child that was stopped for good, or is between a kill and its restart, shows up.
        A missing supervisor is reported alone (its own children are not declared by
        anything live). Temporary children's subtrees are not walked: they are never
        restarted, so nothing under them is a standing part of the tree.
        """
        missing: list[str] = []
        pending = deque([self.root.id] if self.root is not None else [])
        while pending:
            sup = self._supervisor(pending.popleft())
            if sup is None:
                continue
            for child_id, restart, running in sup.child_status():
                if restart is Restart.TEMPORARY:
                    continue
                if not running or child_id not in self.registry:
                    if restart is Restart.PERMANENT:
                        missing.append(child_id)
                else:
                    pending.append(child_id)
        return missing

    def crash_actor(self, actor_id: str, reason: str = "crash injected") -> None:
        """Make an actor fail as if its code raised. Tests and demonstrations only.

        Raises CrashNotAllowed unless the runtime was built with ``allow_crash=True``.
        """
        if not self.allow_crash:
            raise CrashNotAllowed("crash_actor needs Runtime(allow_crash=True)")
        if actor_id not in self.registry:
            raise ActorNotFound(actor_id)
        self.tell(actor_id, CrashRequest(reason))
