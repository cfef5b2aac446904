"""Chorus: an actor-based realtime broker speaking Centrifugo's client protocol v2.

``create_app(config)`` gives an ``aiohttp.web.Application`` to run standalone or mount
as a sub-app; ``Chorus`` adds RPC and message handlers; ``load_config`` reads a file and
the ``CHORUS_*`` environment.
"""

from broker.app import Chorus, create_app, run_server
from broker.config import Config, ConfigError, load_config

__all__ = ["Chorus", "Config", "ConfigError", "create_app", "load_config", "run_server"]
