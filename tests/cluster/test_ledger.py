"""The audit of the cluster tests, on hand-made logs (pure logic, no servers)."""

from __future__ import annotations

from tests.cluster.ledger import Acknowledged, Position, SubscriptionLog, audit


def acked(*items: tuple[str, int, int]) -> dict[Position, int]:
    book = Acknowledged()
    for epoch, offset, payload in items:
        book.add("c", epoch, offset, payload)
    return book.by_channel["c"]


def log_of(*events: tuple[object, ...]) -> SubscriptionLog:
    log = SubscriptionLog("c")
    for event in events:
        if event[0] == "sub":
            _, epoch, offset, was_recovering, recovered = event
            log.subscribed(str(epoch), int(str(offset)), was_recovering=bool(was_recovering),
                           recovered=bool(recovered))
        else:
            log.publication(int(str(event[1])), int(str(event[2])))
    return log


def test_everything_held_in_order_is_clean() -> None:
    log = log_of(("sub", "e", 0, False, False), ("pub", 1, 10), ("pub", 2, 11))
    result = audit(log, acked(("e", 1, 10), ("e", 2, 11)))
    assert (result.held, result.signalled, result.pending, result.clean) == (2, 0, 0, True)


def test_a_missing_publication_not_yet_reached_is_pending_not_silent() -> None:
    log = log_of(("sub", "e", 0, False, False), ("pub", 1, 10))
    result = audit(log, acked(("e", 1, 10), ("e", 2, 11)))
    assert (result.held, result.pending, result.silent) == (1, 1, [])


def test_a_gap_is_a_violation_and_the_skipped_publication_is_silent() -> None:
    log = log_of(("sub", "e", 0, False, False), ("pub", 1, 10), ("pub", 3, 12))
    result = audit(log, acked(("e", 1, 10), ("e", 2, 11), ("e", 3, 12)))
    assert result.silent == [Position("e", 2)]
    assert result.violations == ["gap: 3 after Position(epoch='e', offset=1)"]


def test_a_recovery_failure_signal_covers_the_old_tail_and_the_new_head() -> None:
    log = log_of(("sub", "old", 0, False, False), ("pub", 1, 10),
                 ("sub", "new", 2, True, False), ("pub", 3, 14))
    book = acked(("old", 1, 10), ("old", 2, 11), ("new", 1, 12), ("new", 2, 13), ("new", 3, 14))
    result = audit(log, book)
    assert (result.held, result.signalled, result.signals, result.clean) == (2, 3, 1, True)


def test_a_new_epochs_offsets_taken_as_the_old_stream_are_violations() -> None:
    log = log_of(("sub", "old", 0, False, False), ("pub", 1, 10), ("pub", 2, 11),
                 ("pub", 1, 12))
    result = audit(log, acked(("old", 1, 10), ("old", 2, 11), ("new", 1, 12)))
    assert not result.clean
    assert "repeat/out of order: 1 after Position(epoch='old', offset=2)" in result.violations


def test_recovered_resubscribe_must_not_skip() -> None:
    log = log_of(("sub", "e", 0, False, False), ("pub", 1, 10),
                 ("sub", "e", 3, True, True), ("pub", 3, 12))
    result = audit(log, acked(("e", 1, 10), ("e", 2, 11), ("e", 3, 12)))
    assert result.silent == [Position("e", 2)] and result.violations


def test_an_offset_acknowledged_twice_is_reported() -> None:
    book = Acknowledged()
    book.add("c", "e", 1, 10)
    book.add("c", "e", 1, 11)
    assert book.reused == [("c", Position("e", 1), 10, 11)]
