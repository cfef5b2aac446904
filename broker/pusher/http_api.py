"""Pusher's HTTP API at ``/apps/{app_id}/...``, as the official server libraries call it.

* ``POST events`` — trigger one event on up to 100 channels (``socket_id``: not to it);
* ``POST batch_events`` — up to 10 events, each on one channel;
* ``GET channels`` (``filter_by_prefix``, ``info=user_count`` for presence channels),
  ``GET channels/{channel}`` (``info=user_count,subscription_count``),
  ``GET channels/{channel}/users`` (presence members);
* ``POST users/{user_id}/terminate_connections`` — close that signed-in user's sockets on
  every node (4009).

Triggers go through ``Node.publish``, so they reach every node on the Redis engine.
Presence answers come from the engine (cluster wide); ``subscription_count`` and the
list of occupied channels come from a survey of every live node (``broker.survey``),
so they are cluster wide too.

Authentication, as Pusher: ``auth_key`` the app key, ``auth_timestamp`` within
``pusher.timestamp_window`` of now, ``body_md5`` the body's MD5 (for a body), and
``auth_signature`` (see ``broker.pusher.sign``). Error handling: 401 for a bad
signature, key or timestamp, 404 for an unknown app, 400 for a malformed request, each
with a plain-text reason; nothing is published unless the whole request is valid.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from broker.pusher import sign
from broker.pusher.actor import CHANNEL_NAME, app_user
from broker.pusher.codec import EVENT_TAG, SOCKET_TAG, chorus_channel
from broker.pusher.state import pusher_state
from broker.survey import SurveyError, TooManySurveys
from broker.transport.keys import NODE

if TYPE_CHECKING:
    from broker.config.pusher import PusherApp
    from broker.node import Node

__all__ = ["install_pusher_api"]

log = logging.getLogger("chorus.pusher.api")

MAX_CHANNELS = 100
MAX_BATCH = 10
SOCKET_ID = re.compile(r"^\d+\.\d+$")


def install_pusher_api(app: web.Application) -> None:
    app.router.add_post("/apps/{app_id}/events", _events)
    app.router.add_post("/apps/{app_id}/batch_events", _batch_events)
    app.router.add_get("/apps/{app_id}/channels", _channels)
    app.router.add_get("/apps/{app_id}/channels/{channel}", _channel)
    app.router.add_get("/apps/{app_id}/channels/{channel}/users", _users)
    app.router.add_post("/apps/{app_id}/users/{user_id}/terminate_connections", _terminate)


async def _authorized(request: web.Request) -> tuple[Node, PusherApp, bytes]:
    """The node, the app and the body of a correctly signed request.

    Error handling: raises 404 / 401 / 413 as the module docstring says."""
    node: Node = request.app[NODE].node
    config = node.config
    app = config.pusher.by_id(request.match_info["app_id"])
    if app is None:
        raise web.HTTPNotFound(text="Unknown app")
    limit = max(config.websocket.message_size_limit, 1 << 16) * MAX_BATCH
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    query = request.query
    if not hmac.compare_digest(query.get("auth_key", ""), app.key):
        raise web.HTTPUnauthorized(text="Unknown auth_key")
    try:
        stamp = int(query.get("auth_timestamp", ""))
    except ValueError:
        raise web.HTTPUnauthorized(text="auth_timestamp required") from None
    if abs(time.time() - stamp) > config.pusher.timestamp_window:
        raise web.HTTPUnauthorized(text="Timestamp expired: check your clock "
                                        "(pusher.timestamp_window)")
    if body and query.get("body_md5") != hashlib.md5(body).hexdigest():
        raise web.HTTPUnauthorized(text="body_md5 does not match the body")
    if not sign.api_signature_ok(app.secret, request.method, request.path, query):
        raise web.HTTPUnauthorized(text="Invalid signature")
    pusher_state(node).api_calls[app.id] += 1
    return node, app, body


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text="The body is not JSON") from None
    if not isinstance(parsed, dict):
        raise web.HTTPBadRequest(text="The body must be a JSON object")
    return parsed


def _event(node: Node, item: dict[str, Any], channels: list[Any],
           ) -> tuple[str, bytes, dict[str, str]]:
    """(event name, data as stored, tags) of one trigger, validated."""
    name = item.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise web.HTTPBadRequest(text="name: an event name of 1-200 characters is required")
    if not channels or len(channels) > MAX_CHANNELS:
        raise web.HTTPBadRequest(text=f"channels: 1 to {MAX_CHANNELS} channels")
    for channel in channels:
        if not isinstance(channel, str) or not CHANNEL_NAME.match(channel):
            raise web.HTTPBadRequest(text=f"Invalid channel name {str(channel)[:200]!r}")
    data = item.get("data", "")
    stored = orjson.dumps(data)  # a string (as the libraries send) stays a JSON string
    if len(stored) > node.config.websocket.message_size_limit:
        raise web.HTTPRequestEntityTooLarge(
            max_size=node.config.websocket.message_size_limit, actual_size=len(stored),
            text="data over websocket.message_size_limit")
    tags = {EVENT_TAG: name}
    socket_id = item.get("socket_id")
    if socket_id:
        if not isinstance(socket_id, str) or not SOCKET_ID.match(socket_id):
            raise web.HTTPBadRequest(text="socket_id: expected digits.digits")
        tags[SOCKET_TAG] = socket_id
    return name, stored, tags


async def _publish_all(node: Node, app: PusherApp,
                       triggers: list[tuple[list[str], bytes, dict[str, str]]]) -> None:
    """Publish every trigger: one chain per channel, so a channel's events keep the
    request's order while different channels go at once (on Redis they share the publish
    lane's writes instead of waiting a round trip each)."""
    chains: dict[str, list[tuple[bytes, dict[str, str]]]] = {}
    for channels, data, tags in triggers:
        for channel in channels:
            chains.setdefault(chorus_channel(app.id, channel), []).append((data, tags))

    async def chain(name: str, items: list[tuple[bytes, dict[str, str]]]) -> None:
        for data, tags in items:
            await node.publish(name, data, tags=tags)

    await asyncio.gather(*(chain(name, items) for name, items in chains.items()))


async def _events(request: web.Request) -> web.Response:
    node, app, body = await _authorized(request)
    item = _json_body(body)
    channels = item.get("channels")
    if channels is None:
        channels = [item.get("channel")]
    if not isinstance(channels, list):
        raise web.HTTPBadRequest(text="channels: expected a list")
    _, data, tags = _event(node, item, channels)
    await _publish_all(node, app, [(channels, data, tags)])
    return web.json_response({})


async def _batch_events(request: web.Request) -> web.Response:
    node, app, body = await _authorized(request)
    batch = _json_body(body).get("batch")
    if not isinstance(batch, list) or not 0 < len(batch) <= MAX_BATCH:
        raise web.HTTPBadRequest(text=f"batch: a list of 1 to {MAX_BATCH} events")
    triggers = []
    for item in batch:
        if not isinstance(item, dict):
            raise web.HTTPBadRequest(text="batch: every event is an object")
        channel = item.get("channel")
        _, data, tags = _event(node, item, [channel])
        triggers.append(([str(channel)], data, tags))
    await _publish_all(node, app, triggers)
    return web.json_response({"batch": [{} for _ in triggers]})


async def _cluster_channels(node: Node, app: PusherApp, *, prefix: str = "",
                            channel: str = "") -> dict[str, int]:
    """Occupied channels of ``app`` on every node (a survey, ``broker.survey``): Pusher
    name -> subscribers summed over the nodes; only ``channel`` if given, else those
    starting with ``prefix``. ``#server-to-user-*`` channels are left out (Pusher lists
    them nowhere).

    Error handling: 429 when too many surveys of this node are in flight; 503 when a node
    did not answer in time (Centrifugo's ``channels`` fails too rather than answer in
    part): the caller may retry."""
    head = chorus_channel(app.id, "")
    params = {"channel": head + channel} if channel else {"prefix": head + prefix}
    try:
        counts = await node.surveys.channel_counts(params)
    except TooManySurveys:
        raise web.HTTPTooManyRequests(text="Too many channel queries at once") from None
    except SurveyError as error:
        log.warning("pusher channels of app %s: %s", app.id, error)
        raise web.HTTPServiceUnavailable(
            text="A node of the cluster did not answer in time; retry") from None
    found = {name[len(head):]: count for name, count in counts.items()}
    return {name: count for name, count in found.items() if not name.startswith("#")}


def _info_fields(request: web.Request) -> set[str]:
    return {part for part in request.query.get("info", "").split(",") if part}


async def _channels(request: web.Request) -> web.Response:
    node, app, _ = await _authorized(request)
    prefix = request.query.get("filter_by_prefix", "")
    info = _info_fields(request)
    if "user_count" in info and not prefix.startswith("presence-"):
        raise web.HTTPBadRequest(text="info=user_count needs filter_by_prefix=presence-")
    out: dict[str, dict[str, int]] = {}
    for name in sorted(await _cluster_channels(node, app, prefix=prefix)):
        entry: dict[str, int] = {}
        if "user_count" in info:
            _, entry["user_count"] = await node.engine.presence_stats(
                chorus_channel(app.id, name))
        out[name] = entry
    return web.json_response({"channels": out})


async def _channel(request: web.Request) -> web.Response:
    node, app, _ = await _authorized(request)
    name = request.match_info["channel"]
    info = _info_fields(request)
    channel = chorus_channel(app.id, name)
    out: dict[str, Any] = {}
    if name.startswith("presence-"):
        clients, users = await node.engine.presence_stats(channel)
        out["occupied"] = clients > 0
        if "user_count" in info:
            out["user_count"] = users
        if "subscription_count" in info:
            out["subscription_count"] = clients
    else:
        if "user_count" in info:
            raise web.HTTPBadRequest(text="user_count is for presence channels only")
        count = (await _cluster_channels(node, app, channel=name)).get(name, 0)
        out["occupied"] = count > 0
        if "subscription_count" in info:
            out["subscription_count"] = count
    return web.json_response(out)


async def _users(request: web.Request) -> web.Response:
    node, app, _ = await _authorized(request)
    name = request.match_info["channel"]
    if not name.startswith("presence-"):
        raise web.HTTPBadRequest(text="users are listed for presence channels only")
    members = await node.engine.presence(chorus_channel(app.id, name))
    ids = sorted({info.user for info in members.values()})
    return web.json_response({"users": [{"id": user} for user in ids]})


async def _terminate(request: web.Request) -> web.Response:
    node, app, _ = await _authorized(request)
    user = request.match_info["user_id"]
    node.user_command("disconnect", app_user(app.id, user), code=4009,
                      reason="Connection terminated by the app")
    return web.json_response({})

