"""Configuration of the Pusher Channels protocol (``pusher: {apps: [...]}``, a Chorus extension).

Each app is ``{id, key, secret, enable_client_messages, enable_user_authentication,
max_connections, webhooks: [{url, event_types}]}`` — the fields soketi and Laravel Reverb
name the same way. pusher-js connects to ``/app/{key}``; the server libraries call
``/apps/{id}/...`` and sign with ``key`` and ``secret``.

Error handling: :func:`validate_pusher` raises ConfigError naming the key
(``pusher.apps[1].key: duplicate ...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from broker.config.parse import DURATION, SECTIONS, ConfigError, opt

__all__ = ["WEBHOOK_EVENTS", "PusherApp", "PusherConfig", "PusherWebhook", "validate_pusher"]

WEBHOOK_EVENTS = ("channel_occupied", "channel_vacated", "member_added", "member_removed",
                  "client_event")
# An app id and key appear in URL paths and channel names: no ':' or '/'.
APP_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class PusherWebhook:
    url: str = opt("")
    event_types: tuple[str, ...] = opt(WEBHOOK_EVENTS, choices=WEBHOOK_EVENTS)


@dataclass(frozen=True, slots=True)
class PusherApp:
    id: str = opt("")
    key: str = opt("")
    secret: str = opt("")
    enable_client_messages: bool = opt(False)
    enable_user_authentication: bool = opt(False)
    max_connections: int = opt(0, min=0)  # 0 = no limit; cluster wide (heartbeats)
    webhooks: tuple[PusherWebhook, ...] = opt((), kind=SECTIONS, item=PusherWebhook)


@dataclass(frozen=True, slots=True)
class PusherConfig:
    apps: tuple[PusherApp, ...] = opt((), kind=SECTIONS, item=PusherApp)
    # Sent in pusher:connection_established; pusher-js pings after this much silence.
    activity_timeout: float = opt(120.0, kind=DURATION, min=1.0)
    # Server API requests signed longer ago (or ahead) than this are refused (401).
    timestamp_window: float = opt(600.0, kind=DURATION, min=1.0)

    def by_key(self, key: str) -> PusherApp | None:
        return next((app for app in self.apps if app.key == key), None)

    def by_id(self, app_id: str) -> PusherApp | None:
        return next((app for app in self.apps if app.id == app_id), None)


def validate_pusher(config: PusherConfig) -> None:
    """Ids and keys present, safe and unique; secrets present; webhook URLs http(s)."""
    ids: set[str] = set()
    keys: set[str] = set()
    for i, app in enumerate(config.apps):
        path = f"pusher.apps[{i}]"
        for name, value, seen in (("id", app.id, ids), ("key", app.key, keys)):
            if not APP_ID.match(value):
                raise ConfigError(f"{path}.{name}: required, 1-64 letters, digits, '_', '.' "
                                  f"or '-' (got {value!r})")
            if value in seen:
                raise ConfigError(f"{path}.{name}: duplicate {name} {value!r}")
            seen.add(value)
        if not app.secret:
            raise ConfigError(f"{path}.secret: required (the server libraries sign with it)")
        for j, hook in enumerate(app.webhooks):
            if urlsplit(hook.url).scheme not in ("http", "https"):
                raise ConfigError(f"{path}.webhooks[{j}].url: expected an http(s) URL, "
                                  f"got {hook.url!r}")
