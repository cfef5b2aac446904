"""In-process hooks: ``@chorus.on_connect`` and friends, with the proxies' semantics.

A hook is ``async def hook(request) -> answer`` (a plain function works too). It gets the
request dataclass an HTTP proxy of the same event would be sent as JSON
(``broker.proxy.types``: ``ConnectRequest``, ``SubscribeRequest`` ...) and answers as
the proxy's JSON would:

* a result dataclass (``ConnectResult``, ``SubscribeResult`` ...), or a dict in the
  proxy's JSON shape (``{"result": {...}}``, ``{"error": {...}}``, ``{"disconnect": {...}}``);
* ``None``: no result (connect: refused unless anonymous connects are allowed;
  subscribe: allowed with the namespace's options; publish: published unchanged; ...);
* ``ProxyError`` / ``ProxyDisconnect``, returned or raised.

It runs where the HTTP call would: as an effect of the connection actor, on the event
loop. It must not block (a blocking call stalls every connection of the process); long
work belongs in ``await``-ed I/O. Any other exception it raises answers the client with
error 100 (internal, temporary) and is logged with its traceback.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from broker.proxy.codec import Answer, decode_answer
from broker.proxy.types import RESULTS, ProxyDisconnect, ProxyError, ProxyFailure, Request

log = logging.getLogger("chorus.proxy")

Hook = Callable[[Any], Any]

# Decorator names by event (``Chorus.on_connect`` registers the "connect" hook ...).
HOOK_NAMES = {"connect": "on_connect", "refresh": "on_refresh", "subscribe": "on_subscribe",
              "publish": "on_publish", "sub_refresh": "on_sub_refresh"}


class HookBackend:
    """A registered hook, called like an HTTP proxy (``call(kind, request)``)."""

    def __init__(self, kind: str, hook: Hook) -> None:
        self.name = f"hook/{kind}"  # the metrics label
        self.kind = kind
        self.hook = hook
        self.in_flight = 0

    async def call(self, kind: str, request: Request) -> Answer:
        self.in_flight += 1
        try:
            out = self.hook(request)
            if inspect.isawaitable(out):
                out = await out
        except (ProxyError, ProxyDisconnect) as answer:
            return answer
        except Exception as error:
            log.exception("@chorus.%s hook failed", HOOK_NAMES.get(kind, kind))
            raise ProxyFailure(f"hook raised {error!r}", "hook") from error
        finally:
            self.in_flight -= 1
        if isinstance(out, dict):
            return decode_answer(kind, out)
        if out is None or isinstance(out, ProxyError | ProxyDisconnect | RESULTS[kind]):
            return out
        raise ProxyFailure(f"@chorus.{HOOK_NAMES.get(kind, kind)} returned "
                           f"{type(out).__name__}; expected {RESULTS[kind].__name__}, a dict "
                           "in the proxy's JSON shape, None, ProxyError or ProxyDisconnect",
                           "hook")

    def snapshot(self) -> dict[str, Any]:
        name = getattr(self.hook, "__qualname__", repr(self.hook))
        return {"name": self.name, "endpoint": f"@chorus.{HOOK_NAMES.get(self.kind, self.kind)}"
                f" ({name})", "timeout": None, "breaker": None, "breaker_opens": 0,
                "retry_in": 0.0, "in_flight": self.in_flight, "queued": 0,
                "max_in_flight": None}
