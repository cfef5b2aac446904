"""Error and disconnect codes of the client protocol, with the upstream numbers.

Numbers, messages and flags follow centrifuge (Go) ``errors.go`` / ``disconnect.go`` and
Centrifugo's "Error and disconnect codes" page. Client error codes 0-399 are reserved by
the protocol (applications use 400-1999). Disconnect codes travel as the WebSocket close
code with the reason as close text; whether the client reconnects is decided by the code
range alone (see ``reconnects``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DISCONNECT_BY_CODE",
    "ERROR_BY_CODE",
    "DisconnectCode",
    "ErrorCode",
    "reconnects",
]


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """An error put into a command's reply. ``temporary`` tells SDKs a retry may succeed."""

    code: int
    message: str
    temporary: bool = False

    def to_reply(self, id: int) -> dict[str, Any]:
        """The error reply to the command ``id``; zero fields are left out, as on the wire."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.temporary:
            error["temporary"] = True
        return {"id": id, "error": error} if id else {"error": error}


ERROR_INTERNAL: Final = ErrorCode(100, "internal server error", temporary=True)
ERROR_UNAUTHORIZED: Final = ErrorCode(101, "unauthorized")
ERROR_UNKNOWN_CHANNEL: Final = ErrorCode(102, "unknown channel")
ERROR_PERMISSION_DENIED: Final = ErrorCode(103, "permission denied")
ERROR_METHOD_NOT_FOUND: Final = ErrorCode(104, "method not found")
ERROR_ALREADY_SUBSCRIBED: Final = ErrorCode(105, "already subscribed")
ERROR_LIMIT_EXCEEDED: Final = ErrorCode(106, "limit exceeded")
ERROR_BAD_REQUEST: Final = ErrorCode(107, "bad request")
ERROR_NOT_AVAILABLE: Final = ErrorCode(108, "not available")
ERROR_TOKEN_EXPIRED: Final = ErrorCode(109, "token expired")
ERROR_EXPIRED: Final = ErrorCode(110, "expired")
ERROR_TOO_MANY_REQUESTS: Final = ErrorCode(111, "too many requests", temporary=True)
ERROR_UNRECOVERABLE_POSITION: Final = ErrorCode(112, "unrecoverable position")
ERROR_TOKEN_REVOKED: Final = ErrorCode(113, "token revoked")

ERROR_BY_CODE: Final[dict[int, ErrorCode]] = {
    e.code: e
    for e in (
        ERROR_INTERNAL,
        ERROR_UNAUTHORIZED,
        ERROR_UNKNOWN_CHANNEL,
        ERROR_PERMISSION_DENIED,
        ERROR_METHOD_NOT_FOUND,
        ERROR_ALREADY_SUBSCRIBED,
        ERROR_LIMIT_EXCEEDED,
        ERROR_BAD_REQUEST,
        ERROR_NOT_AVAILABLE,
        ERROR_TOKEN_EXPIRED,
        ERROR_EXPIRED,
        ERROR_TOO_MANY_REQUESTS,
        ERROR_UNRECOVERABLE_POSITION,
        ERROR_TOKEN_REVOKED,
    )
}


def reconnects(code: int) -> bool:
    """Whether a client disconnected with ``code`` reconnects, by upstream's range rule.

    Terminal: 3500-3999 and 4500-4999. Everything else reconnects: 3000-3499 and 4000-4499
    by definition, codes below 3000 (transport-level closes) and 5000 and up (reserved by
    centrifuge, which treats them as reconnecting too).
    """
    return not (3500 <= code < 4000 or 4500 <= code < 5000)


@dataclass(frozen=True, slots=True)
class DisconnectCode:
    """A reason to close a client's connection: WebSocket close code and close text.

    ``reason`` must stay under 123 bytes, the most a WebSocket close frame can carry.
    ``reconnect`` must equal ``reconnects(code)`` (the tables are tested for it); build
    custom codes with ``DisconnectCode.of(code, reason)``.
    """

    code: int
    reason: str
    reconnect: bool

    @classmethod
    def of(cls, code: int, reason: str) -> DisconnectCode:
        """A disconnect whose ``reconnect`` follows the code range."""
        return cls(code, reason, reconnects(code))

    def to_push(self) -> dict[str, Any]:
        """The ``disconnect`` push, for transports that cannot close with a code."""
        disconnect = {"code": self.code, "reason": self.reason, "reconnect": self.reconnect}
        return {"push": {"disconnect": disconnect}}


# Sent when the connection closed without the server asking (clean close or network loss).
DISCONNECT_CONNECTION_CLOSED: Final = DisconnectCode(3000, "connection closed", True)
# Non-terminal: the client reconnects.
DISCONNECT_SHUTDOWN: Final = DisconnectCode(3001, "shutdown", True)
DISCONNECT_SERVER_ERROR: Final = DisconnectCode(3004, "internal server error", True)
DISCONNECT_EXPIRED: Final = DisconnectCode(3005, "connection expired", True)
DISCONNECT_SUB_EXPIRED: Final = DisconnectCode(3006, "subscription expired", True)
DISCONNECT_SLOW: Final = DisconnectCode(3008, "slow", True)
DISCONNECT_WRITE_ERROR: Final = DisconnectCode(3009, "write error", True)
DISCONNECT_INSUFFICIENT_STATE: Final = DisconnectCode(3010, "insufficient state", True)
DISCONNECT_FORCE_RECONNECT: Final = DisconnectCode(3011, "force reconnect", True)
DISCONNECT_NO_PONG: Final = DisconnectCode(3012, "no pong", True)
DISCONNECT_TOO_MANY_REQUESTS: Final = DisconnectCode(3013, "too many requests", True)
# Terminal: the client does not reconnect.
DISCONNECT_INVALID_TOKEN: Final = DisconnectCode(3500, "invalid token", False)
DISCONNECT_BAD_REQUEST: Final = DisconnectCode(3501, "bad request", False)
DISCONNECT_STALE: Final = DisconnectCode(3502, "stale", False)
DISCONNECT_FORCE_NO_RECONNECT: Final = DisconnectCode(3503, "force disconnect", False)
DISCONNECT_CONNECTION_LIMIT: Final = DisconnectCode(3504, "connection limit", False)
DISCONNECT_CHANNEL_LIMIT: Final = DisconnectCode(3505, "channel limit", False)
DISCONNECT_INAPPROPRIATE_PROTOCOL: Final = DisconnectCode(3506, "inappropriate protocol", False)
DISCONNECT_PERMISSION_DENIED: Final = DisconnectCode(3507, "permission denied", False)
DISCONNECT_NOT_AVAILABLE: Final = DisconnectCode(3508, "not available", False)
DISCONNECT_TOO_MANY_ERRORS: Final = DisconnectCode(3509, "too many errors", False)

DISCONNECT_BY_CODE: Final[dict[int, DisconnectCode]] = {
    d.code: d
    for d in (
        DISCONNECT_CONNECTION_CLOSED,
        DISCONNECT_SHUTDOWN,
        DISCONNECT_SERVER_ERROR,
        DISCONNECT_EXPIRED,
        DISCONNECT_SUB_EXPIRED,
        DISCONNECT_SLOW,
        DISCONNECT_WRITE_ERROR,
        DISCONNECT_INSUFFICIENT_STATE,
        DISCONNECT_FORCE_RECONNECT,
        DISCONNECT_NO_PONG,
        DISCONNECT_TOO_MANY_REQUESTS,
        DISCONNECT_INVALID_TOKEN,
        DISCONNECT_BAD_REQUEST,
        DISCONNECT_STALE,
        DISCONNECT_FORCE_NO_RECONNECT,
        DISCONNECT_CONNECTION_LIMIT,
        DISCONNECT_CHANNEL_LIMIT,
        DISCONNECT_INAPPROPRIATE_PROTOCOL,
        DISCONNECT_PERMISSION_DENIED,
        DISCONNECT_NOT_AVAILABLE,
        DISCONNECT_TOO_MANY_ERRORS,
    )
}
