"""Who acknowledged what, who holds what: the audit behind the cluster and fault tests.

Pure logic, no I/O and no event loop (tested in test_ledger.py).

``Acknowledged`` collects what the server API acknowledged: per channel, the stream
position ``(epoch, offset)`` and the publication's payload id. ``SubscriptionLog`` is what
one recoverable subscription saw, in arrival order: its subscribe replies (first
subscribe, recovered resubscribe, resubscribe that was *told* recovery failed) and its
publications, each stamped with the epoch of the reply before it.

``audit(log, acked)`` checks, for one subscription:

- order: inside one subscription stream, offsets advance by exactly 1; a jump, a
  repeat, an epoch change or a resubscribe without recovery are *violations* unless a
  subscribe reply with ``was_recovering and not recovered`` (a *signal*) came first;
- completeness: every acknowledged publication after the first subscribe position is
  *held* (same payload at the same position), or *signalled* (it falls into the span a
  signal skipped), or *pending* (beyond what the subscriber has reached so far: a test
  waits for pending to drain), or else *silent* — the loss the tests forbid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Acknowledged", "Audit", "Position", "SubscriptionLog", "audit", "offsets"]


@dataclass(frozen=True, slots=True, order=True)
class Position:
    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class _Subscribed:
    position: Position
    was_recovering: bool
    recovered: bool


@dataclass(frozen=True, slots=True)
class _Received:
    offset: int
    payload: int


@dataclass
class Acknowledged:
    """Publications the server acknowledged, per channel: position -> payload id.

    ``reused`` lists positions acknowledged twice with different payloads: the store
    handed out one offset for two publications (e.g. a write lost in a failover and
    the offset given again under the same epoch) — that is silent loss too.
    """

    by_channel: dict[str, dict[Position, int]] = field(default_factory=dict)
    reused: list[tuple[str, Position, int, int]] = field(default_factory=list)

    def add(self, channel: str, epoch: str, offset: int, payload: int) -> None:
        positions = self.by_channel.setdefault(channel, {})
        position = Position(epoch, offset)
        earlier = positions.get(position)
        if earlier is not None and earlier != payload:
            self.reused.append((channel, position, earlier, payload))
        positions[position] = payload

    def count(self) -> int:
        return sum(len(p) for p in self.by_channel.values())


@dataclass
class SubscriptionLog:
    """Events of one subscription in arrival order (see the module docstring)."""

    channel: str
    events: list[_Subscribed | _Received] = field(default_factory=list)

    def subscribed(self, epoch: str, offset: int, *, was_recovering: bool,
                   recovered: bool) -> None:
        self.events.append(_Subscribed(Position(epoch, offset), was_recovering, recovered))

    def publication(self, offset: int, payload: int) -> None:
        self.events.append(_Received(offset, payload))

    def trace(self, limit: int = 80) -> str:
        """The last ``limit`` events, compactly, for a failure message: a subscribe
        reply as ``[epoch:offset r=was_recovering/recovered]``, a publication as
        ``offset#payload``."""
        def one(event: _Subscribed | _Received) -> str:
            if isinstance(event, _Received):
                return f"{event.offset}#{event.payload}"
            p = event.position
            return f"[{p.epoch}:{p.offset} r={int(event.was_recovering)}/{int(event.recovered)}]"
        shown = self.events[-limit:]
        earlier = len(self.events) - len(shown)
        return (f"...({earlier} earlier) " if earlier else "") + " ".join(map(one, shown))

    @property
    def signals(self) -> int:
        return sum(1 for e in self.events
                   if isinstance(e, _Subscribed) and e.was_recovering and not e.recovered)


@dataclass
class Audit:
    held: int = 0
    signalled: int = 0
    pending: int = 0
    silent: list[Position] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    signals: int = 0

    @property
    def clean(self) -> bool:
        """Nothing lost silently and nothing out of order (pending may remain)."""
        return not self.silent and not self.violations


@dataclass
class _Walk:
    start: Position | None = None
    position: Position | None = None
    held: dict[Position, int] = field(default_factory=dict)
    skipped: list[tuple[Position, Position]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def _walk(log: SubscriptionLog) -> _Walk:
    walk = _Walk()
    for event in log.events:
        if isinstance(event, _Subscribed):
            _on_subscribed(walk, event)
        elif walk.position is None:
            walk.violations.append(f"publication {event.offset} before any subscribe reply")
        else:
            _on_received(walk, event, walk.position)
    return walk


def _on_subscribed(walk: _Walk, event: _Subscribed) -> None:
    if walk.position is None:
        walk.start = walk.position = event.position
    elif event.was_recovering and not event.recovered:
        walk.skipped.append((walk.position, event.position))  # told: a signal
        walk.position = event.position
    elif not event.was_recovering:
        walk.violations.append(f"resubscribed without recovery at {event.position}")
        walk.position = event.position
    elif event.position.epoch != walk.position.epoch:
        walk.violations.append(f"recovered across epochs {walk.position} -> {event.position}")
        walk.position = event.position


def _on_received(walk: _Walk, event: _Received, position: Position) -> None:
    here = Position(position.epoch, event.offset)
    if event.offset != position.offset + 1:
        kind = "repeat/out of order" if event.offset <= position.offset else "gap"
        walk.violations.append(f"{kind}: {event.offset} after {position}")
    if here in walk.held and walk.held[here] != event.payload:
        walk.violations.append(f"two payloads at {here}")
    walk.held[here] = event.payload
    if event.offset > position.offset:
        walk.position = here


def _covered(position: Position, skipped: list[tuple[Position, Position]],
             held_epochs: set[str]) -> bool:
    """True when a signal skipped over ``position``."""
    for before, after in skipped:
        if before.epoch == after.epoch:
            if position.epoch == before.epoch and before.offset < position.offset <= after.offset:
                return True
            continue
        if position.epoch == before.epoch and position.offset > before.offset:
            return True
        if position.epoch == after.epoch and position.offset <= after.offset:
            return True
        if position.epoch not in held_epochs:  # an epoch that came and went in the jump
            return True
    return False


def audit(log: SubscriptionLog, acked: dict[Position, int]) -> Audit:
    """Check one subscription against the acknowledged publications of its channel."""
    walk = _walk(log)
    result = Audit(violations=list(walk.violations), signals=log.signals)
    if walk.start is None or walk.position is None:
        result.pending = len(acked)
        return result
    held_epochs = {p.epoch for p in walk.held} | {walk.start.epoch, walk.position.epoch}
    for position, payload in sorted(acked.items()):
        if position.epoch == walk.start.epoch and position.offset <= walk.start.offset:
            continue  # before the subscription began
        got = walk.held.get(position)
        if got is not None:
            if got == payload:
                result.held += 1
            else:
                result.violations.append(f"{position}: payload {got}, acknowledged {payload}")
        elif _covered(position, walk.skipped, held_epochs):
            result.signalled += 1
        elif position.epoch == walk.position.epoch and position.offset > walk.position.offset:
            result.pending += 1
        else:
            result.silent.append(position)
    return result


def offsets(log: SubscriptionLog) -> Iterator[int]:
    """The offsets of the publications ``log`` received, in arrival order."""
    return (e.offset for e in log.events if isinstance(e, _Received))
