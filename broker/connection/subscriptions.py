"""Subscribing a connection to a channel: register, position or recover, go live.

A subscription is registered *pending* in its shard first (publications are buffered),
then its position or recovery is read from the engine, then the subscribe result is
written, and only then does the shard make it live and hand back what was buffered past
that position: each offset reaches the client once, in order, never skipped silently.
Connect-time (server-side) subscriptions go through the same steps and ride in the
connect reply's ``subs`` map.

A client's subscribe may carry ``flag`` bits (centrifuge's subscription flags): channel
compaction (the result's ``id`` then stands for the channel name in its publication,
join and leave pushes, where the namespace has ``allow_channel_compaction``) and
reject-unrecovered (a recovery that cannot be complete fails with 112).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from broker.cache.lastvalue import last_value_result, wants_last_value
from broker.connection.state import Denied, Subscription, expiry_fields
from broker.journal import record as journey
from broker.protocol import codes
from broker.shard.actor import Activate, Subscribe, delta_data
from broker.shard.filters import FilterError, compile_filter
from broker.types import StreamPosition
from broker.wire import publication_dict

if TYPE_CHECKING:
    from broker.connection.actor import ConnectionActor

log = logging.getLogger("chorus.connection")


Prepared = tuple[dict[str, Any], int]  # (subscribe result, offset the result covers)

FLAG_CHANNEL_COMPACTION = 1  # SubscribeRequest.flag bits, as centrifuge and the SDKs
FLAG_REJECT_UNRECOVERED = 2


async def gather(prepared: list[Prepared | Coroutine[Any, Any, Prepared]]) -> list[Prepared]:
    waiting = [p for p in prepared if not isinstance(p, tuple)]
    done = iter(await asyncio.gather(*waiting))
    return [p if isinstance(p, tuple) else next(done) for p in prepared]


def server_subscribe(conn: ConnectionActor, channel: str, params: dict[str, Any]) -> None:
    """A subscription the server decided on after connect (API ``subscribe``)."""
    sub = server_side(conn, channel)
    if sub is not None:
        start_subscription(conn, sub, params, lambda result: conn.write(
            {"push": {"channel": channel, "subscribe": result}}))


def server_side(conn: ConnectionActor, channel: str) -> Subscription | None:
    options = conn.config.channel_options(channel)
    if options is None or channel in conn.session.subs:
        return None
    return Subscription(channel, options, server_side=True)


def start_subscription(conn: ConnectionActor, sub: Subscription, params: dict[str, Any],
                        send_result: Callable[[dict[str, Any]], None],
                        send_error: Callable[[codes.ErrorCode], None] | None = None) -> None:
    """Subscribe ``sub``; ``send_result`` writes the result, ``send_error`` a refusal
    decided once the engine answered (112), after the subscription was rolled back."""
    prepared = prepare_subscription(conn, sub, params, hold=True)
    if isinstance(prepared, tuple):
        finish_subscription(conn, sub, send_result, *prepared)
        return
    conn.run_effect(prepared,
                    on_result=lambda ready: finish_subscription(conn, sub, send_result, *ready),
                    on_error=lambda error: subscription_failed(conn, sub, error, send_error))


def prepare_subscription(conn: ConnectionActor, sub: Subscription, params: dict[str, Any],
                          *, hold: bool = False) -> Prepared | Coroutine[Any, Any, Prepared]:
    """Register ``sub`` (pending in its shard, presence) and return its subscribe result —
    at once, or as a coroutine when the engine must be asked (position, recovery).

    ``hold``: the caller finishes an immediate result right away (nothing can be
    published to the shard in between), so the shard's ``Subscribe`` is kept in
    ``sub.held`` and ``finish_subscription`` tells it live: one message instead of a
    ``Subscribe`` and an ``Activate``."""
    options, channel = sub.options, sub.channel
    if not sub.server_side:
        negotiate_delivery(sub, params)
    conn.session.subs[channel] = sub
    conn.node.subscribed(channel)
    if not sub.server_side:  # flags come with a client's own subscribe only
        flag = params.get("flag") or 0
        sub.reject_unrecovered = bool(flag & FLAG_REJECT_UNRECOVERED)
        if flag & FLAG_CHANNEL_COMPACTION and options.allow_channel_compaction:
            sub.channel_id = conn.node.channel_id(channel)
    sub.join_leave = bool(params.get("join_leave")) or options.force_push_join_leave
    register = Subscribe(channel, conn.session.client_id, conn.outbox, conn.delivery,
                         sub.join_leave, sub.delta, sub.tags_filter, sub.channel_id)
    immediate = (options.history_size <= 0 or options.history_ttl <= 0) and not conn.node.remote
    if hold and immediate:
        sub.held = register
    else:
        conn.node.tell_shard(channel, register)
    if options.presence:
        conn.node.spawn(conn.node.engine.add_presence(
            channel, conn.session.client_id, conn.client_info(sub),
            conn.config.client.presence_update_interval * 3))
    if sub.expire_at:
        conn.watch_subscription_expiry(sub)
    if immediate:
        return {}, 0
    if options.history_size <= 0 or options.history_ttl <= 0:
        return engine_subscribed(conn, channel)  # answer once other nodes' pubs arrive
    # Centrifugo: forced, or allowed and asked for; server-side ones cannot ask, so for
    # them allowing is enough (their recovery state comes in the connect's ``subs``).
    sub.recoverable = options.force_recovery or (options.allow_recovery and (
        sub.server_side or bool(params.get("recoverable"))))
    recovering = sub.recoverable and bool(params.get("recover"))
    since = None
    if recovering:
        since = StreamPosition(int(params.get("offset", 0)), str(params.get("epoch", "")))
    limit = conn.config.client.recovery_max_publication_limit if recovering else 0
    positioned = sub.recoverable or options.force_positioning or (
        options.allow_positioning and bool(params.get("positioned")))
    if wants_last_value(options, sub.recoverable, recovering):  # Centrifugo cache mode
        return last_value_result(conn.node, channel, options, since, positioned)
    return position(conn, sub, since, limit, recovering, positioned)


def negotiate_delivery(sub: Subscription, params: dict[str, Any]) -> None:
    """Set ``sub.delta`` and ``sub.tags_filter`` from the request's ``delta`` and ``tf``.

    As centrifuge: ``delta`` is "" or "fossil", and it is on only if the namespace's
    ``allowed_delta_types`` has it (else the subscription simply goes without);
    deltas and a tags filter cannot be combined.

    Error handling: Denied(bad request, 107) for an unknown delta type, a malformed
    filter, or both asked for; Denied(permission denied, 103) for a filter where the
    namespace does not ``allow_tags_filter``; nothing is registered then.
    """
    delta = params.get("delta") or ""
    tags_filter = params.get("tf")
    if delta not in ("", "fossil") or (delta and tags_filter is not None):
        raise Denied(codes.ERROR_BAD_REQUEST)
    if tags_filter is not None:
        if not sub.options.allow_tags_filter:
            raise Denied(codes.ERROR_PERMISSION_DENIED)
        try:
            sub.tags_filter = compile_filter(tags_filter)
        except FilterError:
            raise Denied(codes.ERROR_BAD_REQUEST) from None
    sub.delta = delta == "fossil" and "fossil" in sub.options.allowed_delta_types


def delta_result(result: dict[str, Any], binary: bool) -> dict[str, Any]:
    """The subscribe result for a delta subscription: ``delta: true``, and for JSON the
    recovered publications' data inside JSON strings, as every publication it gets.
    Returns a copy: a result may be shared (the last-value cache)."""
    out = {**result, "delta": True}
    if not binary and result.get("publications"):
        out["publications"] = [{**pub, "data": delta_data(pub["data"], binary)}
                               for pub in result["publications"]]
    return out


async def engine_subscribed(conn: ConnectionActor, channel: str) -> Prepared:
    await conn.node.engine.subscribe(channel)
    return {}, 0


async def position(conn: ConnectionActor, sub: Subscription, since: StreamPosition | None,
                    limit: int, recovering: bool, positioned: bool) -> Prepared:
    """The stream-mode result. Error handling: Denied(112) when a recovery is not
    complete and the client set reject-unrecovered (as centrifuge: the SDK reloads its
    state, e.g. through ``get_state``, and subscribes again from the new position)."""
    pubs, top, recovered = await conn.node.recover(sub.channel, since, limit, sub.options)
    if recovering and not recovered and sub.reject_unrecovered:
        raise Denied(codes.ERROR_UNRECOVERABLE_POSITION)
    result: dict[str, Any] = {"epoch": top.epoch, "offset": top.offset}
    if positioned:
        result["positioned"] = True
    if sub.recoverable:
        result["recoverable"] = True
    if recovering:
        result["was_recovering"] = True
        result["recovered"] = recovered
        result["publications"] = [publication_dict(p) for p in pubs]
    return result, top.offset


def finish_subscription(conn: ConnectionActor, sub: Subscription,
                         send_result: Callable[[dict[str, Any]], None],
                         result: dict[str, Any], after_offset: int) -> None:
    if conn.session.subs.get(sub.channel) is not sub:
        return  # unsubscribed while the engine answered
    if not sub.server_refresh:  # else the sub_refresh proxy renews it, not the SDK
        result.update(expiry_fields(sub.expire_at))  # the SDK schedules sub_refresh from these
    if sub.data is not None:  # from a subscribe proxy or hook
        result["data"] = sub.data
    if sub.channel_id:
        result["id"] = sub.channel_id
    if sub.delta:
        result = delta_result(result, conn.codec.binary)
    send_result(result)
    sub.active = True
    replayed = journey.subscribed(conn, sub.channel, result, sub.server_side)
    # With journeys on, the shard reports this subscription's first publication once
    # (unless the reply just carried some): a one-time flag, not a per-delivery cost.
    track_first = conn.node.journal is not None and not replayed
    register, sub.held = sub.held, None
    if register is not None:  # held by prepare_subscription: registered live at once
        register.live, register.after_offset, register.track_first = (
            True, after_offset, track_first)
        conn.node.tell_shard(sub.channel, register)
    else:
        conn.node.tell_shard(sub.channel, Activate(sub.channel, conn.session.client_id,
                                                   after_offset, track_first))
    if sub.options.join_leave:
        conn.node.join_leave(sub.channel, conn.client_info(sub), join=True)
    if sub.stale and sub.recoverable:  # see resubscribe
        unsubscribe_push(conn, sub.channel, 2500, "insufficient state", send_leave=False)


def subscription_failed(conn: ConnectionActor, sub: Subscription, error: BaseException,
                        send_error: Callable[[codes.ErrorCode], None] | None = None) -> None:
    """Roll ``sub`` back. A refusal (Denied) is answered with its error where the
    subscribe has a reply to carry it; anything else closes the connection (3004)."""
    journey.record(conn, "subscribe_failed", channel=sub.channel,
                   code=error.error.code if isinstance(error, Denied) else 0)
    if isinstance(error, Denied) and send_error is not None:
        if conn.session.subs.get(sub.channel) is sub:
            conn._drop_subscription(sub.channel, send_leave=False)
        send_error(error.error)
        return
    log.warning("subscribe to %s failed: %r", sub.channel, error)
    conn._drop_subscription(sub.channel, send_leave=False)
    conn.last_error = f"engine: {error!r}"
    conn.disconnect(codes.DISCONNECT_SERVER_ERROR)


def unsubscribe_push(conn: ConnectionActor, channel: str, code: int, reason: str, *,
                      send_leave: bool) -> None:
    if channel in conn.session.subs:
        journey.record(conn, "unsubscribe", channel=channel, code=code, reason=reason)
        conn._drop_subscription(channel, send_leave=send_leave)
        unsubscribe = {"code": code, "reason": reason}
        conn.write({"push": {"channel": channel, "unsubscribe": unsubscribe}})


def resubscribe(conn: ConnectionActor, index: int) -> None:
    """Shard ``index`` restarted empty: register this connection's channels there again.

    A restarted shard lost whatever it held for us: a publication it was fanning out
    when it failed, and the buffer of a subscription still being answered. So no
    recoverable subscription is left to chance: a live one gets Centrifugo's
    "insufficient state" unsubscribe (2500) and the SDK resubscribes with recovery from
    its own last offset; one still subscribing re-registers as pending and is resynced
    the same way right after its reply. At-most-once subscriptions (no history) simply
    re-register: they were never promised the publications of the gap.
    """
    client_id, delivery = conn.session.client_id, conn.delivery
    for channel, sub in list(conn.session.subs.items()):
        if conn.node.shard_of(channel) != index:
            continue
        if sub.active and sub.recoverable:
            unsubscribe_push(conn, channel, 2500, "insufficient state", send_leave=False)
            continue
        conn.node.tell_shard(channel, Subscribe(channel, client_id, conn.outbox, delivery,
                                                sub.join_leave, sub.delta, sub.tags_filter,
                                                sub.channel_id))
        if sub.active:
            conn.node.tell_shard(channel, Activate(channel, client_id, 0))
        else:
            sub.stale = True
