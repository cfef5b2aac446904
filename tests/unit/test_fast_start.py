"""``chorus serve``'s fast start: what the command line imports, the paused GC, and
aiohttp's client TLS contexts loaded once serving.

Each case runs a fresh interpreter (imports and the collector are process-wide).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.ports import reserved_port

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, timeout: float = 60) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHORUS_", "CENTRIFUGO_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_the_command_line_loads_no_config_or_server_code_before_a_command_runs() -> None:
    """``import broker.cli`` stays light, so ``chorus serve`` can pause the collector
    before the config and the server are imported (and ``chorus version`` is quick)."""
    script = ("import json, sys, broker.cli; "
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith("
              "('broker.config', 'broker.app', 'aiohttp', 'actors', 'thespian')))))")
    assert json.loads(run(script)) == []


_SERVE = """
import gc, json, logging, os, signal, socket, sys, threading, time
collections = []
started = threading.Event()  # main() called: count collections from there
serving = threading.Event()  # the node runs and the socket listens

class Serving(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("serving on"):
            serving.set()

logging.getLogger("chorus").addHandler(Serving())
gc.callbacks.append(lambda phase, info: phase == "start" and started.is_set() and
                    collections.append((info["generation"], serving.is_set())))
report = {}

def probe(port):
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /ready HTTP/1.0\\r\\n\\r\\n")
                if b" 200 " in s.recv(64):
                    break
        except OSError:
            pass
        time.sleep(0.005)
    report["enabled_when_ready"] = gc.isenabled()
    report["gen0_when_ready"] = gc.get_threshold()[0]
    report["frozen_when_ready"] = gc.get_freeze_count() > 10000
    # aiohttp's client contexts load their CA certificates in the background once serving.
    import ssl
    import aiohttp.connector
    from broker import clientssl
    report["client_ssl_in_background"] = clientssl._thread is not None
    if clientssl._thread is not None:
        clientssl._thread.join(30)
    want = ssl.create_default_context().cert_store_stats()
    report["client_ssl_loaded"] = [
        ctx.cert_store_stats() == want for ctx in (aiohttp.connector._SSL_CONTEXT_VERIFIED,
                                                   aiohttp.connector._SSL_CONTEXT_UNVERIFIED)]
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=probe, args=(int(sys.argv[2]),), daemon=True).start()
from broker.cli import main
started.set()
status = main(["serve", "--config", sys.argv[1], "--port", sys.argv[2]])
report["status"] = status
report["collections_before_serving"] = [g for g, after in collections if not after]
report["enabled_at_exit"] = gc.isenabled()
print(json.dumps(report))
"""


def test_serve_starts_with_the_collector_paused_and_resumes_it_once_serving(
        tmp_path: Path) -> None:
    """No collection runs between ``main()`` and the server listening; by the first 200
    on ``/ready`` the collector runs again (and still does after the drain), with what
    the start built frozen and the serving gen0 threshold (not CPython's 700)."""
    config = tmp_path / "chorus.json"
    config.write_text(json.dumps({"client": {"insecure": True}, "http_api": {"key": "k"},
                                  "prometheus": {"insecure": True}}))
    with reserved_port() as port:
        report = json.loads(run(_SERVE, str(config), str(port)))
    assert report == {"status": 0, "collections_before_serving": [],
                      "enabled_when_ready": True, "enabled_at_exit": True,
                      "gen0_when_ready": 10_000, "frozen_when_ready": True,
                      "client_ssl_in_background": True, "client_ssl_loaded": [True, True]}


_CLIENT_SSL = """
import asyncio, json, ssl
from broker import clientssl
with clientssl.deferred_verify_paths():
    import aiohttp
import aiohttp.connector as connector
contexts = (connector._SSL_CONTEXT_VERIFIED, connector._SSL_CONTEXT_UNVERIFIED)
report = {"deferred": clientssl.pending(),
          "cas_before": [c.cert_store_stats()["x509_ca"] for c in contexts],
          "method_restored": "set_default_verify_paths" not in vars(ssl.SSLContext)}
want = ssl.create_default_context().cert_store_stats()  # made after: loads as usual
report["later_contexts_load"] = want["x509_ca"] > 0

async def connect():
    async with aiohttp.ClientSession():  # its TCPConnector waits for the certificates
        report["loaded_by_connector"] = [c.cert_store_stats() == want for c in contexts]
    report["connector_unguarded"] = aiohttp.TCPConnector.__init__.__qualname__

asyncio.run(connect())
report["left"] = clientssl.pending()
print(json.dumps(report))
"""


def test_aiohttp_client_contexts_get_their_certificates_before_any_connector() -> None:
    """``broker.clientssl``: during the deferred import, contexts note the CA load; the
    first ``TCPConnector`` (every ``ClientSession`` makes one) loads them first."""
    report = json.loads(run(_CLIENT_SSL))
    assert report == {"deferred": 2, "cas_before": [0, 0], "method_restored": True,
                      "later_contexts_load": True, "loaded_by_connector": [True, True],
                      "connector_unguarded": "TCPConnector.__init__", "left": 0}


def test_serve_stopped_as_soon_as_it_is_ready_exits_cleanly(tmp_path: Path) -> None:
    """SIGTERM at the first 200 on ``/ready``, while aiohttp's client certificates may
    still be loading (``broker.clientssl``): the process drains and exits 0 every time
    (a daemon loader thread inside OpenSSL crashed the interpreter's exit)."""
    import signal
    import time

    config = tmp_path / "chorus.json"
    config.write_text(json.dumps({"client": {"insecure": True}, "http_api": {"key": "k"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHORUS_", "CENTRIFUGO_"))}
    env["PYTHONPATH"] = str(ROOT)
    statuses = []
    for _ in range(3):
        with reserved_port() as port:
            proc = subprocess.Popen(
                [sys.executable, "-m", "broker", "serve", "--config", str(config),
                 "--port", str(port), "--log-level", "error"], cwd=ROOT, env=env)
            try:
                deadline = time.monotonic() + 30
                while not _ready(port):
                    assert proc.poll() is None and time.monotonic() < deadline
                    time.sleep(0.002)  # a subprocess' state: nothing to await
                proc.send_signal(signal.SIGTERM)
                statuses.append(proc.wait(timeout=30))
            finally:
                proc.kill()
    assert statuses == [0, 0, 0]


def _ready(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /ready HTTP/1.0\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False
