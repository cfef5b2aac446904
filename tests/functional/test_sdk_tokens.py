"""Connection and subscription tokens with the official Python SDK, over JSON and protobuf:
expiry and refresh through ``get_token``, and refused tokens."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from centrifuge import ClientState, ReplyError

from broker.auth import make_token
from tests.functional.conftest import (
    SECRET,
    base_config,
    next_event,
    run_node,
    sdk_client,
    wait_until,
)

OTHER_SECRET = "another-secret-0123456789abcdef012345"


def lasting(seconds: int, user: str = "alice", **options: Any) -> str:
    """A token valid for at least ``seconds`` (less than one more). ``exp`` is whole
    seconds: ``make_token(ttl=1)`` gives now truncated + 1, which may be a few
    milliseconds away, so a token could expire before a loaded machine delivers it."""
    return make_token(SECRET, user, claims={"exp": math.ceil(time.time()) + seconds}, **options)


class Tokens:
    """A ``get_token`` callback minting fresh tokens (valid ``ttl`` s or more, see
    ``lasting``; None: no expiry) and counting the calls."""

    def __init__(self, user: str = "alice", ttl: int | None = None,
                 channel: str | None = None) -> None:
        self.user, self.ttl, self.channel = user, ttl, channel
        self.calls = 0

    def _mint(self, **options: Any) -> str:
        if self.ttl is None:
            return make_token(SECRET, self.user, **options)
        return lasting(self.ttl, self.user, **options)

    async def connection(self) -> str:
        self.calls += 1
        return self._mint()

    async def subscription(self, channel: str) -> str:
        self.calls += 1
        return self._mint(channel=self.channel or channel)


def tampered(token: str) -> str:
    head, payload, signature = token.split(".")
    return ".".join((head, payload, ("A" if signature[0] != "A" else "B") + signature[1:]))


def expired(user: str = "alice", **claims: Any) -> str:
    return make_token(SECRET, user, ttl=-30, **claims)


@pytest.mark.parametrize("token", [
    make_token(OTHER_SECRET, "alice"),  # signed with another key
    tampered(make_token(SECRET, "alice")),  # bad signature
    "not-a-jwt",
], ids=["wrong-key", "bad-signature", "garbage"])
async def test_invalid_connection_token_disconnects_with_3500(protobuf: bool,
                                                              token: str) -> None:
    async with run_node(base_config()) as node, \
            sdk_client(node, protobuf=protobuf, token=token, connect=False) as sdk:
        await sdk.client.connect()
        disconnected = await next_event(sdk.events.disconnected)
        assert (disconnected.code, disconnected.reason) == (3500, "invalid token")
        assert sdk.client.state is ClientState.DISCONNECTED


async def test_expired_at_connect_gets_a_new_token(protobuf: bool) -> None:
    tokens = Tokens()
    async with run_node(base_config()) as node, \
            sdk_client(node, protobuf=protobuf, token=expired(), connect=False,
                       get_token=tokens.connection) as sdk:
        await sdk.client.connect()
        error = await next_event(sdk.events.errors)
        assert isinstance(error.error, ReplyError) and error.error.code == 109
        await next_event(sdk.events.connected)
        assert tokens.calls == 1
        assert node.node.connections[sdk.client_id].session.user == "alice"


async def test_connection_refresh_keeps_the_connection(protobuf: bool) -> None:
    """Tokens live 1 s (to 2 s); the server closes 1.5 s after expiry unless refreshed.

    (Whole-second ``exp`` and ``ttl`` mean the SDK refreshes up to a second after expiry,
    which is why Centrifugo has a close delay at all.)
    """
    tokens = Tokens(ttl=1)
    config = base_config(client={"expired_close_delay": "1500ms"})
    async with run_node(config) as node, \
            sdk_client(node, protobuf=protobuf, token=lasting(1),
                       get_token=tokens.connection) as sdk:
        _, events = await sdk.subscribe("kept")
        client_id = sdk.client_id
        session = node.node.connections[client_id].session
        first_expiry = session.expire_at or 0
        # The third refresh comes after the first token's expiry + close delay.
        await wait_until(lambda: tokens.calls >= 3, "three connection refreshes", 15)  # ~1 s apart
        await wait_until(lambda: (session.expire_at or 0) >= first_expiry + 2,
                         "the server to take the refreshed tokens")
        await node.api("publish", {"channel": "kept", "data": "still here"})
        assert sdk.value((await next_event(events.publications)).data) == "still here"
        assert sdk.events.connecting.qsize() == 1, "never reconnected"
        assert sdk.client_id == client_id and sdk.events.errors.empty()


async def test_expired_connection_without_refresh_ends_unauthorized(protobuf: bool) -> None:
    config = base_config(client={"expired_close_delay": "0s"})
    async with run_node(config) as node, \
            sdk_client(node, protobuf=protobuf, token=lasting(1)) as sdk:
        await next_event(sdk.events.connecting)  # connect() itself
        connecting = await next_event(sdk.events.connecting)
        assert (connecting.code, connecting.reason) == (3005, "connection expired")
        refused = await next_event(sdk.events.errors)  # reconnecting with the same token
        assert isinstance(refused.error, ReplyError) and refused.error.code == 109
        disconnected = await next_event(sdk.events.disconnected)
        assert disconnected.code == 1  # the SDK's "unauthorized": nothing to refresh with


async def test_private_channel_with_subscription_token(protobuf: bool) -> None:
    tokens = Tokens()
    async with run_node(base_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        _, events = await sdk.subscribe("$vault", get_token=tokens.subscription)
        await node.api("publish", {"channel": "$vault", "data": "gold"})
        assert sdk.value((await next_event(events.publications)).data) == "gold"
        assert tokens.calls == 1


async def test_subscription_token_carries_channel_info(protobuf: bool) -> None:
    config = base_config(channel={"without_namespace": {"join_leave": True}})
    async with run_node(config) as node, sdk_client(node, protobuf=protobuf) as sdk:
        token = make_token(SECRET, "alice", channel="$club", info={"seat": 4})
        _, events = await sdk.subscribe("$club", token=token, join_leave=True)
        joined = await next_event(events.joins)
        assert sdk.value(joined.chan_info) == {"seat": 4}


@pytest.mark.parametrize("token", [
    make_token(SECRET, "alice", channel="$elsewhere"),  # for another channel
    make_token(SECRET, "mallory", channel="$vault"),  # for another user
    make_token(OTHER_SECRET, "alice", channel="$vault"),  # signed with another key
    tampered(make_token(SECRET, "alice", channel="$vault")),
], ids=["other-channel", "other-user", "wrong-key", "bad-signature"])
async def test_invalid_subscription_token_is_refused_with_103(protobuf: bool,
                                                               token: str) -> None:
    """Centrifugo answers 103 permission denied; the connection stays up."""
    async with run_node(base_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        _, events = await sdk.subscribe("$vault", token=token, wait=False)
        assert (await next_event(events.unsubscribed)).code == 103
        _, open_events = await sdk.subscribe("open")
        await node.api("publish", {"channel": "open", "data": 1})
        await next_event(open_events.publications)
        assert sdk.client.state is ClientState.CONNECTED


async def test_expired_subscription_token_is_replaced(protobuf: bool) -> None:
    tokens = Tokens()
    async with run_node(base_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        _, events = await sdk.subscribe("$vault", token=expired(channel="$vault"),
                                        get_token=tokens.subscription)
        assert tokens.calls == 1
        error = await next_event(events.errors)
        assert isinstance(error.error, ReplyError) and error.error.code == 109


async def test_subscription_refresh_keeps_the_subscription(protobuf: bool) -> None:
    tokens = Tokens(ttl=1)
    async with run_node(base_config()) as node, sdk_client(node, protobuf=protobuf) as sdk:
        _, events = await sdk.subscribe("$vault", get_token=tokens.subscription)
        subscribed = await next_event(events.subscribed)
        sub = node.node.connections[sdk.client_id].session.subs["$vault"]
        first_expiry = sub.expire_at or 0
        await wait_until(lambda: (sub.expire_at or 0) > first_expiry, "a sub_refresh")
        assert tokens.calls >= 2
        await node.api("publish", {"channel": "$vault", "data": "fresh"})
        assert sdk.value((await next_event(events.publications)).data) == "fresh"
        assert subscribed.channel == "$vault" and events.subscribing.qsize() == 1


async def test_expired_subscription_without_refresh_is_ended() -> None:
    config = base_config(client={"expired_sub_close_delay": "0s"})
    async with run_node(config) as node, sdk_client(node) as sdk:
        token = lasting(1, channel="$vault")
        await sdk.subscribe("$vault", token=token)  # no get_token: nothing refreshes it
        await next_event(sdk.events.connecting)  # connect() itself
        connecting = await next_event(sdk.events.connecting)  # within 2 s of expiry
        assert connecting.code == 3006
