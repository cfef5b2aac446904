"""Who may do what: the pure permission rules of a client session."""

from __future__ import annotations

from typing import Any

import pytest

from broker.config import config_from_mapping
from broker.connection.state import (
    Denied,
    Phase,
    Session,
    Subscription,
    TokenBucket,
    check_history,
    check_presence,
    check_publish,
    check_subscribe,
    options_for,
)
from broker.protocol import codes

SECRET = "x" * 32


def config(**channel: Any) -> Any:
    return config_from_mapping({
        "client": {"token": {"hmac_secret_key": SECRET}, "channel_limit": 2},
        "http_api": {"key": "k"},
        "channel": {"without_namespace": channel,
                    "namespaces": [{"name": "chat", "allow_subscribe_for_client": True,
                                    "allow_user_limited_channels": True}]},
    })


def session(user: str = "u1", *subs: str) -> Session:
    s = Session("c1", Phase.CONNECTED, user)
    for channel in subs:
        s.subs[channel] = Subscription(channel, options_for(config(), channel))
    return s


def denied_with(error: codes.ErrorCode, fn: Any, *args: Any) -> None:
    with pytest.raises(Denied) as caught:
        fn(*args)
    assert caught.value.error is error


def test_unknown_namespace_is_unknown_channel() -> None:
    denied_with(codes.ERROR_UNKNOWN_CHANNEL, options_for, config(), "nope:room")


def test_overlong_channel_is_limit_exceeded() -> None:
    denied_with(codes.ERROR_LIMIT_EXCEEDED, options_for, config(), "a" * 300)


def test_subscribe_needs_allow_subscribe_for_client_without_token() -> None:
    cfg = config()
    opts = options_for(cfg, "room")
    denied_with(codes.ERROR_PERMISSION_DENIED, check_subscribe, cfg, session(), "room", opts, False)
    check_subscribe(cfg, session(), "room", opts, True)  # a token always suffices
    check_subscribe(cfg, session(), "chat:room", options_for(cfg, "chat:room"), False)


def test_anonymous_needs_allow_subscribe_for_anonymous_too() -> None:
    cfg = config(allow_subscribe_for_client=True)
    opts = options_for(cfg, "room")
    denied_with(codes.ERROR_PERMISSION_DENIED, check_subscribe, cfg, session(""), "room", opts,
                False)
    cfg = config(allow_subscribe_for_client=True, allow_subscribe_for_anonymous=True)
    check_subscribe(cfg, session(""), "room", options_for(cfg, "room"), False)


def test_private_channel_needs_a_token() -> None:
    cfg = config(allow_subscribe_for_client=True)
    opts = options_for(cfg, "$secret")
    denied_with(codes.ERROR_PERMISSION_DENIED, check_subscribe, cfg, session(), "$secret", opts,
                False)


def test_user_limited_channel_admits_only_its_users() -> None:
    cfg = config()
    opts = options_for(cfg, "chat:dialog#u1,u2")
    check_subscribe(cfg, session("u2"), "chat:dialog#u1,u2", opts, False)
    denied_with(codes.ERROR_PERMISSION_DENIED, check_subscribe, cfg, session("u3"),
                "chat:dialog#u1,u2", opts, False)


def test_duplicate_and_channel_limit() -> None:
    cfg = config(allow_subscribe_for_client=True)
    opts = options_for(cfg, "room")
    denied_with(codes.ERROR_ALREADY_SUBSCRIBED, check_subscribe, cfg, session("u1", "room"),
                "room", opts, False)
    denied_with(codes.ERROR_LIMIT_EXCEEDED, check_subscribe, cfg, session("u1", "a", "b"),
                "room", opts, False)


def test_publish_for_subscriber_requires_being_subscribed() -> None:
    cfg = config(allow_publish_for_subscriber=True)
    opts = options_for(cfg, "room")
    denied_with(codes.ERROR_PERMISSION_DENIED, check_publish, cfg, session(), "room", opts)
    check_publish(cfg, session("u1", "room"), "room", opts)


def test_presence_and_history_need_the_feature_on() -> None:
    cfg = config(allow_presence_for_client=True, allow_history_for_client=True)
    opts = options_for(cfg, "room")
    denied_with(codes.ERROR_NOT_AVAILABLE, check_presence, cfg, session(), "room", opts)
    denied_with(codes.ERROR_NOT_AVAILABLE, check_history, cfg, session(), "room", opts)
    cfg = config(presence=True, history_size=10, history_ttl="60s",
                 allow_presence_for_client=True, allow_history_for_client=True)
    opts = options_for(cfg, "room")
    check_presence(cfg, session(), "room", opts)
    check_history(cfg, session(), "room", opts)


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0)
    assert not bucket.take(0.0)
    assert bucket.take(0.1)  # one token back after 100 ms
    assert not bucket.take(0.1)


@pytest.mark.parametrize("command", ["publish", "presence", "history"])
def test_each_allow_flag_opens_its_command_to_its_audience(command: str) -> None:
    """``allow_<command>_for_subscriber`` admits subscribers of the channel,
    ``..._for_client`` connected users, ``..._for_anonymous`` (with ``..._for_client``)
    anonymous ones; without the flag each of them is refused with 103."""
    check = {"publish": check_publish, "presence": check_presence,
             "history": check_history}[command]
    feature = {"presence": True, "history_size": 10, "history_ttl": "60s"}

    def rule(**flags: bool) -> Any:
        cfg = config(**feature, **{f"allow_{command}_for_{who}": on
                                   for who, on in flags.items()})
        return cfg, options_for(cfg, "room")

    subscriber, user, anonymous = session("u1", "room"), session("u2"), session("")
    cfg, opts = rule()
    for who in (subscriber, user, anonymous):
        denied_with(codes.ERROR_PERMISSION_DENIED, check, cfg, who, "room", opts)
    cfg, opts = rule(subscriber=True)
    check(cfg, subscriber, "room", opts)
    denied_with(codes.ERROR_PERMISSION_DENIED, check, cfg, user, "room", opts)
    cfg, opts = rule(client=True)
    check(cfg, user, "room", opts)
    denied_with(codes.ERROR_PERMISSION_DENIED, check, cfg, anonymous, "room", opts)
    cfg, opts = rule(client=True, anonymous=True)
    check(cfg, anonymous, "room", opts)


def test_max_length_is_the_configured_one() -> None:
    cfg = config_from_mapping({"client": {"insecure": True}, "http_api": {"insecure": True},
                               "channel": {"max_length": 10}})
    assert options_for(cfg, "a" * 10) is cfg.channel.without_namespace
    denied_with(codes.ERROR_LIMIT_EXCEEDED, options_for, cfg, "a" * 11)
