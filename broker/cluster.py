"""Node-to-node control over the engine: user commands everywhere, node heartbeats, and
the commands of emulation sessions held by another node.

A server-API ``disconnect``, ``subscribe``, ``unsubscribe`` or ``refresh`` for a user is
applied on this node and sent to every other node as a control message, because that
user's connections may be anywhere. Each node also announces itself every
``HEARTBEAT_INTERVAL`` seconds; the ``NodeDirectory`` keeps the announcements that are
fresh, for the ``info`` API, the admin console and the routing of emulation requests. An
``/emulation`` request that a load balancer sent to a node other than the session's is
forwarded as an ``emulation`` control message naming the session's node (Centrifugo does
the same over its broker); only that node applies it. Surveys (``broker.survey``: a
question to every node, as the server API's ``channels``) travel as ``survey`` messages
to all and ``survey_reply`` messages addressed to the node that asked.

Control messages are at-most-once (the engine's guarantee for ``publish_control``): a
node that misses a heartbeat reappears with the next one; a missed user command is what
a client reconnect or the next command fixes, as in Centrifugo.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from actors import Actor

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger("chorus.cluster")

HEARTBEAT_INTERVAL = 3.0
NODE_TTL = 3 * HEARTBEAT_INTERVAL
USER_OPS = frozenset({"disconnect", "subscribe", "unsubscribe", "refresh"})


def encode_control(op: str, **fields: Any) -> bytes:
    return orjson.dumps({"op": op, **fields})


def decode_control(data: bytes) -> dict[str, Any] | None:
    """The control message in ``data``, or None if it is not one we understand."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        return None
    return message


@dataclass
class NodeDirectory:
    """Other nodes' latest heartbeats; pure, time passed in."""

    nodes: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)

    def update(self, info: dict[str, Any], now: float) -> None:
        uid = info.get("uid")
        if isinstance(uid, str) and uid:
            self.nodes[uid] = (info, now)

    def alive(self, now: float) -> list[dict[str, Any]]:
        """Fresh announcements, dropping nodes silent for longer than ``NODE_TTL``."""
        for uid in [u for u, (_, seen) in self.nodes.items() if now - seen > NODE_TTL]:
            del self.nodes[uid]
        return [info for info, _ in self.nodes.values()]


class EngineLinkActor(Actor):
    """Owns the engine's link to the other nodes: runs ``engine.run_link()`` (the
    pub/sub readers, their reconnect loops, the liveness PING) as its effect, announces
    this node to the others on a timer, and answers ``"status"`` with the link state.

    Failure policy: a permanent child of the engine supervisor. If the link machinery
    fails by itself, this actor fails and its supervisor restarts it, which starts the
    machinery afresh (re-subscribe, catch up from the streams). A crash or kill of this
    actor stops the machinery with it: nothing of the link runs unowned. A failed
    heartbeat is logged and the next one tries again.
    """

    kind = "engine"

    def __init__(self, node: Node) -> None:
        self.node = node

    def on_start(self) -> None:
        self.run_effect(self.node.engine.run_link(), on_error=self._link_failed)
        self._announce()
        self.start_timer(HEARTBEAT_INTERVAL, "heartbeat", repeat=True)

    def _link_failed(self, error: BaseException) -> None:
        raise error  # fail: the supervisor restarts the link

    def receive(self, message: Any) -> Any:
        if message == "heartbeat":
            self._announce()
            return None
        if message == "status":
            engine = self.node.engine
            return {"engine": engine.name, "up": bool(getattr(engine, "link_up", True))}
        return super().receive(message)

    def _announce(self) -> None:
        node = self.node
        info = node.local_info()
        if node.config.pusher.apps:  # only then is broker.pusher imported at all
            from broker.pusher.state import heartbeat_fields  # sockets per Pusher app

            info.update(heartbeat_fields(node))
        data = encode_control("node", **info)
        self.run_effect(self.node.engine.publish_control(data),
                        on_error=lambda error: log.info("heartbeat not sent: %r", error))


def control_message(node: Node, data: bytes) -> None:
    """Apply a control message from another node (malformed ones are logged, dropped)."""
    message = decode_control(data)
    if message is None:
        log.warning("ignored a malformed control message (%d bytes)", len(data))
        return
    op = message["op"]
    if op == "node":
        node.directory.update(message, time.time())
    elif op in USER_OPS:
        user_command_message(node, message)
    elif op == "survey":
        node.surveys.on_request(message)
    elif message.get("node") != node.uid:
        return  # the ops below are sent to every node, addressed to one
    elif op == "survey_reply":
        node.surveys.on_reply(message)
    elif op == "emulation":
        emulation_message(node, message)


def user_command_message(node: Node, message: dict[str, Any]) -> None:
    """Apply a user command (from the server API here, or from another node) to this
    node's connections of ``message["user"]`` (or only ``message["client"]``)."""
    from broker.connection.actor import Disconnect
    from broker.connection.commands import ServerRefresh, ServerSubscribe, ServerUnsubscribe
    from broker.names import connection_id
    from broker.protocol import codes

    user, client = str(message.get("user", "")), str(message.get("client") or "")
    channel, op = str(message.get("channel") or ""), message["op"]
    if op == "disconnect":
        number = int(message.get("code") or 0)
        code = codes.DISCONNECT_FORCE_NO_RECONNECT if not number else (
            codes.DISCONNECT_BY_CODE.get(number)
            or codes.DisconnectCode(number, str(message.get("reason", "")),
                                    codes.reconnects(number)))
        command: Any = Disconnect(code)
    elif op == "subscribe":
        command = ServerSubscribe(channel)
    elif op == "refresh":
        info = message.get("info")
        command = ServerRefresh(bool(message.get("expired")), int(message.get("expire_at") or 0),
                                info.encode() if isinstance(info, str) else None)
    else:
        command = ServerUnsubscribe(channel)
    spared = message.get("whitelist") or ()  # disconnect: these clients stay
    for client_id in node.user_connections(user):
        if (not client or client_id == client) and client_id not in spared:
            node.runtime.tell(connection_id(client_id), command)


def emulation_control(node_uid: str, session: str, data: bytes) -> bytes:
    """The control message carrying an emulation request's commands to ``node_uid``."""
    return encode_control("emulation", node=node_uid, session=session,
                          data=base64.b64encode(data).decode("ascii"))


def deliver_emulated(node: Node, session: str, data: bytes | str) -> bool:
    """Tell the connection of ``session`` on this node the commands in ``data``, as if
    its transport had read them; False if no such session lives here."""
    from broker.connection.actor import Frame
    from broker.names import connection_id

    client_id = node.sessions.get(session)
    if client_id is None:
        return False
    node.runtime.tell(connection_id(client_id), Frame(data))
    return True


def emulation_message(node: Node, message: dict[str, Any]) -> None:
    """Apply an ``emulation`` control message addressed to this node.

    Error handling: a malformed message is logged and dropped (at most once, like every
    control message: the client's command times out and the SDK retries or reconnects).
    """
    session, data = message.get("session"), message.get("data")
    if not isinstance(session, str) or not isinstance(data, str):
        log.warning("ignored a malformed emulation control message")
        return
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error:
        log.warning("ignored an emulation control message with bad data")
        return
    deliver_emulated(node, session, raw)
