"""The start-up reference: a bare aiohttp + uvloop app answering one route.

`GET /ready` answers 200 ``ok``. It imports nothing else, so the time from its process
start to the first 200 is the floor of a plain aiohttp server on this interpreter
(``chorus serve`` goes below it by loading aiohttp's client CA certificates after it
serves: ``broker/clientssl.py``); ``python -m bench startup`` measures Chorus against it
in the same run.

Run: `python -m bench.hello_server --port 8000`.
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/ready", ready)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
