"""How a client's subscribe registers with its shard: one live ``Subscribe`` when the
result needs no engine round trip (no history, one node), else a pending ``Subscribe``
at once and an ``Activate`` after the result (no sockets, no runtime)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from broker.config import config_from_mapping
from broker.connection.commands import handle_internal
from broker.connection.framing import WS_JSON
from broker.connection.state import Phase, Session, Subscription, options_for
from broker.connection.subscriptions import finish_subscription, start_subscription
from broker.shard.actor import Activate, Resync, Subscribe


class Node:
    """What the subscribe path asks of the node; records what it tells the shards."""

    def __init__(self, remote: bool = False) -> None:
        self.remote = remote
        self.journal = None
        self.told: list[tuple[str, Any]] = []

    def subscribed(self, channel: str) -> None:
        pass

    def tell_shard(self, channel: str, message: Any) -> None:
        self.told.append((channel, message))

    def spawn(self, coro: Any) -> None:  # pragma: no cover - no presence here
        coro.close()


def conn(**channel: Any) -> Any:
    config = config_from_mapping({"client": {"insecure": True}, "http_api": {"key": "k"},
                                  "channel": {"without_namespace": channel}})
    return SimpleNamespace(config=config, node=Node(), session=Session("c1", Phase.CONNECTED),
                           outbox=object(), delivery=WS_JSON, codec=SimpleNamespace(binary=False),
                           run_effect=lambda coro, **_: coro.close())


def test_a_subscribe_answered_at_once_registers_live_in_one_message() -> None:
    c = conn()
    sub = Subscription("news", options_for(c.config, "news"))
    answered: list[dict[str, Any]] = []
    start_subscription(c, sub, {}, answered.append)
    assert answered == [{}]
    [(channel, message)] = c.node.told
    assert channel == "news" and type(message) is Subscribe
    assert (message.conn_id, message.live, message.after_offset) == ("c1", True, 0)
    assert message.outbox is c.outbox and sub.held is None and sub.active


def test_a_subscribe_waiting_for_the_engine_registers_pending_first() -> None:
    c = conn(history_size=10, history_ttl=60)
    sub = Subscription("news", options_for(c.config, "news"))
    start_subscription(c, sub, {}, lambda result: None)  # the position is an effect
    [(_, message)] = c.node.told
    assert type(message) is Subscribe and not message.live
    assert not any(type(m) is Activate for _, m in c.node.told)


def test_a_resync_while_subscribing_follows_the_reply_instead_of_dropping_it() -> None:
    c = conn(history_size=10, history_ttl=60, force_recovery=True)
    pushed: list[dict[str, Any]] = []
    c.write = pushed.append
    c._drop_subscription = lambda channel, send_leave: c.session.subs.pop(channel)
    sub = Subscription("news", options_for(c.config, "news"))
    sub.recoverable = True
    c.session.subs["news"] = sub
    start_subscription(c, sub, {}, lambda result: None)  # pending: the engine answers later

    handle_internal(c, Resync("news"))
    assert c.session.subs.get("news") is sub and pushed == []  # kept, not dropped unanswered

    replies: list[dict[str, Any]] = []
    finish_subscription(c, sub, replies.append, {"epoch": "e", "offset": 3}, 3)
    assert replies and pushed == [{"push": {"channel": "news", "unsubscribe": {
        "code": 2500, "reason": "insufficient state"}}}]
    assert "news" not in c.session.subs
