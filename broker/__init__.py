"""Chorus: an actor-based realtime broker speaking Centrifugo's client protocol v2.

``create_app(config)`` gives an ``aiohttp.web.Application`` to run standalone or mount
as a sub-app; ``Chorus`` adds RPC and message handlers; ``load_config`` reads a file and
the ``CHORUS_*`` environment.

The names are loaded on first use (PEP 562), so ``import broker.cli`` for ``chorus
gentoken`` or ``chorus backup`` does not load the server stack; and the methods the
package's dataclasses generate are compiled once and cached (``broker.codecache``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from broker import codecache

codecache.install()  # before any of Chorus's dataclasses is defined

if TYPE_CHECKING:
    from broker.app import Chorus, create_app, run_server
    from broker.config import Config, ConfigError, load_config

__all__ = ["Chorus", "Config", "ConfigError", "create_app", "load_config", "run_server"]

_HOMES = {"Chorus": "broker.app", "create_app": "broker.app", "run_server": "broker.app",
          "Config": "broker.config", "ConfigError": "broker.config",
          "load_config": "broker.config"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'broker' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value
