"""Three broker processes on one Redis: every client gets every publication, in order.

Clients (centrifuge-python, recoverable subscriptions) sit on every node, all subscribed
to the same channels; publications go round-robin through each node's ``/api/publish``.
Each subscription must end with offsets 1..N of its channel, consecutive, in order,
each carrying the payload the API acknowledged at that offset.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.harness import Publisher, node_processes, settle, subscribers
from tests.cluster.ledger import offsets
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.redis]

PUBLICATIONS = 300


async def test_every_client_on_every_node_gets_every_publication_in_offset_order(
        tmp_path: Path, redis: RedisServer, channels: list[str]) -> None:
    async with node_processes(tmp_path, {"address": [redis.url]}, 3) as nodes, \
            subscribers(nodes, channels, per_node=2) as subs:
        publisher = Publisher(nodes, channels)
        await publisher.run(PUBLICATIONS)
        result = await settle(publisher, subs)
    assert publisher.failed == 0, publisher.failures
    assert result.acknowledged == PUBLICATIONS
    assert result.problems == [], result.details()
    assert result.pending == 0 and result.signals == 0, result.line()
    for channel in channels:
        count = len(publisher.acked.by_channel[channel])
        assert {p.epoch for p in publisher.acked.by_channel[channel]} == {
            next(iter(publisher.acked.by_channel[channel])).epoch}
        for sub in subs:
            log = next(log for log in sub.logs if log.channel == channel)
            assert list(offsets(log)) == list(range(1, count + 1)), (sub.node, channel)
    # every one of 6 clients x 3 channels held every acknowledged publication
    assert result.held == PUBLICATIONS * len(subs)
