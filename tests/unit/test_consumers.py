"""Loop-free parts of the async consumers: batches, backoff, leases, decoding, config."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from broker.config import ConfigError, config_from_mapping, load_config
from broker.config.checks import config_warnings
from broker.consumers.commands import ApiCall, InvalidMessage, Publish, decode
from broker.consumers.state import Backoff, Batch, ConsumerBoard, ConsumerStats, Lease

BASE: dict[str, Any] = {"client": {"insecure": True}, "http_api": {"insecure": True}}


def with_consumers(*consumers: dict[str, Any]) -> dict[str, Any]:
    return {**BASE, "consumers": list(consumers)}


PG = {"name": "outbox", "enabled": True, "type": "postgresql",
      "postgresql": {"dsn": "postgresql://u@db:5432/app", "outbox_table_name": "chorus_outbox"}}
RS = {"name": "streams", "enabled": True, "type": "redis_stream",
      "redis_stream": {"address": ["127.0.0.1:6379"], "streams": ["s1", "s2"],
                       "consumer_group": "chorus"}}


# -- Batch -----------------------------------------------------------------------------------
def test_a_batch_goes_in_order_and_stops_at_the_first_temporary_failure() -> None:
    batch = Batch(["a", "b", "c", "d"], limit=4)
    assert batch.next() == "a"
    batch.done(redelivered=False)
    assert batch.next() == "b"
    batch.skip()  # invalid: removed too
    assert batch.next() == "c"
    batch.failed(RuntimeError("engine down"))
    assert batch.next() is None  # "c" and "d" stay for the next attempt, in order
    assert batch.finished == ["a", "b"]
    assert not batch.more_waiting
    stats = ConsumerStats("x", "postgresql")
    batch.account(stats)
    assert (stats.processed, stats.invalid, stats.errors) == (1, 1, 1)
    assert "engine down" in stats.last_error


def test_a_full_clean_batch_asks_to_poll_again_at_once() -> None:
    batch = Batch([1, 2], limit=2)
    while batch.next() is not None:
        batch.done(redelivered=True)
    assert batch.more_waiting and batch.finished == [1, 2]
    stats = ConsumerStats("x", "redis_stream")
    batch.account(stats)
    assert (stats.processed, stats.redeliveries) == (2, 2)
    short = Batch([1], limit=2)
    short.done(redelivered=False)
    assert not short.more_waiting


# -- Backoff and Lease --------------------------------------------------------------------------
def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(base=0.1, cap=1.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [min(1.0, 0.1 * 2 ** i) for i in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    backoff.reset()
    assert backoff.next() <= 0.1


def test_a_lease_is_renewed_every_third_of_its_ttl_and_lapses_after_it() -> None:
    lease = Lease(ttl=3.0)
    assert not lease.held and not lease.valid(0.0) and not lease.renew_due(0.0)
    lease.acquired(10.0)
    assert lease.valid(12.9) and not lease.renew_due(10.9) and lease.renew_due(11.0)
    assert not lease.valid(13.0)
    lease.lost()
    assert not lease.held


# -- board --------------------------------------------------------------------------------------
def test_the_board_holds_the_enabled_consumers_with_their_partition_counts() -> None:
    config = config_from_mapping(with_consumers(
        {**PG, "postgresql": {**PG["postgresql"], "num_partitions": 8}}, RS,
        {"name": "draft", "type": "postgresql"}))
    board = ConsumerBoard(config.consumers)
    assert [s.name for s in board] == ["outbox", "streams"]
    assert board.get("outbox").partitions == 8 and board.get("streams").partitions == 2
    assert board.as_list()[0]["lag"] is None


# -- decoding ------------------------------------------------------------------------------------
def test_a_publish_gets_the_derived_idempotency_key_unless_it_names_one() -> None:
    command = decode("publish", '{"channel": "news", "data": {"a": 1}, "tags": {"k": "v"}}',
                     "outbox:t:1")
    assert command == Publish(("news",), b'{"a":1}', "outbox:t:1", {"k": "v"}, False)
    own = decode("publish", b'{"channel": "news", "data": 1, "idempotency_key": "mine", '
                            b'"skip_history": true}', "outbox:t:2")
    assert isinstance(own, Publish)
    assert own.idempotency_key == "mine" and own.skip_history


def test_broadcast_and_b64data_and_other_api_methods() -> None:
    command = decode("broadcast", {"channels": ["a", "b"], "b64data": "aGk="}, "k")
    assert command == Publish(("a", "b"), b"hi", "k")
    call = decode("disconnect", '{"user": "42"}', "k")
    assert call == ApiCall("disconnect", {"user": "42"})


@pytest.mark.parametrize(("method", "payload", "reason"), [
    ("publish", "not json", "not JSON"),
    ("publish", "[1, 2]", "JSON object"),
    ("publish", '{"data": 1}', "channel required"),
    ("broadcast", '{"channels": [], "data": 1}', "channels required"),
    ("publish", '{"channel": "news"}', "data"),
    ("publish", '{"channel": "news", "b64data": "%%%"}', "base64"),
    ("publish", '{"channel": "news", "data": 1, "tags": {"k": 1}}', "tags"),
    ("publish", '{"channel": "nope:x", "data": 1}', "unknown channel"),
    ("shutdown", "{}", "unknown method"),
])
def test_messages_that_can_never_be_applied_are_invalid(method: str, payload: str,
                                                        reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        decode(method, payload, "k", lambda channel: not channel.startswith("nope:"))


# -- config ---------------------------------------------------------------------------------------
def test_consumers_load_with_centrifugo_keys_and_defaults() -> None:
    config = config_from_mapping(with_consumers(PG, RS))
    pg, rs = config.consumers
    assert pg.postgresql.num_partitions == 1 and pg.postgresql.partition_select_limit == 100
    assert pg.postgresql.partition_poll_interval == 0.3
    assert rs.redis_stream.visibility_timeout == 30.0
    assert (rs.redis_stream.payload_value, rs.redis_stream.method_value) == ("payload", "method")


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "bad name"}, r"consumers\[0\].name"),
    ({"postgresql": {"dsn": "", "outbox_table_name": "t"}}, r"consumers\[0\].postgresql.dsn"),
    ({"postgresql": {"dsn": "mysql://x/y", "outbox_table_name": "t"}}, "postgresql://user"),
    ({"postgresql": {"dsn": "postgresql://x:port/y", "outbox_table_name": "t"}},
     "postgresql://user"),
    ({"postgresql": {"dsn": "postgresql://x/y", "outbox_table_name": "t; DROP TABLE x"}},
     "outbox_table_name"),
    ({"postgresql": {"dsn": "postgresql://x/y", "outbox_table_name": "t",
                     "partition_notification_channel": "a-b"}},
     "partition_notification_channel"),
    ({"postgresql": {"dsn": "postgresql://x/y", "outbox_table_name": "t",
                     "num_partitions": 0}}, "num_partitions"),
    ({"type": "kafka"}, r"consumers\[0\].type"),
    ({"postgresql": {"dns": "x"}}, 'did you mean "dsn"'),
])
def test_a_bad_postgresql_consumer_is_refused_naming_its_key(change: dict[str, Any],
                                                             message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(with_consumers({**PG, **change}))


@pytest.mark.parametrize(("change", "message"), [
    ({"streams": []}, "streams: at least one"),
    ({"consumer_group": ""}, "consumer_group: required"),
    ({"address": []}, "address: at least one"),
    ({"address": ["nohost"]}, r"address\[0\]"),
    ({"num_workers": 2}, "num_workers"),
])
def test_a_bad_redis_stream_consumer_is_refused_naming_its_key(change: dict[str, Any],
                                                               message: str) -> None:
    consumer = {**RS, "redis_stream": {**RS["redis_stream"], **change}}
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(with_consumers(consumer))


def test_duplicate_names_are_refused_and_a_disabled_draft_only_warns() -> None:
    with pytest.raises(ConfigError, match="duplicate consumer name"):
        config_from_mapping(with_consumers(PG, {**RS, "name": "outbox"}))
    config = config_from_mapping(with_consumers({"name": "draft", "type": "postgresql"}))
    assert any("consumers[0].enabled: false" in w for w in config_warnings(config))


def test_consumers_come_from_a_json_environment_variable_too() -> None:
    config = load_config(env={"CHORUS_CONSUMERS": json.dumps([PG]),
                              "CHORUS_CLIENT_INSECURE": "true",
                              "CHORUS_HTTP_API_INSECURE": "true"})
    assert config.consumers[0].postgresql.outbox_table_name == "chorus_outbox"
    with pytest.raises(ConfigError, match="CHORUS_CONSUMERS"):
        load_config(env={"CHORUS_CONSUMERS": "not json", "CHORUS_HTTP_API_INSECURE": "true",
                         "CHORUS_CLIENT_INSECURE": "true"})
