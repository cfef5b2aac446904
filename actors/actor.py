"""Actor: the behaviour you write. The runtime hosts it in a thespian actor (a *cell*).

An actor handles one message at a time in ``receive``. It never blocks and never awaits:
I/O is an *effect* (``run_effect``) whose result comes back as a message, and time is a
*timer* (``start_timer``) that comes back as a message.

Failure policy ("let it crash"):
    An exception escaping ``on_start``, ``receive``, a timer message or an effect callback
    fails the actor. Its pending effects are cancelled, its timers dropped, ``on_failure``
    is called (best effort; errors in it are logged), and the failure — exception and
    traceback — is reported to the actor's *supervisor* (not to the sender of the message).
    The supervisor applies its strategy; a restart builds a fresh instance through the
    child spec's factory, so no state survives a crash. An ``ask`` whose handler raised
    gets the exception. ``on_stop`` runs on a graceful stop only, never after a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar

from actors.ref import ActorRef

if TYPE_CHECKING:
    from actors.cell import Cell
    from actors.loop import Runtime

ResultCallback = Callable[[Any], None]
ErrorCallback = Callable[[BaseException], None]


class Reply:
    """A promise to answer one ``ask`` later (after an effect, say).

    Resolving it twice, or after the asker timed out, does nothing.
    """

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self._future = future

    def send(self, value: Any) -> None:
        if not self._future.done():
            self._future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self._future.done():
            self._future.set_exception(error)

    @property
    def done(self) -> bool:
        return self._future.done()


class TimerHandle:
    """Cancels a timer started with ``Actor.start_timer``; cancelling twice is harmless."""

    __slots__ = ("_cell", "timer_id")

    def __init__(self, cell: Cell, timer_id: int) -> None:
        self._cell = cell
        self.timer_id = timer_id

    def cancel(self) -> None:
        self._cell.cancel_timer(self.timer_id)

    @property
    def active(self) -> bool:
        return self._cell.timer_active(self.timer_id)


class Actor:
    """Base class of every actor behaviour. Override the hooks you need."""

    kind: ClassVar[str] = ""  # shown in introspection; defaults to the class name
    _cell: Cell

    # -- lifecycle hooks ------------------------------------------------------------
    def on_start(self) -> None:
        """Called once, before the first message. Raising here fails the actor."""

    def receive(self, message: Any) -> Any:
        """Handle one message. The return value answers an ``ask`` unless you replied."""
        raise TypeError(f"{type(self).__name__} got an unexpected message: {message!r}")

    def on_stop_requested(self, reason: str) -> bool:
        """A graceful stop was asked for. Return False to finish work first and call
        ``stop()`` yourself; the supervisor kills the actor when its shutdown timeout ends.
        """
        return True

    def on_stop(self) -> None:
        """Called on a graceful stop, after which the actor is gone."""

    def on_failure(self, error: BaseException) -> None:
        """Called after an unhandled exception, before the supervisor is told."""

    def on_kill(self, reason: str) -> None:
        """Called when the actor is killed without a graceful stop: its supervisor ended
        (failed, gave up, or was killed itself) or a stop outlived its shutdown timeout.

        Release here what must not outlive the actor (a socket, a registration); effects
        and timers are cancelled right after. Raising is logged and ignored.
        """

    def _release(self) -> None:
        """Runtime hook: the incarnation is ending (stop, failure or kill)."""

    # -- identity ---------------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        return self._cell.runtime

    @property
    def id(self) -> str:
        return self._cell.actor_id

    @property
    def ref(self) -> ActorRef:
        return ActorRef(self._cell.runtime, self._cell.actor_id)

    # -- talking ------------------------------------------------------------------------
    def tell(self, target: ActorRef | str, message: Any) -> None:
        """Send ``message`` to another actor (by ref or id), after this message is handled."""
        self._cell.send_to(target.id if isinstance(target, ActorRef) else target, message)

    def reply(self, value: Any) -> None:
        """Answer the ``ask`` being handled now (no-op for a plain ``tell``)."""
        self._cell.reply_now(value)

    def defer_reply(self) -> Reply | None:
        """Take over the current ``ask``'s answer, to give it later. None for a ``tell``."""
        return self._cell.defer_reply()

    # -- effects and timers --------------------------------------------------------------
    def run_effect(
        self,
        coro: Coroutine[Any, Any, Any],
        on_result: ResultCallback | None = None,
        on_error: ErrorCallback | None = None,
    ) -> asyncio.Task[Any]:
        """Run ``coro`` on the event loop; its outcome comes back as a message.

        ``on_result(value)`` or ``on_error(exc)`` then runs inside this actor. Without an
        ``on_error`` an exception fails the actor. The effect is cancelled if the actor
        stops or fails first; its callbacks then never run.
        """
        return self._cell.start_effect(coro, on_result, on_error)

    def start_timer(self, delay: float, message: Any, *, repeat: bool = False) -> TimerHandle:
        """Deliver ``message`` to ``receive`` after ``delay`` seconds (every ``delay`` if
        ``repeat``). Dropped when the actor stops or fails.
        """
        return TimerHandle(self._cell, self._cell.start_timer(delay, message, repeat))

    def stop(self) -> None:
        """Stop this actor normally once the current message is handled."""
        self._cell.stop_normally("normal")
