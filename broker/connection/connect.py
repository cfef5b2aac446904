"""Connecting and renewing credentials: the ``connect``, ``refresh`` and ``sub_refresh``
client commands, and the token check they share.

Handlers of :mod:`broker.connection.commands` (which imports them into its ``HANDLERS``
table): a token is verified here, or the connect proxy / ``@chorus.on_connect`` hook is
asked; the connect reply carries the server-side subscriptions, and the user's unread
notifications follow it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from broker.auth import TokenError
from broker.connection.state import Denied, Phase, Subscription, expiry_fields
from broker.connection.subscriptions import (
    Prepared,
    finish_subscription,
    gather,
    prepare_subscription,
    server_side,
    subscription_failed,
)
from broker.journal import record as journey
from broker.protocol import codes
from broker.proxy import flows
from broker.proxy.types import ConnectResult

if TYPE_CHECKING:
    from broker.connection.actor import ConnectionActor

log = logging.getLogger("chorus.connection")

T = TypeVar("T")


# -- connect ------------------------------------------------------------------------
def cmd_connect(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    """A token is verified here; without one the connect proxy or ``@chorus.on_connect``
    is asked when configured (broker.proxy.flows), else the connection is anonymous where
    allowed. Either way ``complete_connect`` finishes with the credentials."""
    session, config = conn.session, conn.config
    if session.phase is not Phase.NEW:
        conn.disconnect(codes.DISCONNECT_BAD_REQUEST)
        return
    token = params.get("token") or ""
    if token:
        claims = _verified(conn, conn.node.verifier.verify_connect, token, "token")
        if claims is None:
            return
        if not claims.user and config.client.disallow_anonymous_connection_tokens:
            conn.last_error = "connection token without a user (client." \
                "disallow_anonymous_connection_tokens)"
            conn.disconnect(codes.DISCONNECT_PERMISSION_DENIED)
            return
        credentials = ConnectResult(claims.user, claims.expire_at or 0, claims.info,
                                    channels=list(claims.channels))
    elif conn.node.proxies.connect is not None:
        flows.connect(conn, cmd_id, params, conn.node.proxies.connect,
                      lambda result: complete_connect(conn, cmd_id, params, result))
        return
    elif not (config.client.insecure or config.client.allow_anonymous_connect_without_token):
        conn.last_error = "connect without token"
        conn.disconnect(codes.DISCONNECT_INVALID_TOKEN)
        return
    else:
        credentials = ConnectResult()
    complete_connect(conn, cmd_id, params, credentials)


def complete_connect(conn: ConnectionActor, cmd_id: int, params: dict[str, Any],
                     credentials: ConnectResult) -> None:
    """Authenticated as ``credentials`` (from a token, a proxy or a hook): admit, answer,
    subscribe the server-side channels."""
    session, config = conn.session, conn.config
    session.user, session.info = credentials.user, flows.payload(credentials.info)
    session.expire_at = credentials.expire_at or None
    session.meta = flows.payload(credentials.meta)
    session.server_refresh = conn.node.proxies.refresh is not None
    refusal = conn.node.admit(session.user)
    if refusal is not None:
        conn.disconnect(refusal)
        return
    if conn.node.single_connection and session.user:
        # Before this connection is registered, so it is not among those told to go.
        conn.node.user_command("disconnect", session.user,
                               code=codes.DISCONNECT_CONNECTION_LIMIT.code,
                               reason=codes.DISCONNECT_CONNECTION_LIMIT.reason)
    session.phase = Phase.CONNECTED
    session.name = str(params.get("name", ""))
    session.version = str(params.get("version", ""))
    headers = params.get("headers")
    if isinstance(headers, dict):  # the codecs give a map of strings
        session.headers = {str(k).lower(): str(v) for k, v in headers.items()}
    conn.node.connection_authenticated(conn)
    journey.connected(conn)
    result: dict[str, Any] = {"client": session.client_id, "version": "chorus",
                              "ping": int(config.client.ping_interval)}
    if conn.expects_pong:
        result["pong"] = True
    if conn.session_id:  # emulation and uni sessions, as Centrifugo
        result["session"] = conn.session_id
        if conn.link.emulation:  # where its /emulation requests must reach
            result["node"] = conn.node.uid
    if not session.server_refresh:  # else the refresh proxy renews it, not the SDK
        result.update(expiry_fields(session.expire_at))
    data = flows.payload(credentials.data)
    if data is not None:
        result["data"] = data
    if config.client.connect_include_server_time:
        result["time"] = int(time.time() * 1000)
    conn.schedule_expiry()
    conn.start_timers()
    channels = (*credentials.channels, *credentials.subs,
                *conn.node.personal_channels(session.user))
    if not channels:  # the common case: no server-side subscriptions
        _answer_connect(conn, cmd_id, result, [], [])
        return
    wanted = params.get("subs")
    recovery = wanted if isinstance(wanted, dict) else {}
    subs = [sub for channel in dict.fromkeys(channels)
            if (sub := _server_side(conn, channel, credentials)) is not None]
    prepared = [prepare_subscription(conn, sub, recovery.get(sub.channel) or {})
                for sub in subs]
    if all(isinstance(p, tuple) for p in prepared):
        _answer_connect(conn, cmd_id, result, subs, prepared)  # type: ignore[arg-type]
        return
    conn.run_effect(
        gather(prepared),
        on_result=lambda ready: _answer_connect(conn, cmd_id, result, subs, ready),
        on_error=lambda error: subscription_failed(conn, subs[0], error))


def _server_side(conn: ConnectionActor, channel: str, credentials: ConnectResult
                 ) -> Subscription | None:
    """A connect-time subscription, with what a connect proxy's ``subs`` gave it."""
    sub = server_side(conn, channel)
    extra = credentials.subs.get(channel)
    if sub is not None and extra is not None:
        sub.options = flows.overridden(sub.options, extra.override, proxied=False)
        sub.info, sub.data = flows.payload(extra.info), flows.payload(extra.data)
    return sub


def _answer_connect(conn: ConnectionActor, cmd_id: int, result: dict[str, Any],
                    subs: list[Subscription], ready: list[Prepared]) -> None:
    """The connect reply carries the server-side subscriptions (Centrifugo's ``subs``),
    so the SDK recovers them like its own; they go live only after the reply."""
    if subs:
        result["subs"] = {sub.channel: sub_result for sub, (sub_result, _) in zip(
            subs, ready, strict=True)}
    conn.answer_connect(cmd_id, result)
    for sub, (_, offset) in zip(subs, ready, strict=True):
        finish_subscription(conn, sub, lambda _: None, {}, offset)
    _deliver_unread(conn)
    conn.release_held()  # commands sent behind a proxied connect


def _deliver_unread(conn: ConnectionActor) -> None:
    """After connect: the user's unread notifications as publications of their personal
    channel, to this connection only (see broker.notify)."""
    notifier, user = conn.node.notifier, conn.session.user
    if notifier is None or not user:
        return
    channel = notifier.personal_channel(user)
    if channel not in conn.session.subs:
        return

    def write(frames: list[bytes]) -> None:
        if channel in conn.session.subs:
            for data in frames:
                conn.write({"push": {"channel": channel, "pub": {"data": data}}})

    conn.run_effect(notifier.unread_frames(user), on_result=write,
                    on_error=lambda error: log.warning("unread notifications of %s: %r",
                                                       user, error))


# -- credentials renewal ---------------------------------------------------------------
def cmd_refresh(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    if conn.session.server_refresh:  # the refresh proxy renews this connection
        conn.last_error = "refresh command, but the server refreshes this connection"
        conn.disconnect(codes.DISCONNECT_BAD_REQUEST)
        return
    claims = _verified(conn, conn.node.verifier.verify_connect, str(params.get("token", "")),
                       "refresh token")
    if claims is None:
        return
    if claims.user != conn.session.user:
        conn.disconnect(codes.DISCONNECT_INVALID_TOKEN)
        return
    conn.session.expire_at = claims.expire_at or None
    conn.session.info = claims.info if claims.info is not None else conn.session.info
    if conn.session.expire_at:
        conn.schedule_expiry()
    journey.record(conn, "refresh", by="client", expire_at=conn.session.expire_at or 0)
    conn.answer(cmd_id, "refresh", {"client": conn.session.client_id, "version": "chorus",
                                    **expiry_fields(conn.session.expire_at)})


def server_refresh(conn: ConnectionActor, expired: bool, expire_at: int,
                   info: bytes | None) -> None:
    """The server API's ``refresh`` for this connection, as Centrifugo does it:
    ``expired`` (or an ``expire_at`` already past) ends it with 3005; a future
    ``expire_at`` is its new expiry and 0 removes the expiry; the client hears of it in a
    ``refresh`` push (``expires``/``ttl``; the SDKs skip it)."""
    session = conn.session
    if session.phase is not Phase.CONNECTED:
        return
    if expired or 0 < expire_at <= time.time():
        conn.last_error = "expired by the server API's refresh"
        conn.disconnect(codes.DISCONNECT_EXPIRED)
        return
    session.expire_at = expire_at or None
    if info is not None:
        session.info = info
    conn.schedule_expiry()  # with no expiry left, it only cancels the old deadline
    journey.record(conn, "refresh", by="server_api", expire_at=expire_at)
    conn.write({"push": {"refresh": expiry_fields(session.expire_at)}})


def cmd_sub_refresh(conn: ConnectionActor, cmd_id: int, params: dict[str, Any]) -> None:
    channel = str(params.get("channel", ""))
    sub = conn.session.subs.get(channel)
    if sub is None:
        raise Denied(codes.ERROR_PERMISSION_DENIED)
    if sub.server_refresh:  # the sub_refresh proxy renews this subscription
        conn.last_error = f"sub_refresh command for {channel}, refreshed by the server"
        conn.disconnect(codes.DISCONNECT_BAD_REQUEST)
        return
    claims = _verified(conn, conn.node.verifier.verify_subscribe,
                       str(params.get("token", "")), "subscription refresh token")
    if claims is None:
        return
    if claims.channel != channel or claims.user != conn.session.user:
        conn.disconnect(codes.DISCONNECT_INVALID_TOKEN)
        return
    sub.expire_at = claims.expire_at
    conn.watch_subscription_expiry(sub)
    conn.answer(cmd_id, "sub_refresh", expiry_fields(sub.expire_at))


def _verified(conn: ConnectionActor, verify: Callable[[str], T], token: str, what: str
              ) -> T | None:
    """The token's claims. Error handling: an expired token raises Denied (109: the SDK
    fetches a new one); an invalid one closes the connection with 3500 and gives None."""
    try:
        return verify(token)
    except TokenError as error:
        if error.expired:
            raise Denied(codes.ERROR_TOKEN_EXPIRED) from None
        conn.last_error = f"invalid {what}: {error}"
        conn.disconnect(codes.DISCONNECT_INVALID_TOKEN)
        return None
