"""The node's supervision tree, declared in one place.

```
chorus (rest_for_one)
├── engine (one_for_one) ── engine link monitor
├── shards (one_for_one) ── shard-0 .. shard-{S-1}
├── connections (one_for_one) ── timers (pings, write watch, presence refresh, stale),
│                                 one temporary actor per socket
├── monitors (one_for_one) ── node monitor, alerts, journal (connection journeys)
└── consumers (one_for_one) ── one actor per enabled consumer (only when there is one)
```
``rest_for_one`` at the root encodes the dependency: when the engine side restarts,
the shards and connections after it restart and re-establish their subscriptions.
The consumers come last: they publish through everything before them, they stop first
on shutdown, and their failures restart nothing else.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from actors import ChildSpec, Strategy, supervisor
from broker.cluster import EngineLinkActor
from broker.connection.pings import ConnectionTimersActor
from broker.consumers.actor import ConsumerActor
from broker.journal.actor import JournalActor
from broker.monitor.actor import AlertActor, NodeMonitorActor
from broker.names import (
    CONNECTIONS_SUPERVISOR,
    CONSUMERS_SUPERVISOR,
    ENGINE_SUPERVISOR,
    MONITORS_SUPERVISOR,
    ROOT_ID,
    SHARDS_SUPERVISOR,
    shard_name,
)
from broker.shard.actor import ShardActor

if TYPE_CHECKING:
    from broker.node import Node



def node_tree(node: Node) -> ChildSpec:
    engine = [ChildSpec("link", partial(EngineLinkActor, node), kind="engine")]
    shards = [ChildSpec(shard_name(i), partial(ShardActor, i, node), kind="shard")
              for i in range(node.shard_count)]
    timers = [ChildSpec("timers", partial(ConnectionTimersActor, node), kind="timers")]
    monitors = [ChildSpec("node", partial(NodeMonitorActor, node), kind="monitor"),
                ChildSpec("alerts", partial(AlertActor, node), kind="alerts")]
    if node.journeys is not None:  # journeys.enabled
        monitors.append(ChildSpec("journal", partial(JournalActor, node), kind="journal"))
    consumers = [ChildSpec(c.name, partial(ConsumerActor, node, c), kind="consumer")
                 for c in node.config.consumers if c.enabled]
    children = [
        supervisor(ENGINE_SUPERVISOR, engine),
        supervisor(SHARDS_SUPERVISOR, shards, max_restarts=max(3, node.shard_count)),
        supervisor(CONNECTIONS_SUPERVISOR, timers, max_restarts=1000, period=1.0),
        supervisor(MONITORS_SUPERVISOR, monitors),
    ]
    if consumers:
        # Temporary trouble is retried inside each consumer; a crash restarts it, and a
        # consumer crashing over and over escalates (its input is then likely broken).
        children.append(supervisor(CONSUMERS_SUPERVISOR, consumers,
                                   max_restarts=3 * len(consumers), period=30.0))
    return supervisor(
        ROOT_ID,
        children,
        strategy=Strategy.REST_FOR_ONE,
        kind="root",
    )
