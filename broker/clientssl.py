"""aiohttp's client TLS contexts, with their CA certificates loaded after the node serves:
part of the fast start.

``import aiohttp`` builds two ``SSLContext`` objects for its HTTP client
(``aiohttp.connector``: the default verifying one and the ``ssl=False`` one), and each
loads the system's CA bundle (``set_default_verify_paths``: OpenSSL parses ~150
certificates): ~40-50 ms of CPU per context, about a quarter of a bare aiohttp app's
start. A node needs them only for its own outgoing HTTPS calls (proxies, Pusher webhooks,
monitor alerts), never to start or to serve clients.

``chorus serve`` imports aiohttp inside :func:`deferred_verify_paths`: contexts made
during that import note the call instead of loading (nothing else differs: loading the
paths later gives the same context). :func:`load_in_background`, called once the node
serves, loads them in a thread (OpenSSL's load runs without the GIL, so the loop is not
held; the process waits for it at exit). Until they are loaded, every
``aiohttp.TCPConnector`` (the connector of every ``ClientSession``) waits for them
before it is made, so no client request can ever use a context without its CA
certificates. Processes that import aiohttp some other way (an app mounting Chorus,
tests) are not affected.
"""

from __future__ import annotations

import importlib
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_LOAD = "set_default_verify_paths"
_pending: list[ssl.SSLContext] = []
_lock = threading.Lock()  # held while loading: waiters block until the load is over
_thread: threading.Thread | None = None
_connector_init: Any = None  # aiohttp.TCPConnector.__init__ while it is guarded


@contextmanager
def deferred_verify_paths() -> Iterator[None]:
    """Within: ``SSLContext.set_default_verify_paths`` only notes its context (for
    :func:`load`), and ``aiohttp.TCPConnector`` loads them before it is made. A no-op
    if aiohttp is imported already (its contexts exist: nothing left to defer)."""
    if "aiohttp" in sys.modules:
        yield
        return
    own = _LOAD in vars(ssl.SSLContext)
    saved = vars(ssl.SSLContext).get(_LOAD)
    setattr(ssl.SSLContext, _LOAD, _note)  # swapped for the import only
    try:
        yield
    finally:
        if own:
            setattr(ssl.SSLContext, _LOAD, saved)
        else:  # inherited from _ssl._SSLContext: drop the stand-in
            delattr(ssl.SSLContext, _LOAD)
        if _pending:
            _guard_connector()


def _note(context: ssl.SSLContext) -> None:
    _pending.append(context)


def _guard_connector() -> None:
    global _connector_init
    connector = importlib.import_module("aiohttp").TCPConnector
    original = _connector_init = connector.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        load()
        original(self, *args, **kwargs)

    connector.__init__ = __init__


def load() -> None:
    """Load what was deferred, now, or wait for the background load (idempotent)."""
    global _connector_init
    with _lock:
        while _pending:
            ssl.SSLContext.set_default_verify_paths(_pending.pop())
        if _connector_init is not None:  # nothing deferred is left: unguard
            importlib.import_module("aiohttp").TCPConnector.__init__ = _connector_init
            _connector_init = None


def load_in_background() -> None:
    """Start loading in a thread (once; nothing to do if nothing was deferred)."""
    global _thread
    if _pending and _thread is None:
        # Not a daemon: the interpreter waits for it at exit. A daemon thread inside
        # OpenSSL when the process ends (a node stopped right after it started) can
        # crash the interpreter's finalisation (SIGSEGV instead of exit status 0).
        _thread = threading.Thread(target=load, name="chorus-client-ssl")
        _thread.start()


def pending() -> int:
    """How many contexts still wait for their CA certificates (tests, diagnostics)."""
    return len(_pending)
