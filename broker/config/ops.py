"""Configuration sections for operations: monitoring and alerts, the L1 cache, and
durable notifications (Chorus extensions to Centrifugo's layout). Part of
``broker.config``, which re-exports them; same ``opt(...)`` rules and loud validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.config.parse import DURATION, ConfigError, opt
from broker.monitor.alerts import DEFAULT_RULES as DEFAULT_ALERT_RULES
from broker.monitor.alerts import Rule, RuleError, parse_rules

__all__ = ["CacheConfig", "JourneysConfig", "MonitorConfig", "NotificationsConfig"]


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Chorus extension: node monitor sampling and alert rules (grammar in
    :mod:`broker.monitor.alerts`: "loop_lag > 100ms for 30s",
    "open_files will exceed open_files_limit within 10m")."""

    interval: float = opt(1.0, kind=DURATION, min=0.05)
    alerts: tuple[str, ...] = opt(DEFAULT_ALERT_RULES)
    webhook_url: str = opt("")  # alerts firing/resolving are POSTed here as JSON
    webhook_timeout: float = opt(5.0, kind=DURATION)

    def __post_init__(self) -> None:
        try:
            parse_rules(self.alerts)
        except RuleError as error:
            raise ConfigError(f"monitor.alerts{error}") from None
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ConfigError(f"monitor.webhook_url: expected an http(s) URL, "
                              f"got {self.webhook_url!r}")

    @property
    def rules(self) -> tuple[Rule, ...]:
        return parse_rules(self.alerts)


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Chorus extension: the shards' L1 cache (broker.cache). ``memory_budget`` is bytes
    of cached publications per shard (0 = no L1 at all); ``ttl`` is how long an idle
    channel stays cached under ``eviction: ttl``."""

    eviction: str = opt("lru", choices=("lru", "lfu", "ttl"))
    memory_budget: int = opt(4 * 1024 * 1024, min=0)
    ttl: float = opt(60.0, kind=DURATION, min=0.001)
    max_pending: int = opt(10000, min=1)  # write-behind publications buffered per shard
    prewarm: int = opt(32, min=0)  # hottest channels reloaded per (re)started shard; 0 = off
    # Under ``eviction: ttl``: a hot channel is reloaded from the engine once idle for
    # this fraction of ``ttl``, so it never expires while hot (broker.cache.refresh); 0 = off
    refresh_ahead: float = opt(0.0, min=0.0)
    # Adaptive policy (broker.cache.adaptive): rates over ``adaptive_window`` move a
    # write_through channel to write_behind and back, and shrink/grow its L1 share.
    adaptive: bool = opt(False)
    adaptive_window: float = opt(5.0, kind=DURATION, min=0.01)
    adaptive_write_behind_rate: float = opt(50.0, min=0.0)  # publishes/s
    adaptive_read_ratio: float = opt(0.1, min=0.0)  # reads per publish, at most
    adaptive_cold_read_rate: float = opt(1.0, min=0.0)  # reads/s under which L1 shrinks
    adaptive_min_l1: int = opt(1, min=1)  # publications a cold channel keeps in L1
    # Channels the adaptive policy tracks (least recently active forgotten past it), and
    # adaptive windows without activity after which a channel is forgotten.
    adaptive_max_channels: int = opt(10000, min=1)
    adaptive_forget_after: int = opt(12, min=1)
    # The user's declaration that this process is the only writer of every channel it
    # publishes to (no other node or worker publishes to the same engine streams): what
    # makes write_behind safe with engine.type redis. See ``other_writers``.
    single_writer: bool = opt(False)

    def __post_init__(self) -> None:
        if self.refresh_ahead >= 1.0:  # opt's max is not checked for floats
            raise ConfigError(f"cache.refresh_ahead: expected a fraction below 1 (0 = off), "
                              f"got {self.refresh_ahead}")

    def other_writers(self, engine_type: str) -> str:
        """Why other nodes or workers may write the streams this node writes ("" when
        it is the only writer: the memory engine, one process by construction — it
        refuses ``--workers`` — or ``single_writer`` declared). Write-behind is only
        safe with a single writer: otherwise two nodes can acknowledge one offset."""
        if engine_type == "memory" or self.single_writer:
            return ""
        return (f"engine.type is {engine_type}, so other nodes or workers may publish to "
                "the same channels; set cache.single_writer: true if only this node "
                "(one process) ever publishes to them")


@dataclass(frozen=True, slots=True)
class JourneysConfig:
    """Chorus extension: connection journey analytics (broker.journal). Every
    connection's lifecycle as events, kept in a ring of ``ring_size`` events (memory
    engine) or capped Redis streams (per user ``stream_maxlen``, expiring
    ``stream_ttl`` after the user's last event, and one of every node's events,
    ``all_stream_maxlen``). A connect of a user whose last disconnect is at most
    ``reconnect_window`` old is a reconnect; ``storm_threshold`` reconnects within
    ``storm_window`` make a reconnect storm (the ``reconnect_storm`` alert)."""

    enabled: bool = opt(True)
    ring_size: int = opt(10000, min=1)
    stream_maxlen: int = opt(500, min=1)
    all_stream_maxlen: int = opt(100000, min=1)
    stream_ttl: float = opt(86400.0, kind=DURATION)
    reconnect_window: float = opt(300.0, kind=DURATION)
    storm_window: float = opt(10.0, kind=DURATION)
    storm_threshold: int = opt(50, min=1)

    def __post_init__(self) -> None:
        for name in ("stream_ttl", "reconnect_window", "storm_window"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"journeys.{name}: expected a positive duration, "
                                  f"got {getattr(self, name)!r}")
        if self.storm_window > self.reconnect_window:
            raise ConfigError(f"journeys.storm_window: {self.storm_window:g}s is longer than "
                              f"journeys.reconnect_window ({self.reconnect_window:g}s): "
                              "reconnects older than the window are never counted")


@dataclass(frozen=True, slots=True)
class NotificationsConfig:
    """Chorus extension: durable per-user notifications (broker.notify)."""

    enabled: bool = opt(True)
    retention_count: int = opt(100, min=1)  # kept per user, newest win
    retention_age: float = opt(7 * 24 * 3600.0, kind=DURATION, min=1.0)
    read_from_replica: bool = opt(False)  # list from a Sentinel replica (tolerates lag)
