"""Configuration of the transports besides the bidirectional WebSocket, in Centrifugo v6's
layout (top-level ``http_stream``, ``sse``, ``emulation``, ``uni_websocket``, ``uni_sse``,
``uni_http_stream``). Part of ``broker.config``, which re-exports them; same ``opt(...)``
rules and loud validation. Every transport is off unless ``enabled``; ``/emulation``
is served whenever ``http_stream`` or ``sse`` is enabled (as in Centrifugo).

Keys that Centrifugo has and that only tune its Go implementation (write buffers, the
uni WebSocket write timeout) are accepted so Centrifugo configs load, and have no
effect here. Compression cannot be turned on (publication frames are built once and
shared by every subscriber), and says so at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.config.parse import DURATION, ConfigError, opt

__all__ = ["EmulationConfig", "HttpStreamConfig", "SseConfig", "UniHttpStreamConfig",
           "UniSseConfig", "UniWebSocketConfig"]

_BODY_LIMIT = 65536


def _check_prefix(section: str, prefix: str) -> None:
    if not prefix.startswith("/"):
        raise ConfigError(f"{section}.handler_prefix: must start with '/', got {prefix!r}")


@dataclass(frozen=True, slots=True)
class HttpStreamConfig:
    """``http_stream``: bidirectional emulation over a streamed HTTP response (POST)."""

    enabled: bool = opt(False)
    handler_prefix: str = opt("/connection/http_stream")
    max_request_body_size: int = opt(_BODY_LIMIT, min=1)

    def __post_init__(self) -> None:
        _check_prefix("http_stream", self.handler_prefix)


@dataclass(frozen=True, slots=True)
class SseConfig:
    """``sse``: bidirectional emulation over Server-Sent Events (GET with ``cf_connect``,
    or POST); JSON protocol only."""

    enabled: bool = opt(False)
    handler_prefix: str = opt("/connection/sse")
    max_request_body_size: int = opt(_BODY_LIMIT, min=1)

    def __post_init__(self) -> None:
        _check_prefix("sse", self.handler_prefix)


@dataclass(frozen=True, slots=True)
class EmulationConfig:
    """``emulation``: the endpoint taking the commands of HTTP-streaming and SSE sessions."""

    handler_prefix: str = opt("/emulation")
    max_request_body_size: int = opt(_BODY_LIMIT, min=1)

    def __post_init__(self) -> None:
        _check_prefix("emulation", self.handler_prefix)


_UNI_WS_FIXED = {
    "compression_min_size": "no compression", "compression_level": "no compression",
    "decompressed_message_size_limit": "no compression",
    "read_buffer_size": "aiohttp has no per-connection read buffer to size",
    "write_buffer_size": "pushes are written as built, once per broadcast",
    "use_write_buffer_pool": "pushes are written as built, once per broadcast",
    "write_timeout": "the write watch applies websocket.write_timeout to every socket",
    "disable_closing_handshake": "aiohttp always sends the close frame",
}
_UNI_WS_DEFAULTS: dict[str, Any] = {
    "compression_min_size": 0, "compression_level": 1, "decompressed_message_size_limit": 0,
    "read_buffer_size": 0, "write_buffer_size": 0, "use_write_buffer_pool": False,
    "write_timeout": 1.0, "disable_closing_handshake": False,
}


@dataclass(frozen=True, slots=True)
class UniWebSocketConfig:
    """``uni_websocket``: pushes only over a WebSocket; the connect request is the first
    message or the ``cf_connect`` parameter."""

    enabled: bool = opt(False)
    handler_prefix: str = opt("/connection/uni_websocket")
    message_size_limit: int = opt(_BODY_LIMIT, min=1)
    join_push_messages: bool = opt(False)  # several pushes per message, newline-joined
    disable_disconnect_push: bool = opt(False)  # the close frame alone carries the code
    compression: bool = opt(False)
    compression_min_size: int = opt(0)
    compression_level: int = opt(1)
    decompressed_message_size_limit: int = opt(0)
    read_buffer_size: int = opt(0)
    write_buffer_size: int = opt(0)
    use_write_buffer_pool: bool = opt(False)
    write_timeout: float = opt(1.0, kind=DURATION)
    disable_closing_handshake: bool = opt(False)

    def __post_init__(self) -> None:
        _check_prefix("uni_websocket", self.handler_prefix)
        if self.compression:
            raise ConfigError("uni_websocket.compression: not supported (frames are built "
                              "once per broadcast and shared by every subscriber)")
        # Centrifugo's socket tuning keys: Chorus has nothing they could set (aiohttp owns
        # the buffers; the write watch uses websocket.write_timeout for every socket), so
        # they load at their defaults and any other value is refused, never ignored.
        for name, why in _UNI_WS_FIXED.items():
            value, default = getattr(self, name), _UNI_WS_DEFAULTS[name]
            if value != default:
                raise ConfigError(f"uni_websocket.{name}: only {default!r} is supported "
                                  f"({why})")


@dataclass(frozen=True, slots=True)
class UniSseConfig:
    """``uni_sse``: pushes only, as Server-Sent Events (GET with ``cf_connect``, or POST)."""

    enabled: bool = opt(False)
    handler_prefix: str = opt("/connection/uni_sse")
    max_request_body_size: int = opt(_BODY_LIMIT, min=1)

    def __post_init__(self) -> None:
        _check_prefix("uni_sse", self.handler_prefix)


@dataclass(frozen=True, slots=True)
class UniHttpStreamConfig:
    """``uni_http_stream``: pushes only, as newline-delimited JSON of a streamed POST."""

    enabled: bool = opt(False)
    handler_prefix: str = opt("/connection/uni_http_stream")
    max_request_body_size: int = opt(_BODY_LIMIT, min=1)

    def __post_init__(self) -> None:
        _check_prefix("uni_http_stream", self.handler_prefix)
