"""Messages told to a :class:`broker.connection.actor.ConnectionActor`: a client's frame,
a unidirectional connect, the socket's end, a disconnect order, and its own expiry timers;
and ``UNI_ERROR_DISCONNECTS``, the disconnect that answers an error refusing a
unidirectional connect (Centrifugo's mapping).

:mod:`broker.connection.actor` re-exports the public ones (``Frame``, ``UniConnect``,
``SocketClosed``, ``Disconnect``), the import path the transports use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.protocol import codes


@dataclass(slots=True)
class Frame:
    """One WebSocket message from the client (str for text messages)."""

    data: bytes | str


@dataclass(slots=True)
class UniConnect:
    """The connect request of a unidirectional session (params of ``connect``)."""

    params: dict[str, Any]


@dataclass(slots=True)
class SocketClosed:
    """The client's side of the socket is gone."""

    code: int | None = None


@dataclass(slots=True)
class Disconnect:
    """Close this connection with a protocol disconnect code (admin, node, limits)."""

    code: codes.DisconnectCode


@dataclass(slots=True)
class _Expired:
    """The connection's deadline came: no connect command yet (stale), or its credentials
    expired."""


@dataclass(slots=True)
class _SubExpired:
    """A subscription's token expired (sub_refresh due)."""

    channel: str


# Centrifugo's mapping of errors refusing a unidirectional connect to disconnects.
UNI_ERROR_DISCONNECTS = {
    codes.ERROR_EXPIRED.code: codes.DISCONNECT_EXPIRED,
    codes.ERROR_TOKEN_EXPIRED.code: codes.DISCONNECT_EXPIRED,
    codes.ERROR_TOO_MANY_REQUESTS.code: codes.DISCONNECT_TOO_MANY_REQUESTS,
    codes.ERROR_PERMISSION_DENIED.code: codes.DISCONNECT_PERMISSION_DENIED,
}
