"""``websocket.write_timeout``: a client whose socket takes no bytes for that long is
disconnected with 3009 "write error" (centrifuge's code for a write past its deadline),
well before its outbox reaches ``client.queue_max_size``; a client that keeps reading
the same stream stays."""

from __future__ import annotations

import asyncio
import json
import time

from tests.functional.conftest import base_config, run_node, wait_until
from tests.reliability.helpers import RawSocket, command, json_client

CHUNK = json.dumps("w" * 64 * 1024).encode()
QUEUE_MAX = 256 * 1024 * 1024  # far away: only the write timeout can cut the client


async def test_a_client_whose_socket_takes_nothing_is_cut_with_3009() -> None:
    config = base_config(client={"queue_max_size": QUEUE_MAX},
                         websocket={"write_timeout": "300ms"})
    async with run_node(config) as node, json_client(node, "reader") as reader:
        await command(reader, {"id": 2, "subscribe": {"channel": "bulk"}})
        received = 0

        async def read() -> None:
            nonlocal received
            while True:
                message = await reader.receive()
                received += message.data.count('"pub"')

        reading = asyncio.create_task(read())
        stuck = await RawSocket.open(node.port, limit=16 * 1024)  # pauses at 16 KB
        try:
            await stuck.connect("stuck")
            stuck.send_text(json.dumps({"id": 2, "subscribe": {"channel": "bulk"}}))
            assert "subscribe" in (await stuck.read_json())[0]
            conn, = (c for c in node.node.connections.values() if c.session.user == "stuck")
            published = 0
            # Fill the kernels' socket buffers until bytes wait in the server's transport.
            while conn.outbox.pending_bytes == 0 and published < 2000:
                await node.chorus.publish("bulk", CHUNK)
                published += 1
                await asyncio.sleep(0)  # let the shard deliver
            assert conn.outbox.pending_bytes > 0, "the kernel buffers never filled"
            stalled_at = time.monotonic()
            await wait_until(lambda: conn.session.client_id not in node.node.connections,
                             "the stuck client cut off", timeout=5)
            assert time.monotonic() - stalled_at >= 0.3
            assert conn.last_error.startswith("write timeout"), conn.last_error
            assert conn.outbox.pending_bytes < QUEUE_MAX
            assert node.node.slow_consumers == 1
            # The reader got every publication and is still connected.
            await wait_until(lambda: received == published, "the reader read everything")
            assert [c for c in node.node.connections.values() if c.session.user == "reader"]
            assert await stuck.close_code(timeout=10) == 3009  # after what was queued
        finally:
            stuck.close()
            reading.cancel()
