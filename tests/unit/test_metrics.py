"""Metrics collection: a real node's registry read through the Prometheus text parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors import Runtime
from broker.config import UNKNOWN_NAMESPACE, config_from_mapping
from broker.engine.memory import MemoryEngine
from broker.metrics import LATENCY_SAMPLE_EVERY, flatten_statistics
from broker.monitor.alerts import AlertEvaluator, parse_rules
from broker.monitor.board import RestartTally
from broker.monitor.sampler import Sampler, process_stats
from broker.node import Node
from broker.tree import node_tree

CONFIG = {"http_api": {"insecure": True}, "client": {"insecure": True},
          "chorus": {"shard_count": 2}, "channel": {"namespaces": [{"name": "chat"}]}}


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    engine = MemoryEngine()
    await engine.start()
    runtime = Runtime(allow_crash=True)
    node = Node(config_from_mapping(CONFIG), runtime, engine, "unit")
    runtime.start(node_tree(node))
    yield node
    await runtime.shutdown(2.0)
    await engine.close()


def scrape(node: Node, accept: str = "") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the node's registry as {(name, sorted labels): value}."""
    body, _ = node.metrics.exposition(accept)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def value(samples: dict[Any, float], metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


async def test_publications_count_by_namespace_with_unknown_names_folded(node: Node) -> None:
    for channel in ("chat:1", "chat:2", "plain", "nope:1", "other:2"):
        await node.publish(channel, b"{}")
    samples = scrape(node)
    assert value(samples, "chorus_messages_in_total", namespace="chat") == 2
    assert value(samples, "chorus_messages_in_total", namespace="") == 1
    assert value(samples, "chorus_messages_in_total", namespace=UNKNOWN_NAMESPACE) == 2
    assert value(samples, "chorus_publications_total") == 5
    assert not any("chat:1" in str(key) for key in samples), "no channel name as a label"


async def test_publish_latency_is_sampled_one_in_n(node: Node) -> None:
    for _ in range(3 * LATENCY_SAMPLE_EVERY):
        await node.publish("chat:x", b"1")
    assert value(scrape(node), "chorus_publish_deliver_seconds_count") == 3


async def test_deliveries_by_namespace_and_node_counters_are_read_at_scrape(node: Node) -> None:
    node.metrics_delivered(7, "chat:room")
    node.metrics_delivered(3)  # callers without a channel still count in the total
    node.count_command("publish")
    node.count_slow_consumer()
    node.loop_lag = 0.25
    samples = scrape(node)
    assert value(samples, "chorus_deliveries_total") == 10
    assert value(samples, "chorus_messages_out_total", namespace="chat") == 7
    assert value(samples, "chorus_client_commands_total", method="publish") == 1
    assert value(samples, "chorus_slow_consumer_disconnects_total") == 1
    assert value(samples, "chorus_loop_lag_seconds") == 0.25
    assert value(samples, "chorus_engine_up") == 1
    assert ("chorus_engine_statistic", (("name", "history.streams"),)) in samples
    assert value(samples, "process_open_fds") > 0, "process collector registered"


async def test_actor_restarts_by_kind_never_decrease(node: Node) -> None:
    node.runtime.crash_actor("chorus/shards/shard-0")
    node.runtime.crash_actor("chorus/shards/shard-1")
    samples = scrape(node)
    assert value(samples, "chorus_actor_restarts_total", kind="shard") == 2
    assert value(samples, "chorus_actors", kind="shard") == 2
    node.runtime.stop_actor("chorus/shards/shard-1", force=True)  # its record (and count) goes away
    assert value(scrape(node), "chorus_actor_restarts_total", kind="shard") == 2


async def test_active_alerts_are_exposed_as_a_metric(node: Node) -> None:
    evaluator = AlertEvaluator(parse_rules(["busy: connections >= 0 severity critical"]))
    evaluator.observe(0.0, {"connections": 0.0})
    node.metrics.board.active_alerts = evaluator.active
    assert value(scrape(node), "chorus_alerts_active", alert="busy", severity="critical") == 1


async def test_openmetrics_on_request(node: Node) -> None:
    body, content_type = node.metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


async def test_sampler_reads_counts_rates_and_process(node: Node) -> None:
    sampler = Sampler(node, node.metrics.board)
    sampler.take(0.0)
    node.publications += 20
    sample = sampler.take(2.0)
    assert sample["publications_rate"] == 10.0
    assert sample["connections"] == 0 and sample["engine_up"] == 1.0
    assert sample["rss_bytes"] > 1e6 and sample["open_files"] > 0


def test_process_stats_on_linux() -> None:
    stats = process_stats()
    assert stats["rss_bytes"] > 0
    assert 0 < stats["open_files"] <= stats.get("open_files_limit", float("inf"))


@dataclass
class _Record:
    id: str
    kind: str
    restarts: int


def test_restart_tally_adds_only_increases() -> None:
    tally = RestartTally()
    assert tally.update([_Record("a", "shard", 1), _Record("b", "conn", 0)]) == {"shard": 1}
    assert tally.update([_Record("a", "shard", 3)]) == {"shard": 3}
    assert tally.update([_Record("a", "shard", 1)]) == {"shard": 3}  # reborn id: no decrease
    assert tally.update([_Record("a", "shard", 2)]) == {"shard": 4}
    assert tally.total == 4


def test_flatten_statistics_walks_nested_dataclasses() -> None:
    @dataclass
    class Inner:
        count: int
        ok: bool

    @dataclass
    class Outer:
        inner: Inner
        ratio: float
        name: str

    assert list(flatten_statistics(Outer(Inner(3, True), 0.5, "x"))) == [
        ("inner.count", 3.0), ("ratio", 0.5)]
