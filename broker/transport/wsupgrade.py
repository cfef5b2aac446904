"""The WebSocket upgrade of a detached socket: checked and answered without aiohttp's
``WebSocketResponse``.

``WebSocketResponse.prepare`` builds what a socket aiohttp keeps reading needs -- a
response object with a header multidict, the payload writer's header serialisation, a
WebSocket writer, a reader queue and a frame parser -- and a detached socket
(``broker.transport.wsdirect``) drops all of it right away. That was about a tenth of
a connect's server CPU. ``upgrade`` does the handshake's checks with aiohttp's own rules
and error texts (RFC 6455 section 4.2.1: ``Upgrade: websocket``, a ``Connection`` that
upgrades, version 13 (8 and 7 too, as aiohttp), a 16-byte base64 key), picks the first
subprotocol the client offers that the server speaks, and returns the 101 answer as
bytes, with the headers aiohttp sends (``Upgrade``, ``Connection``,
``Sec-WebSocket-Accept``, ``Sec-WebSocket-Protocol`` when one was chosen, ``Date``,
``Server``). Compression is never negotiated (Chorus's sockets are uncompressed, as with
``compress=False``).

Error handling: a handshake that fails a check raises ``HTTPBadRequest`` with aiohttp's
text, before anything is written, so aiohttp answers it as it would have.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from aiohttp import hdrs, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.http_websocket import WS_KEY
from aiohttp.log import ws_logger

__all__ = ["handshake", "upgrade"]

_VERSIONS = ("13", "8", "7")
_SERVER = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n".encode()


def upgrade(request: web.BaseRequest, protocols: tuple[str, ...]) -> tuple[bytes, str | None]:
    """The 101 answer to ``request`` and the subprotocol chosen from ``protocols``.

    Raises HTTPBadRequest for a request that is not a valid WebSocket handshake (what
    ``WebSocketResponse._handshake`` raises, with its texts).
    """
    headers = request.headers
    return handshake(headers.get(hdrs.UPGRADE), request._message.upgrade,
                     headers.get(hdrs.CONNECTION), headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL),
                     headers.get(hdrs.SEC_WEBSOCKET_VERSION),
                     headers.get(hdrs.SEC_WEBSOCKET_KEY), request.version, request.remote,
                     protocols)


def handshake(upgrade_header: str | None, upgrades: bool, connection: str | None,
              offered: str | None, version: str | None, key: str | None,
              http_version: tuple[int, int], remote: str | None,
              protocols: tuple[str, ...]) -> tuple[bytes, str | None]:
    """``upgrade`` on the handshake's header values (None: absent); ``upgrades``: the
    parser saw a ``Connection`` that upgrades. Raises HTTPBadRequest as ``upgrade``."""
    if (upgrade_header or "").lower().strip() != "websocket":
        raise web.HTTPBadRequest(
            text=(f"No WebSocket UPGRADE hdr: {upgrade_header}\n Can "
                  '"Upgrade" only to "WebSocket".'))
    if not upgrades:
        raise web.HTTPBadRequest(text=f"No CONNECTION upgrade hdr: {connection}")
    chosen: str | None = None
    if offered is not None:
        wanted = [proto.strip() for proto in offered.split(",")]
        chosen = next((proto for proto in wanted if proto in protocols), None)
        if chosen is None:
            ws_logger.warning("%s: Client protocols %r don't overlap server-known ones %r",
                              remote, wanted, protocols)
    if (version or "") not in _VERSIONS:
        raise web.HTTPBadRequest(text=f"Unsupported version: {version or ''}")
    try:
        if not key or len(base64.b64decode(key)) != 16:
            raise web.HTTPBadRequest(text=f"Handshake error: {key!r}")
    except binascii.Error:
        raise web.HTTPBadRequest(text=f"Handshake error: {key!r}") from None
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_KEY).digest()).decode()
    major, minor = http_version
    answer = (f"HTTP/{major}.{minor} 101 Switching Protocols\r\n"
              f"Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {accept}\r\n")
    if chosen:
        answer += f"Sec-WebSocket-Protocol: {chosen}\r\n"
    answer += f"Date: {rfc822_formatted_time()}"
    return answer.encode() + _SERVER, chosen
