"""Server API: ``POST /api/<method>`` in the request/response shapes of Centrifugo's HTTP API.

Authentication: header ``X-API-Key: <http_api.key>`` (or ``Authorization: apikey <key>``),
compared in constant time; a missing or wrong key gets 401. Responses are
``{"result": {...}}`` or ``{"error": {"code": N, "message": "..."}}`` with Centrifugo's
error codes, so its server SDKs and curl examples work unchanged.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from broker.connection.state import publication_data_error
from broker.engine.base import UnrecoverablePosition
from broker.node import Node
from broker.notify import Notifier, notification_dict
from broker.protocol import codes
from broker.survey import SurveyError, TooManySurveys
from broker.transport.keys import NODE
from broker.wire import client_info_dict

log = logging.getLogger("chorus.api")

Method = Callable[[Node, dict[str, Any]], Awaitable[dict[str, Any]]]


class ApiError(Exception):
    def __init__(self, error: codes.ErrorCode, detail: str = "") -> None:
        super().__init__(detail or error.message)
        self.error = error


def _raw(value: object) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return orjson.Fragment(bytes(value))
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(obj: Any) -> bytes:
    """JSON with ``bytes`` payloads embedded raw (they already are JSON)."""
    return orjson.dumps(obj, default=_raw)


def _channel(params: dict[str, Any]) -> str:
    channel = params.get("channel")
    if not isinstance(channel, str) or not channel:
        raise ApiError(codes.ERROR_BAD_REQUEST, "channel required")
    return channel


def _data(params: dict[str, Any], data_format: str) -> bytes:
    """The request's ``data`` as JSON bytes, checked against the namespace's
    ``publication_data_format`` (a missing ``data`` is empty: only "binary" takes it)."""
    data = orjson.dumps(params["data"]) if "data" in params else b""
    problem = publication_data_error(data, data_format)
    if problem is not None:
        raise ApiError(codes.ERROR_BAD_REQUEST, problem)
    return data


async def _publish(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    options = node.config.channel_options(channel)
    if options is None:
        raise ApiError(codes.ERROR_UNKNOWN_CHANNEL)
    tags = params.get("tags")
    _, position = await node.publish(
        channel, _data(params, options.publication_data_format),
        tags=tags if isinstance(tags, dict) else None,
        idempotency_key=params.get("idempotency_key") or None,
        skip_history=bool(params.get("skip_history")), delta=params.get("delta") is True)
    return {"offset": position.offset, "epoch": position.epoch} if position.offset else {}


async def _broadcast(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    channels = params.get("channels")
    if not isinstance(channels, list) or not channels:
        raise ApiError(codes.ERROR_BAD_REQUEST, "channels required")
    responses = []
    for channel in channels:
        responses.append(await _call(_publish, node, {**params, "channel": channel}))
    return {"responses": responses}


def _user(params: dict[str, Any]) -> tuple[str, str]:
    user = params.get("user")
    if not isinstance(user, str):
        raise ApiError(codes.ERROR_BAD_REQUEST, "user required")
    client = params.get("client")
    return user, client if isinstance(client, str) else ""


async def _subscribe(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    user, client = _user(params)
    node.user_command("subscribe", user, client=client, channel=_channel(params))
    return {}


async def _unsubscribe(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    user, client = _user(params)
    node.user_command("unsubscribe", user, client=client, channel=_channel(params))
    return {}


async def _disconnect(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    user, client = _user(params)
    custom = params.get("disconnect")
    code, reason = 0, ""
    if isinstance(custom, dict) and "code" in custom:
        code, reason = int(custom["code"]), str(custom.get("reason", ""))
    whitelist = params.get("whitelist") or []
    if not isinstance(whitelist, list) or not all(isinstance(c, str) for c in whitelist):
        raise ApiError(codes.ERROR_BAD_REQUEST, "whitelist: a list of client ids")
    node.user_command("disconnect", user, client=client, code=code, reason=reason,
                      whitelist=whitelist)
    return {}


async def _refresh(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Centrifugo's ``refresh``: a new ``expire_at`` (0: never), or ``expired: true``,
    for the user's connections (or one ``client``) on every node."""
    user, client = _user(params)
    expire_at = params.get("expire_at", 0)
    if isinstance(expire_at, bool) or not isinstance(expire_at, int) or expire_at < 0:
        raise ApiError(codes.ERROR_BAD_REQUEST, "expire_at: a Unix time in seconds")
    info = orjson.dumps(params["info"]).decode() if params.get("info") is not None else None
    node.user_command("refresh", user, client=client, expired=bool(params.get("expired")),
                      expire_at=expire_at, info=info)
    return {}


async def _presence(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    if not node.options(channel).presence:
        raise ApiError(codes.ERROR_NOT_AVAILABLE)
    presence = await node.engine.presence(channel)
    return {"presence": {cid: client_info_dict(info) for cid, info in presence.items()}}


async def _presence_stats(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    if not node.options(channel).presence:
        raise ApiError(codes.ERROR_NOT_AVAILABLE)
    clients, users = await node.engine.presence_stats(channel)
    return {"num_clients": clients, "num_users": users}


async def _history(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    options = node.options(channel)
    if options.history_size <= 0:
        raise ApiError(codes.ERROR_NOT_AVAILABLE)
    since = params.get("since")
    try:
        return await node.history(channel, options, limit=int(params.get("limit", 0)),
                                  since=since if isinstance(since, dict) else None,
                                  reverse=bool(params.get("reverse")))
    except UnrecoverablePosition:
        raise ApiError(codes.ERROR_UNRECOVERABLE_POSITION) from None


async def _history_remove(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    channel = _channel(params)
    await node.engine.remove_history(channel)
    node.cache.invalidate(channel)
    return {}


async def _channels(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Every node's channels (a survey, ``broker.survey``), subscribers summed per channel.

    Error handling, as Centrifugo: a node that does not answer within the survey timeout
    makes the call fail with 100 (internal, temporary) rather than answer in part;
    111 when too many surveys of this node are in flight."""
    pattern = params.get("pattern") or ""
    if not isinstance(pattern, str):
        raise ApiError(codes.ERROR_BAD_REQUEST, "pattern must be a string")
    try:
        counts = await node.surveys.channel_counts({"pattern": pattern})
    except TooManySurveys:
        raise ApiError(codes.ERROR_TOO_MANY_REQUESTS) from None
    except SurveyError as error:
        log.warning("channels: %s", error)
        raise ApiError(codes.ERROR_INTERNAL) from None
    return {"channels": {name: {"num_clients": n} for name, n in counts.items()}}


async def _info(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    return node.info()


def _notifier(node: Node) -> Notifier:
    if node.notifier is None:
        raise ApiError(codes.ERROR_NOT_AVAILABLE, "notifications are disabled")
    return node.notifier


def _notify_user(params: dict[str, Any]) -> str:
    user = params.get("user")
    if not isinstance(user, str) or not user:
        raise ApiError(codes.ERROR_BAD_REQUEST, "user required")
    return user


async def _notify(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Chorus extension: store a notification durably and deliver it live."""
    if "payload" not in params:
        raise ApiError(codes.ERROR_BAD_REQUEST, "payload required")
    kind, ttl = params.get("type") or "", float(params.get("ttl") or 0)
    if not isinstance(kind, str) or ttl < 0:
        raise ApiError(codes.ERROR_BAD_REQUEST, "type must be a string, ttl >= 0")
    stored = await _notifier(node).notify(_notify_user(params), orjson.dumps(params["payload"]),
                                          type=kind, ttl=ttl)
    return {"id": stored.id, "time": stored.time}


async def _notifications(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    found = await _notifier(node).store.list(
        _notify_user(params), unread_only=bool(params.get("unread_only")),
        limit=int(params.get("limit") or 0))
    return {"notifications": [notification_dict(n) for n in found]}


async def _notifications_mark_read(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    ids = params.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(codes.ERROR_BAD_REQUEST, "ids required")
    return {"marked": await _notifier(node).store.mark_read(_notify_user(params), ids)}


async def _cache_stats(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Chorus extension: L1 cache statistics (hits, misses, evictions, bytes, ...)."""
    return node.cache.as_dict()


async def _journeys(node: Node, params: dict[str, Any]) -> dict[str, Any]:
    """Connection journeys (broker.journal.view): ``user`` (optional) and ``limit``."""
    from broker.journal.view import JourneysOff, clamp_limit, read

    user = params.get("user", "")
    if not isinstance(user, str):
        raise ApiError(codes.ERROR_BAD_REQUEST, "user must be a string")
    try:
        limit = clamp_limit(params.get("limit"))
    except (TypeError, ValueError):
        raise ApiError(codes.ERROR_BAD_REQUEST, "limit must be a positive integer") from None
    try:
        return await read(node, user, limit)
    except JourneysOff as error:
        raise ApiError(codes.ERROR_NOT_AVAILABLE, str(error)) from None


METHODS: dict[str, Method] = {
    "publish": _publish, "broadcast": _broadcast, "subscribe": _subscribe,
    "unsubscribe": _unsubscribe, "disconnect": _disconnect, "refresh": _refresh,
    "presence": _presence,
    "presence_stats": _presence_stats, "history": _history,
    "history_remove": _history_remove, "channels": _channels, "info": _info,
    "notify": _notify, "notifications": _notifications,
    "notifications_mark_read": _notifications_mark_read, "cache_stats": _cache_stats,
    "journeys": _journeys,
}


async def _call(method: Method, node: Node, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"result": await method(node, params)}
    except ApiError as error:
        return {"error": {"code": error.error.code, "message": str(error)}}
    except (ValueError, TypeError) as error:
        return {"error": {"code": codes.ERROR_BAD_REQUEST.code, "message": str(error)}}
    except Exception as error:  # engine trouble: the caller may retry
        log.warning("api call failed: %r", error)
        return {"error": {"code": codes.ERROR_INTERNAL.code,
                          "message": codes.ERROR_INTERNAL.message}}


def authorized(request: web.Request, key: str) -> bool:
    given = request.headers.get("X-API-Key", "")
    if not given:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("apikey "):
            given = auth[7:].strip()
    return bool(key) and hmac.compare_digest(given.encode(), key.encode())


async def api_handler(request: web.Request) -> web.Response:
    state = request.app[NODE]
    config = state.config
    if not config.http_api.insecure and not authorized(request, config.http_api.key):
        # Without a key (allowed, as in Centrifugo) nothing can be authorized: say why.
        message = "unauthorized" if config.http_api.key else "unauthorized: http_api.key is not set"
        return web.json_response({"error": {"code": 401, "message": message}}, status=401)
    name = request.match_info["method"]
    if name == "batch":
        return await _batch(request)
    method = METHODS.get(name)
    if method is None:
        return web.json_response({"error": {"code": 104, "message": "method not found"}},
                                 status=404)
    params = await _params(request)
    if params is None:
        return web.json_response({"error": {"code": 107, "message": "bad request"}},
                                 status=400)
    body = dumps(await _call(method, state.node, params))
    return web.Response(body=body, content_type="application/json")


async def _batch(request: web.Request) -> web.Response:
    params = await _params(request)
    commands = params.get("commands") if params else None
    if not isinstance(commands, list):
        return web.json_response({"error": {"code": 107, "message": "bad request"}},
                                 status=400)
    node = request.app[NODE].node
    if params.get("parallel") is True:  # type: ignore[union-attr]
        # Centrifugo's `parallel`: every command starts at once (with Redis, the engine
        # pipelines their round trips into one); replies keep the commands' order.
        replies = list(await asyncio.gather(*(_batch_one(node, c) for c in commands)))
    else:
        replies = [await _batch_one(node, command) for command in commands]
    return web.Response(body=dumps({"replies": replies}), content_type="application/json")


async def _batch_one(node: Node, command: Any) -> dict[str, Any]:
    # exactly one method per command; anything else is answered "method not found"
    single = isinstance(command, dict) and len(command) == 1
    (name, args), = command.items() if single else [("", 0)]
    method = METHODS.get(name)
    if method is None or not isinstance(args, dict):
        return {"error": {"code": 104, "message": "method not found"}}
    # Centrifugo keys each reply by its method: {"publish": {...}} or {"error": ...}
    reply = await _call(method, node, args)
    return {name: reply["result"]} if "result" in reply else reply


async def _params(request: web.Request) -> dict[str, Any] | None:
    try:
        params = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        return None
    return params if isinstance(params, dict) else None
