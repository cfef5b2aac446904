"""A node starts without importing what its config does not use (the fast start).

Each case runs a fresh interpreter (imports are process-wide): it loads a config file,
builds the app, starts the node (aiohttp's startup: engine, actor tree) and stops it,
then prints which of the watched modules got imported. The watched ones are the slow
imports a memory-engine, HMAC-token, JSON-configured node has no use for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WATCHED = ("redis", "yaml", "tomllib", "cryptography", "jwt", "prometheus_client",
           "prometheus_async", "broker.devcluster", "broker.admin", "broker.backup",
           "broker.cache.adaptive", "difflib", "decimal", "broker.pusher",
           "broker.transport.streams", "broker.transport.emulation", "broker.transport.uni",
           # thespian's system base imports these for features the runtime never uses
           # (actors.thespian_base)
           "logging.config", "socketserver", "zipfile", "thespian.system.sourceLoader")

_SCRIPT = """
import asyncio, json, sys
import broker.app
from aiohttp import web
from broker.config import load_config

async def main():
    runner = web.AppRunner(broker.app.Chorus(load_config(sys.argv[1])).create_app())
    await runner.setup()  # the node starts here
    await runner.cleanup()

asyncio.run(main())
watched = json.loads(sys.argv[2])
print(json.dumps(sorted(w for w in watched if w in sys.modules)))
"""


def imported(tmp_path: Path, config: dict[str, Any], suffix: str = ".json",
             text: str | None = None) -> set[str]:
    """The watched modules a node serving ``config`` imported by the time it started."""
    path = tmp_path / f"chorus{suffix}"
    path.write_text(text if text is not None else json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHORUS_", "CENTRIFUGO_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(path), json.dumps(WATCHED)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


BASE = {"client": {"token": {"hmac_secret_key": "s" * 32}}, "http_api": {"key": "k"},
        "prometheus": {"insecure": True}}


def test_a_memory_engine_json_config_imports_none_of_the_slow_modules(tmp_path: Path) -> None:
    assert imported(tmp_path, BASE) == set()


def test_the_guard_sees_an_import_when_the_config_needs_it(tmp_path: Path) -> None:
    """The same check fails when a module is in use: YAML config, admin console on."""
    yaml_text = "client:\n  token:\n    hmac_secret_key: " + "s" * 32 + "\n"
    assert "yaml" in imported(tmp_path, {}, ".yaml", yaml_text)
    admin = {**BASE, "admin": {"enabled": True, "password": "p" * 16, "secret": "x" * 32}}
    assert imported(tmp_path, admin) == {"broker.admin"}
    adaptive = {**BASE, "cache": {"adaptive": True}}
    assert imported(tmp_path, adaptive) == {"broker.cache.adaptive"}


def test_a_transport_is_imported_when_it_is_enabled(tmp_path: Path) -> None:
    sse = {**BASE, "sse": {"enabled": True}}
    assert imported(tmp_path, sse) == {"broker.transport.streams", "broker.transport.emulation"}
    uni = {**BASE, "uni_sse": {"enabled": True}}
    assert imported(tmp_path, uni) == {"broker.transport.uni", "broker.transport.streams"}
    pusher = {**BASE, "pusher": {"apps": [{"id": "1", "key": "key", "secret": "s" * 32}]}}
    assert imported(tmp_path, pusher) == {"broker.pusher"}
