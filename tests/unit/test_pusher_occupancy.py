"""OccupancyTable: per channel one engine step at a time, following the local changes in
order (no event loop needed)."""

from __future__ import annotations

from broker.config.pusher import PusherApp, PusherWebhook
from broker.pusher.occupancy import OCCUPY, VACATE, OccupancyTable, wants_occupancy


def test_first_hold_occupies_and_last_release_vacates() -> None:
    table = OccupancyTable()
    assert table.set("c", held=True) == OCCUPY
    assert table.done("c") is None
    assert table.set("c", held=True) is None  # held already
    assert table.set("c", held=False) == VACATE
    assert table.done("c") is None
    assert not table.entries  # forgotten once vacated


def test_changes_during_a_step_wait_for_it_and_fold() -> None:
    table = OccupancyTable()
    assert table.set("c", held=True) == OCCUPY
    assert table.set("c", held=False) is None  # occupy in flight: wait
    assert table.set("c", held=True) is None
    assert table.done("c") is None  # back where the occupy left it: nothing more
    assert table.set("c", held=False) == VACATE
    assert table.set("c", held=True) is None
    assert table.done("c") == OCCUPY  # moved meanwhile: the next step follows
    assert table.done("c") is None


def test_a_release_of_an_unknown_channel_does_nothing() -> None:
    table = OccupancyTable()
    assert table.set("c", held=False) is None
    assert table.done("c") is None and not table.entries


def test_refreshes_skip_busy_channels_and_block_until_done() -> None:
    table = OccupancyTable()
    for channel in ("a", "b"):
        table.set(channel, held=True)
    table.done("a")  # "b" still occupying
    assert table.refreshes() == ["a"]
    assert table.set("a", held=False) is None  # waits for the refresh
    assert table.refreshes() == []
    assert table.done("a") == VACATE


def test_only_apps_with_an_occupancy_webhook_are_tracked() -> None:
    hook = PusherWebhook(url="http://x/h")
    assert wants_occupancy(PusherApp(webhooks=(hook,)))
    assert not wants_occupancy(PusherApp(webhooks=(
        PusherWebhook(url="http://x/h", event_types=("member_added",)),)))
    assert not wants_occupancy(PusherApp())
