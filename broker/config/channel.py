"""The ``channel`` section: channel-name rules, the options of channels without a namespace
and of each namespace (:class:`ChannelOptions`), resolved once against the global values.

Part of the schema of :class:`broker.config.Config`; import these names from
:mod:`broker.config`, which re-exports them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from broker.config.parse import DURATION, NAMESPACES, SectionError, opt
from broker.config.proxy import ChannelProxyConfig

DATA_FORMATS = ("", "json", "json_object", "binary")  # publication_data_format values


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """Behaviour of the channels without a namespace or of one namespace.

    ``history_meta_ttl`` is the global ``channel.history_meta_ttl`` (a namespace may
    repeat it; another value is refused: the engines keep one meta TTL).
    ``publication_data_format`` is the effective value: the namespace's own, else the
    global ``channel.publication_data_format``. ``force_recovery_mode`` is "stream" or
    "cache" ("" in a file means "stream").
    """

    presence: bool = opt(False)
    join_leave: bool = opt(False)
    force_push_join_leave: bool = opt(False)
    history_size: int = opt(0)
    history_ttl: float = opt(0.0, kind=DURATION)
    history_meta_ttl: float = opt(0.0, kind=DURATION)
    force_positioning: bool = opt(False)
    allow_positioning: bool = opt(False)
    force_recovery: bool = opt(False)
    allow_recovery: bool = opt(False)
    force_recovery_mode: str = opt("stream", choices=("", "stream", "cache"))
    allowed_delta_types: tuple[str, ...] = opt((), choices=("fossil",))
    allow_subscribe_for_client: bool = opt(False)
    allow_subscribe_for_anonymous: bool = opt(False)
    allow_publish_for_subscriber: bool = opt(False)
    allow_publish_for_client: bool = opt(False)
    allow_publish_for_anonymous: bool = opt(False)
    allow_presence_for_subscriber: bool = opt(False)
    allow_presence_for_client: bool = opt(False)
    allow_presence_for_anonymous: bool = opt(False)
    allow_history_for_subscriber: bool = opt(False)
    allow_history_for_client: bool = opt(False)
    allow_history_for_anonymous: bool = opt(False)
    allow_user_limited_channels: bool = opt(False)
    allow_tags_filter: bool = opt(False)  # Centrifugo v6: subscribers may send a tags filter
    # Client subscribe/publish/presence/history to a name not matching it: 107 (see
    # Config.channel_name_allowed).
    channel_regex: str = opt("")
    # Chorus extension: the shard-level L1 history cache (see broker.cache).
    cache_policy: str = opt("write_through", choices=(
        "write_through", "write_behind", "read_through", "off"))
    cache_flush_delay: float = opt(0.05, kind=DURATION, min=0.001)  # write-behind window
    # Centrifugo v6: cache mode answers every subscriber, not only those sending recover.
    auto_cache_recover: bool = opt(False)
    # Centrifugo v6: every publication is published with delta (as the API's per-call
    # "delta" field), so subscribers that negotiated fossil deltas get deltas; without
    # it they get each publication in full.
    delta_publish: bool = opt(False)
    # Centrifugo v6: what publication data must be: "" (the default) not empty, "json"
    # valid JSON, "json_object" a JSON object, "binary" anything, empty included. ""
    # takes channel.publication_data_format (see ChannelConfig).
    publication_data_format: str = opt("", choices=DATA_FORMATS)
    # Centrifugo v6 (PRO there): SDKs may negotiate a numeric channel id in place of the
    # channel name in publication, join and leave pushes (subscribe flag bit 1).
    allow_channel_compaction: bool = opt(False)
    # Centrifugo v6: only "stream" ("" means it); map and shared_poll are not supported.
    subscription_type: str = opt("stream", choices=("", "stream"))
    # Centrifugo v6: ask the application (an HTTP proxy, or an @chorus.on_... hook) about
    # subscribes, client publications and subscription refreshes (broker.proxy).
    subscribe_proxy_enabled: bool = opt(False)
    subscribe_proxy_name: str = opt("default")
    publish_proxy_enabled: bool = opt(False)
    publish_proxy_name: str = opt("default")
    sub_refresh_proxy_enabled: bool = opt(False)
    sub_refresh_proxy_name: str = opt("default")
    # ``channel_regex`` compiled once, here (None when empty).
    channel_pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.force_recovery_mode == "":
            object.__setattr__(self, "force_recovery_mode", "stream")
        pattern = None
        if self.channel_regex:
            # Centrifugo compiles RE2 (Go regexp); Python's ``re`` reads the same syntax
            # for everything RE2 has, and adds back-references and look-arounds.
            try:
                pattern = re.compile(self.channel_regex)
            except re.error as exc:
                raise SectionError(
                    f"channel_regex: invalid regular expression: {exc}") from None
        object.__setattr__(self, "channel_pattern", pattern)

    @property
    def history_enabled(self) -> bool:
        """True when the channel keeps a history stream (size and TTL both set)."""
        return self.history_size > 0 and self.history_ttl > 0


@dataclass(frozen=True, slots=True)
class ChannelNamespace:
    """An item of ``channel.namespaces``: a name and its channel options."""

    name: str
    options: ChannelOptions = field(default_factory=ChannelOptions)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """``channel``: channel names and the options of each namespace."""

    max_length: int = opt(255, min=1)
    namespace_boundary: str = opt(":")
    user_boundary: str = opt("#")
    user_separator: str = opt(",")
    private_prefix: str = opt("$")
    history_meta_ttl: float = opt(30 * 24 * 3600.0, kind=DURATION)  # Centrifugo: 720h
    # Centrifugo v6: the publication_data_format of namespaces that set none.
    publication_data_format: str = opt("", choices=DATA_FORMATS)
    without_namespace: ChannelOptions = field(default_factory=ChannelOptions)
    namespaces: tuple[ChannelNamespace, ...] = opt(
        (), kind=NAMESPACES, item=ChannelNamespace, options=ChannelOptions
    )
    proxy: ChannelProxyConfig = field(default_factory=ChannelProxyConfig)  # "default" proxies
    _index: Mapping[str, ChannelOptions] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Resolve the effective values once, so readers never need the fallback.
        resolve = self._resolve
        object.__setattr__(self, "without_namespace", resolve(self.without_namespace))
        namespaces = tuple(ChannelNamespace(ns.name, resolve(ns.options)) for ns in self.namespaces)
        object.__setattr__(self, "namespaces", namespaces)
        index = {ns.name: ns.options for ns in namespaces}
        object.__setattr__(self, "_index", MappingProxyType(index))

    def _resolve(self, options: ChannelOptions) -> ChannelOptions:
        changes: dict[str, Any] = {}
        if options.history_meta_ttl <= 0:
            changes["history_meta_ttl"] = self.history_meta_ttl
        if not options.publication_data_format:
            changes["publication_data_format"] = self.publication_data_format
        return dataclasses.replace(options, **changes) if changes else options

    def namespace_options(self, name: str) -> ChannelOptions | None:
        """Options of namespace ``name`` ("" = channels without namespace); None if unknown."""
        if name == "":
            return self.without_namespace
        return self._index.get(name)
