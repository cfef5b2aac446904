"""``chorus serve``'s event loop: aiohttp's ``web.run_app`` for one TCP site, except that
each connection starts with ``broker.transport.fastws.UpgradeProtocol`` instead of
aiohttp's ``RequestHandler`` (which it hands every request it does not take itself).

``run_app`` has no way to choose the protocol of its site's connections, so this is its
single-site path, step for step: a new loop, an ``AppRunner`` (``UpgradeRunner``, whose
sites use that protocol) that turns SIGINT/SIGTERM into ``GracefulExit``, the site
started, ``print`` called, sleeping until stopped, then ``runner.cleanup()`` (the app's
shutdown and cleanup hooks), the remaining tasks cancelled, async generators closed and
the loop closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from ssl import SSLContext
from typing import Any

from aiohttp import web
from aiohttp.web import _cancel_tasks

from broker.transport.fastws import UpgradeProtocol
from broker.transport.keys import NODE
from broker.transport.routes import WEBSOCKET_PATH

__all__ = ["UpgradeRunner", "serve_app"]

KEEPALIVE_TIMEOUT = 75.0  # run_app's default, as before


class UpgradeRunner(web.AppRunner):
    """An ``AppRunner`` whose sites (TCP, socket, Unix) begin each connection as an
    ``UpgradeProtocol`` of its app's node, which hands aiohttp what it does not take.

    Sites read ``runner.server`` once, as the protocol factory of their listening socket;
    the runner itself keeps using aiohttp's ``Server`` (shutdown, cleanup)."""

    @property
    def server(self) -> Any:
        server = self._server
        if server is None:
            return None
        state = self._app[NODE]
        keepalive = self._kwargs.get("keepalive_timeout", KEEPALIVE_TIMEOUT)

        def protocol() -> asyncio.Protocol:
            return UpgradeProtocol(server, state, WEBSOCKET_PATH, keepalive)

        return protocol


async def _serve(app: web.Application, host: str | None, port: int,
                 ssl_context: SSLContext | None, backlog: int, reuse_port: bool,
                 print: Callable[[str], None], **runner_args: Any) -> None:
    runner = UpgradeRunner(app, handle_signals=True, keepalive_timeout=KEEPALIVE_TIMEOUT,
                           **runner_args)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=backlog,
                           reuse_port=reuse_port)
        await site.start()
        print(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)")
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()


def serve_app(app: web.Application, *, host: str | None, port: int,
              ssl_context: SSLContext | None, backlog: int, reuse_port: bool,
              print: Callable[[str], None], **runner_args: Any) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, as ``web.run_app`` with these arguments would
    (``runner_args``: ``access_log``, ``shutdown_timeout`` ...)."""
    loop = asyncio.new_event_loop()
    main = loop.create_task(_serve(app, host, port, ssl_context, backlog, reuse_port, print,
                                   **runner_args))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_tasks(asyncio.all_tasks(loop), loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
