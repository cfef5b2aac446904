"""Consumed messages as server API commands: decode one, then apply it to the node.

A message is a method name and a JSON payload, exactly what ``POST /api/<method>``
takes (Centrifugo's async consumers use the same shape): ``publish`` with
``{"channel", "data", "tags"?, "idempotency_key"?, "skip_history"?}``, ``broadcast`` with
``{"channels", ...}``, and any other server API method (``disconnect``, ``unsubscribe``,
``history_remove``...). ``b64data`` (base64) may stand in for ``data``.

Idempotency: a publish without its own ``idempotency_key`` gets one derived from where
the message is stored (``outbox:<table>:<id>``, ``stream:<name>:<entry id>``), stable
across redeliveries, so a message published and then redelivered (the node died before
removing it) is suppressed by the engine instead of reaching subscribers twice. That
holds within the engine's idempotency window (300 s) and, across processes, with an
engine that keeps it outside the process (Redis).

Error handling: ``decode`` raises ``InvalidMessage`` for a message that can never be
applied (not JSON, unknown method, missing channel, unknown namespace); the consumer
removes such a message and counts it. ``dispatch`` lets every other error through
(engine down, node draining): the consumer retries the message later, in order.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from broker.engine.base import SuppressedPublish

if TYPE_CHECKING:
    from broker.node import Node

__all__ = ["ApiCall", "InvalidMessage", "Publish", "decode", "dispatch"]


class InvalidMessage(ValueError):
    """The message can never be applied; the reason says why."""


@dataclass(frozen=True, slots=True)
class Publish:
    """``publish`` (one channel) or ``broadcast`` (several), in the order given."""

    channels: tuple[str, ...]
    data: bytes  # the JSON (or raw bytes from b64data) subscribers receive
    idempotency_key: str
    tags: dict[str, str] | None = None
    skip_history: bool = False


@dataclass(frozen=True, slots=True)
class ApiCall:
    """Any other server API method, applied as ``POST /api/<method>`` would."""

    method: str
    params: dict[str, Any]


def _params(payload: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(payload, dict):
        return payload
    try:
        params = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise InvalidMessage(f"payload is not JSON: {error}") from None
    if not isinstance(params, dict):
        raise InvalidMessage("payload must be a JSON object")
    return params


def _data(params: dict[str, Any]) -> bytes:
    if "data" in params:
        return orjson.dumps(params["data"])
    if isinstance(params.get("b64data"), str):
        try:
            return base64.b64decode(params["b64data"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidMessage("b64data is not base64") from None
    raise InvalidMessage("data (or b64data) required")


def decode(method: str, payload: bytes | str | dict[str, Any], default_key: str,
           known_channel: Any = None) -> Publish | ApiCall:
    """The command in a consumed message. ``default_key``: the idempotency key of a
    publish that names none; ``known_channel(channel) -> bool`` refuses channels of
    unconfigured namespaces (as the server API does with "unknown channel").

    Error handling: InvalidMessage (see the module docstring).
    """
    from broker.transport.http_api import METHODS

    params = _params(payload)
    if method in ("publish", "broadcast"):
        if method == "publish":
            channel = params.get("channel")
            channels: Any = [channel] if isinstance(channel, str) and channel else None
        else:
            channels = params.get("channels")
        if not isinstance(channels, list) or not channels or \
                not all(isinstance(c, str) and c for c in channels):
            raise InvalidMessage(f"{method}: " + ("channel" if method == "publish"
                                                   else "channels") + " required")
        for channel in channels:
            if known_channel is not None and not known_channel(channel):
                raise InvalidMessage(f"{method}: unknown channel {channel!r} (its namespace "
                                     "is not configured)")
        tags = params.get("tags")
        if tags is not None and not (isinstance(tags, dict) and
                                     all(isinstance(v, str) for v in tags.values())):
            raise InvalidMessage(f"{method}: tags must map strings to strings")
        key = params.get("idempotency_key")
        return Publish(tuple(channels), _data(params),
                       key if isinstance(key, str) and key else default_key,
                       tags or None, bool(params.get("skip_history")))
    if method not in METHODS:
        raise InvalidMessage(f"unknown method {method!r}")
    return ApiCall(method, params)


async def dispatch(node: Node, command: Publish | ApiCall) -> bool:
    """Apply ``command``; True when the engine had already published it (a redelivery
    suppressed by its idempotency key; for a broadcast: on any of its channels).

    Returns once the engine acknowledged every publish, so the caller may then remove
    the message. Error handling: InvalidMessage when the server API refuses the call's
    parameters; any other exception is temporary (retry later).
    """
    if isinstance(command, ApiCall):
        await _api_call(node, command)
        return False
    redelivered = False
    for channel in command.channels:
        result = await node.publish(channel, command.data, tags=command.tags,
                                    idempotency_key=command.idempotency_key,
                                    skip_history=command.skip_history)
        redelivered |= isinstance(result, SuppressedPublish)
    return redelivered


async def _api_call(node: Node, call: ApiCall) -> None:
    from broker.protocol import codes
    from broker.transport.http_api import METHODS, ApiError

    try:
        await METHODS[call.method](node, call.params)
    except ApiError as error:
        if error.error.code == codes.ERROR_INTERNAL.code:
            raise
        raise InvalidMessage(f"{call.method}: {error}") from None
    except (ValueError, TypeError, KeyError) as error:  # what the API answers "bad request"
        raise InvalidMessage(f"{call.method}: {error}") from None
