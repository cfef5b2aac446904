"""broker.transport.wsupgrade answers and refuses WebSocket upgrades as aiohttp does.

Differential: every request goes through ``upgrade`` and through aiohttp's own
``WebSocketResponse._handshake``; the chosen subprotocol, the accept key and the
refusals (status and text) must be the same.
"""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from broker.transport.ws import SUBPROTOCOLS
from broker.transport.wsupgrade import upgrade

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key
GOOD = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": KEY}
CASES = {
    "plain": GOOD,
    "json": {**GOOD, "Sec-WebSocket-Protocol": "centrifuge-json"},
    "protobuf first": {**GOOD, "Sec-WebSocket-Protocol": "x, centrifuge-protobuf, centrifuge-json"},
    "no overlap": {**GOOD, "Sec-WebSocket-Protocol": "mqtt"},
    "version 8": {**GOOD, "Sec-WebSocket-Version": "8"},
    "bad version": {**GOOD, "Sec-WebSocket-Version": "12"},
    "no upgrade": {k: v for k, v in GOOD.items() if k != "Upgrade"},
    "upgrade to h2c": {**GOOD, "Upgrade": "h2c"},
    "no connection upgrade": {**GOOD, "Connection": "keep-alive"},
    "no key": {k: v for k, v in GOOD.items() if k != "Sec-WebSocket-Key"},
    "short key": {**GOOD, "Sec-WebSocket-Key": "c2hvcnQ="},
    "key not base64": {**GOOD, "Sec-WebSocket-Key": "%%%"},
}


def _request(headers: dict[str, str]) -> web.Request:
    return make_mocked_request("GET", "/connection/websocket", headers=headers)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_outcome_as_aiohttp(name: str) -> None:
    headers = CASES[name]
    ws = web.WebSocketResponse(protocols=SUBPROTOCOLS, compress=False)
    try:
        expected = ws._handshake(_request(headers))
    except web.HTTPException as error:
        with pytest.raises(type(error)) as ours:
            upgrade(_request(headers), SUBPROTOCOLS)
        assert ours.value.text == error.text
        return
    answer, chosen = upgrade(_request(headers), SUBPROTOCOLS)
    aio_headers, aio_protocol, compress, _ = expected
    assert chosen == aio_protocol and compress == 0
    head, _, rest = answer.partition(b"\r\n")
    assert head == b"HTTP/1.1 101 Switching Protocols"
    assert answer.endswith(b"\r\n\r\n") and rest.count(b"\r\n\r\n") == 1
    fields = dict(line.split(": ", 1) for line in rest.decode().strip().split("\r\n"))
    for name_, value in aio_headers.items():
        assert fields[name_] == value
    assert set(fields) == {*aio_headers, "Date", "Server"}


def test_the_accept_key_is_rfc_6455s_example() -> None:
    answer, _ = upgrade(_request(GOOD), SUBPROTOCOLS)
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer


def test_client_ids_are_version_4_uuids() -> None:
    import uuid

    from broker.transport.common import new_client_id

    ids = {new_client_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:50]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_does_not_hand_out_its_parents_client_ids() -> None:
    """Ids come from a pool of random bytes read ahead; a worker forked while the pool
    holds some must draw its own (else two processes give out the same ids)."""
    import os

    from broker.transport.common import new_client_id

    new_client_id()  # the pool now holds the next ids of this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, "\n".join(new_client_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {new_client_id() for _ in range(10)}
    assert len(child) == 10 and not child & parent
