"""The admin JSON API under ``/admin/api/`` and the console at ``/admin/``.

Reads: ``GET tree``, ``actors/{id}``, ``connections``, ``connections/{id}``, ``channels``,
``channels/{name}``, ``nodes``, ``alerts``, ``proxies``, ``consumers``, ``pusher`` (Pusher apps with
their sockets and channels on this node), ``session``, ``journeys?user=&limit=`` and
``journeys.jsonl?user=&limit=`` (connection journeys, broker.journal.view). Actions (``POST``):
``actors/{id}/stop|restart|crash``, ``connections/{id}/disconnect``, ``unsubscribe``
(``{"user", "channel", "client"?}``), ``publish`` (``{"channel", "data"}``), and
``drain`` (the node turns unready, refuses new clients and publishes, and tells every
client to reconnect elsewhere, 3001; it keeps running until the process is stopped: the
step before restarting it), and
``login`` (``{"password"}`` → ``{"token", "expires_at"}``; after 5 wrong passwords from
one address within a minute, 429 with ``Retry-After`` until the oldest is a minute old;
a correct one clears the count — see ``broker.admin.throttle``).

Authentication (see ``broker.admin.auth``): every route but ``login`` and the static
console files needs ``Authorization: Bearer <admin.secret or session token>``, else 401.
With ``admin.enabled`` false nothing is registered, so every admin path is a 404.

Error handling: failures are JSON ``{"error": "..."}`` with 400 (bad input), 403 (crash
not allowed), 404 (no such actor, connection), 409 (refused: any action on the root, or a
stop of a permanent actor — a shard, a monitor, a supervisor — which would leave it down
for good; restart it instead), 429 (login throttled, with ``Retry-After``) or 503 (node
not running); an engine error while reading a channel is a 502. ``restart`` also starts a
permanent child that is declared but not running.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from actors import ActorNotFound, CrashNotAllowed, StopRefused
from broker.admin import auth, views
from broker.admin.throttle import LoginThrottle
from broker.connection.actor import Disconnect
from broker.connection.commands import ServerUnsubscribe
from broker.engine.base import EngineError
from broker.names import ROOT_ID, connection_id
from broker.node import Node, NodeDraining
from broker.protocol import codes
from broker.transport.keys import NODE

API = "/admin/api"
STATIC = Path(__file__).parent / "static"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, default=str), status=status,
                        content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        raise AdminError(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise AdminError(400, "body must be a JSON object")
    return data


def _node(request: web.Request) -> Node:
    node = request.app[NODE]._node
    if node is None:
        raise AdminError(503, "node is not running")
    return node


def _unauthorized(request: web.Request) -> web.Response | None:
    """A 401 unless the request bears ``admin.secret`` or a session token."""
    admin = request.app[NODE].config.admin
    token = auth.bearer_token(request.headers.get("Authorization", ""))
    if not admin.insecure and not auth.authorized(admin.secret, token):
        return _json({"error": "unauthorized"}, 401)
    return None


def guarded(handler: Callable[[web.Request, Node], Awaitable[Any]]) -> Handler:
    """Check the bearer token, find the node, turn AdminError into a JSON error."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        refusal = _unauthorized(request)
        if refusal is not None:
            return refusal
        try:
            return _json(await handler(request, _node(request)))
        except AdminError as error:
            return _json({"error": str(error)}, error.status)

    return wrapper


# --- login -----------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    """Password → session token, throttled per client address (``request.remote``:
    behind a proxy that is the proxy's address unless it passes the client's through)."""
    admin = request.app[NODE].config.admin
    throttle = request.app[LOGIN_THROTTLE]
    address, now = request.remote or "", time.monotonic()
    wait = throttle.retry_after(address, now)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        response = _json({"error": f"too many failed logins; retry in {seconds}s"}, 429)
        response.headers["Retry-After"] = str(seconds)
        return response
    try:
        body = await _body(request)
    except AdminError as error:
        return _json({"error": str(error)}, error.status)
    password = body.get("password")
    if not admin.insecure and not (isinstance(password, str)
                                   and auth.password_matches(admin.password, password)):
        throttle.failed(address, now)
        return _json({"error": "wrong password"}, 401)
    throttle.succeeded(address)
    token = auth.issue_session(admin.secret) if admin.secret else "insecure"
    return _json({"token": token, "expires_at": auth.session_expiry(token) or None})


async def session(request: web.Request, node: Node) -> Any:
    return {"node": node.name, "allow_crash_actor": node.config.admin.allow_crash_actor}


# --- reads -----------------------------------------------------------------------------------


async def tree(request: web.Request, node: Node) -> Any:
    return {"tree": views.trimmed_tree(node.runtime.tree())}


def _actor_id(request: web.Request, node: Node) -> str:
    actor_id = request.match_info["id"]
    if actor_id not in node.runtime.registry:
        raise AdminError(404, f"no actor {actor_id!r}")
    return actor_id


async def actor(request: web.Request, node: Node) -> Any:
    actor_id = _actor_id(request, node)
    snapshot = node.runtime.actor(actor_id)
    snapshot["children"] = [r.id for r in node.runtime.registry.children_of(actor_id)]
    return snapshot


async def connections(request: web.Request, node: Node) -> Any:
    return views.connections(node)


def _connection(request: web.Request, node: Node) -> str:
    client_id = request.match_info["id"]
    if client_id not in node.connections:
        raise AdminError(404, f"no connection {client_id!r}")
    return client_id


async def connection(request: web.Request, node: Node) -> Any:
    return node.connections[_connection(request, node)].health()


async def channels(request: web.Request, node: Node) -> Any:
    return await views.channels(node)


async def channel(request: web.Request, node: Node) -> Any:
    try:
        return await views.channel_detail(node, request.match_info["name"])
    except Exception as error:  # engine trouble: report, do not fail the console
        raise AdminError(502, f"engine error: {error!r}") from None


async def nodes(request: web.Request, node: Node) -> Any:
    return views.nodes(node)


async def alerts(request: web.Request, node: Node) -> Any:
    return views.alerts(node)


async def proxies(request: web.Request, node: Node) -> Any:
    return views.proxies(node)


async def consumers(request: web.Request, node: Node) -> Any:
    return views.consumers(node)


async def pusher(request: web.Request, node: Node) -> Any:
    return views.pusher(node)


def _journey_query(request: web.Request) -> tuple[str, int]:
    from broker.journal.view import clamp_limit

    try:
        return request.query.get("user", ""), clamp_limit(request.query.get("limit"))
    except ValueError:
        raise AdminError(400, "limit must be a positive integer") from None


async def journeys(request: web.Request, node: Node) -> Any:
    """A user's journey across nodes (``?user=``) or the node's overview, with the
    aggregates (broker.journal.view)."""
    from broker.journal.view import JourneysOff, read

    user, limit = _journey_query(request)
    try:
        return await read(node, user, limit)
    except JourneysOff as error:
        raise AdminError(404, str(error)) from None
    except Exception as error:  # store trouble: report, do not fail the console
        raise AdminError(502, f"journey store error: {error!r}") from None


async def journeys_jsonl(request: web.Request) -> web.StreamResponse:
    """The events as JSON Lines (``application/x-ndjson``), same auth and query."""
    from broker.journal.view import JourneysOff, jsonl

    refusal = _unauthorized(request)
    if refusal is not None:
        return refusal
    try:
        node = _node(request)
        user, limit = _journey_query(request)
        body = await jsonl(node, user, limit)
    except JourneysOff as error:
        return _json({"error": str(error)}, 404)
    except AdminError as error:
        return _json({"error": str(error)}, error.status)
    return web.Response(body=body, content_type="application/x-ndjson")


# --- actions ---------------------------------------------------------------------------------


async def actor_action(request: web.Request, node: Node) -> Any:
    action = request.match_info["action"]
    # restart may target a declared child that is not running (to bring it back)
    actor_id = request.match_info["id"] if action == "restart" else _actor_id(request, node)
    runtime = node.runtime
    if actor_id == ROOT_ID:
        raise AdminError(409, "the root cannot be stopped, restarted or crashed; stop the process")
    if action == "crash":
        try:
            runtime.crash_actor(actor_id, "crashed from the admin console")
        except CrashNotAllowed:
            raise AdminError(403, "crashing actors needs admin.allow_crash_actor") from None
    elif action == "stop":
        try:
            runtime.stop_actor(actor_id)
        except StopRefused as refused:
            raise AdminError(409, f"{refused}: POST {API}/actors/{actor_id}/restart") from None
    else:
        try:
            runtime.restart_actor(actor_id)
        except ActorNotFound:
            raise AdminError(404, f"no actor {actor_id!r}") from None
    return {"ok": True, "actor": actor_id, "action": action}


async def disconnect(request: web.Request, node: Node) -> Any:
    client_id = _connection(request, node)
    body = await _body(request)
    code = (codes.DISCONNECT_FORCE_RECONNECT if body.get("reconnect")
            else codes.DISCONNECT_FORCE_NO_RECONNECT)
    node.runtime.tell(connection_id(client_id), Disconnect(code))
    return {"ok": True, "client": client_id, "code": code.code}


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise AdminError(400, f"{key} required")
    return value


async def unsubscribe(request: web.Request, node: Node) -> Any:
    body = await _body(request)
    user, channel = _text(body, "user"), _text(body, "channel")
    client = body.get("client")
    targets = [c for c in node.user_connections(user) if not client or c == client]
    for client_id in targets:
        node.runtime.tell(connection_id(client_id), ServerUnsubscribe(channel))
    return {"ok": True, "connections": len(targets)}


async def publish(request: web.Request, node: Node) -> Any:
    body = await _body(request)
    channel = _text(body, "channel")
    if "data" not in body:
        raise AdminError(400, "data required")
    if node.config.channel_options(channel) is None:
        raise AdminError(400, f"unknown namespace in {channel!r}")
    try:
        _, position = await node.publish(channel, orjson.dumps(body["data"]))
    except NodeDraining as error:
        raise AdminError(503, str(error)) from None
    except EngineError as error:  # Redis down, NOREPLICAS: nothing was stored
        raise AdminError(502, f"publish failed: {error}") from None
    return {"ok": True, "offset": position.offset, "epoch": position.epoch}


async def drain(request: web.Request, node: Node) -> Any:
    from broker.app import drain_clients  # the drain lives with the server's lifecycle

    told = await drain_clients(node, node.config.chorus.shutdown_timeout)
    return {"ok": True, "node": node.name, "draining": True, "clients_told": told}


# --- console -----------------------------------------------------------------------------------


async def console(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def console_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("admin/")


def install_admin(app: web.Application) -> None:
    """Register the admin API and console when ``admin.enabled``."""
    if not app[NODE].config.admin.enabled:
        return
    add_get, add_post = app.router.add_get, app.router.add_post
    app[LOGIN_THROTTLE] = LoginThrottle()
    add_post(f"{API}/login", login)
    for path, read in (("session", session), ("tree", tree), ("connections", connections),
                       ("channels", channels), ("nodes", nodes), ("alerts", alerts),
                       ("proxies", proxies), ("consumers", consumers), ("pusher", pusher),
                       ("journeys", journeys)):
        add_get(f"{API}/{path}", guarded(read))
    add_get(f"{API}/journeys.jsonl", journeys_jsonl)
    add_get(f"{API}/connections/{{id}}", guarded(connection))
    add_post(f"{API}/connections/{{id}}/disconnect", guarded(disconnect))
    add_get(f"{API}/channels/{{name:.+}}", guarded(channel))
    for action in ("stop", "restart", "crash"):
        add_post(f"{API}/actors/{{id:.+}}/{{action:{action}}}", guarded(actor_action))
    add_get(f"{API}/actors/{{id:.+}}", guarded(actor))
    add_post(f"{API}/unsubscribe", guarded(unsubscribe))
    add_post(f"{API}/publish", guarded(publish))
    add_post(f"{API}/drain", guarded(drain))
    add_get("/admin", console_redirect)
    add_get("/admin/", console)
    app.router.add_static("/admin/static", STATIC)
