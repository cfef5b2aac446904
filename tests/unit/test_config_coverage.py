"""Every config key has a test that proves what it does.

``COVERED`` maps each leaf key path of the ``Config`` schema to the test that exercises
its behaviour ("tests/x.py::test_y"): a test that sets the key (or, where noted, relies
on its default) and fails if the key stops doing what it says. A key that is refused
unless it keeps its default (``websocket.read_buffer_size``, ``websocket.compression``,
a namespace's own ``history_meta_ttl``) is covered by the test of its refusal.

Namespace options are one row each, ``channel.*.<option>``: one ``ChannelOptions`` class
serves ``channel.without_namespace`` and every ``channel.namespaces[]`` entry through
the same lookup (``Config.channel_options``), whose test is the row of
``channel.namespaces[].name``.

The test fails for a schema key missing from the table, a row naming no key, and a row
whose test file or function does not exist (checked with ``ast``, nothing imported).
"""

from __future__ import annotations

import ast
import dataclasses
from functools import cache
from pathlib import Path

from broker.config import ChannelOptions, Config, ProxyConfig
from broker.config.parse import NAMESPACES, field_kind, section_type

ROOT = Path(__file__).resolve().parents[2]

U, F, R, C = "tests/unit/", "tests/functional/", "tests/reliability/", "tests/contract/"
KEYS = F + "test_config_keys.py::"
SERVE = R + "test_serve_config.py::"
REDIS = F + "test_redis_config.py::"
TOPOLOGY = C + "test_topology_config.py::"
CROSS = U + "test_config.py::test_cross_field_checks_name_the_key"
LIMITS = R + "test_limits.py::"
ADMIN = F + "test_admin.py::"
ALLOW = U + "test_connection_state.py::test_each_allow_flag_opens_its_command_to_its_audience"
SUB_KEYS = U + "test_auth.py::test_each_subscription_token_key_verifies_subscription_tokens_only"
ADAPTIVE = F + "test_cache_adaptive.py::"
PCONN = F + "test_proxy_connect.py::"
PCHAN = F + "test_proxy_channels.py::"
PRES = F + "test_proxy_resilience.py::"
JOURNEYS = F + "test_journeys.py::"
JOURNEYS_REDIS = F + "test_journeys_multinode.py::"
RPC_SPACES = "test_rpc_namespace_boundary_and_methods_without_namespace"

TRANSPORT_KEYS = (F + "test_transport_keys.py::"
                  "test_handler_prefix_moves_the_endpoint_and_the_body_limit_refuses")
UNI_WS_REFUSED = "tests/unit/test_config_transports.py::test_bad_transport_keys_fail_naming_the_key"
UNI_WS_OPTIONS = ("tests/functional/test_uni_transports.py::"
                  "test_uni_websocket_options_join_pushes_drop_the_disconnect_push_and_limit")

COVERED: dict[str, str] = {
    # -- http_server, log
    "http_server.address": SERVE + "test_http_server_address_is_the_only_interface_bound",
    "http_server.port": R + "test_security.py::test_chorus_serve_terminates_tls",
    "http_server.tls.enabled": R + "test_security.py::test_chorus_serve_terminates_tls",
    "http_server.tls.cert_pem_file": R + "test_security.py::test_chorus_serve_terminates_tls",
    "http_server.tls.key_pem_file": R + "test_security.py::test_chorus_serve_terminates_tls",
    "log.level": SERVE + "test_log_level_filters_what_is_logged",
    # -- engine
    "engine.type": F + "test_multinode.py::"
                       "test_publication_on_one_node_reaches_a_subscriber_on_the_other",
    "engine.redis.address": F + "test_multinode.py::"
                                "test_publication_on_one_node_reaches_a_subscriber_on_the_other",
    "engine.redis.prefix": REDIS + "test_db_and_prefix_place_the_keys",
    "engine.redis.db": REDIS + "test_db_and_prefix_place_the_keys",
    "engine.redis.user": REDIS + "test_user_and_password_authenticate",
    "engine.redis.password": REDIS + "test_user_and_password_authenticate",
    # Wiring into redis-py's connection settings (a timeout needs no server to matter).
    "engine.redis.connect_timeout":
        REDIS + "test_timeouts_and_sentinel_password_reach_every_redis_client",
    "engine.redis.io_timeout":
        REDIS + "test_timeouts_and_sentinel_password_reach_every_redis_client",
    "engine.redis.sentinel_password":
        REDIS + "test_timeouts_and_sentinel_password_reach_every_redis_client",
    "engine.redis.sentinel_address": TOPOLOGY + "test_sentinel_keys_and_read_from_replica",
    "engine.redis.sentinel_master_name": TOPOLOGY + "test_sentinel_keys_and_read_from_replica",
    "engine.redis.cluster_address":
        TOPOLOGY + "test_cluster_address_runs_the_node_on_redis_cluster",
    # -- client: tokens
    "client.token.hmac_secret_key":
        F + "test_sdk_tokens.py::test_invalid_connection_token_disconnects_with_3500",
    "client.token.rsa_public_key": U + "test_auth.py::test_rs256_with_public_key_pem",
    "client.token.ecdsa_public_key": U + "test_auth.py::test_es256_with_public_key_pem",
    "client.token.jwks_file": U + "test_auth.py::test_jwks_file_selects_the_key_by_kid",
    "client.token.audience":
        U + "test_auth.py::test_audience_and_issuer_are_checked_when_configured",
    "client.token.issuer":
        U + "test_auth.py::test_audience_and_issuer_are_checked_when_configured",
    "client.subscription_token.enabled":
        U + "test_auth.py::test_disabled_subscription_token_config_is_ignored",
    "client.subscription_token.hmac_secret_key": SUB_KEYS,
    "client.subscription_token.rsa_public_key": SUB_KEYS,
    "client.subscription_token.ecdsa_public_key": SUB_KEYS,
    "client.subscription_token.jwks_file": SUB_KEYS,
    "client.subscription_token.audience": SUB_KEYS,
    "client.subscription_token.issuer": SUB_KEYS,
    # -- client: connections
    "client.allowed_origins": R + "test_security.py::test_websocket_origin_check",
    "client.insecure": F + "test_multinode.py::"
                           "test_disconnect_through_one_node_closes_the_users_socket_on_the_other",
    "client.allow_anonymous_connect_without_token":
        F + "test_sdk_connect.py::test_anonymous_connect_when_allowed",
    "client.ping_interval":
        F + "test_sdk_connect.py::test_server_pings_are_answered_and_keep_the_connection",
    "client.pong_timeout":
        F + "test_sdk_connect.py::test_client_that_does_not_pong_is_disconnected",
    "client.expired_close_delay":
        F + "test_sdk_tokens.py::test_expired_connection_without_refresh_ends_unauthorized",
    "client.expired_sub_close_delay":
        F + "test_sdk_tokens.py::test_expired_subscription_without_refresh_is_ended",
    "client.presence_update_interval":
        KEYS + "test_presence_is_refreshed_every_presence_update_interval",
    "client.channel_limit": LIMITS + "test_channel_limit_answers_106_and_keeps_the_connection",
    "client.user_connection_limit":
        LIMITS + "test_connections_per_user_over_the_limit_close_3504",
    "client.connection_limit": LIMITS + "test_connections_per_node_over_the_limit_close_3504",
    "client.queue_max_size":
        F + "test_bad_input.py::test_a_client_that_stops_reading_is_dropped_as_slow",
    "client.write_delay": F + "test_write_delay.py::"
        "test_write_delay_holds_every_write_and_joins_consecutive_requests",
    "client.burst_write_delay": F + "test_write_delay.py::"
        "test_burst_write_delay_lets_a_burst_spread_over_requests_share_a_write",
    "client.history_max_publication_limit":
        KEYS + "test_history_max_publication_limit_caps_every_history_read",
    "client.recovery_max_publication_limit":
        F + "test_sdk_history_recovery.py::test_too_many_missed_for_the_recovery_limit",
    "client.subscribe_to_user_personal_channel.enabled":
        F + "test_sdk_server_subs.py::test_personal_channel",
    "client.subscribe_to_user_personal_channel.personal_channel_namespace":
        F + "test_sdk_server_subs.py::test_personal_channel",
    "client.subscribe_to_user_personal_channel.single_connection":
        F + "test_single_connection.py::test_a_new_connection_disconnects_the_users_older_one",
    "client.connect_include_server_time": KEYS + "test_connect_include_server_time",
    "client.command_rate_limit.enabled":
        LIMITS + "test_command_rate_over_the_bucket_closes_3013_and_paced_commands_pass",
    "client.command_rate_limit.rate_per_second":
        LIMITS + "test_command_rate_over_the_bucket_closes_3013_and_paced_commands_pass",
    "client.command_rate_limit.burst":
        LIMITS + "test_command_rate_over_the_bucket_closes_3013_and_paced_commands_pass",
    "client.connect_rate_limit_per_ip.enabled":
        LIMITS + "test_connect_rate_per_ip_closes_3013_before_any_actor_exists",
    "client.connect_rate_limit_per_ip.rate_per_second":
        LIMITS + "test_connect_rate_per_ip_closes_3013_before_any_actor_exists",
    "client.connect_rate_limit_per_ip.burst":
        LIMITS + "test_connect_rate_per_ip_closes_3013_before_any_actor_exists",
    # -- websocket
    "websocket.message_size_limit":
        LIMITS + "test_message_at_the_size_limit_passes_and_one_byte_more_is_1009",
    "websocket.read_buffer_size": CROSS,
    "websocket.write_timeout":
        R + "test_write_timeout.py::test_a_client_whose_socket_takes_nothing_is_cut_with_3009",
    "websocket.compression": CROSS,
    "websocket.detach":
        R + "test_websocket_detached.py::test_the_http_request_is_released_after_the_upgrade",
    # -- channel
    "channel.max_length": U + "test_connection_state.py::test_max_length_is_the_configured_one",
    "channel.namespace_boundary": U + "test_config.py::test_custom_boundaries_are_honoured",
    "channel.user_boundary": U + "test_config.py::test_custom_boundaries_are_honoured",
    "channel.user_separator": U + "test_config.py::test_custom_boundaries_are_honoured",
    "channel.private_prefix": U + "test_config.py::test_custom_boundaries_are_honoured",
    "channel.history_meta_ttl": KEYS + "test_history_meta_ttl_ends_the_epoch",
    "channel.namespaces[].name":
        U + "test_config.py::test_channel_options_by_namespace_and_private_prefix",
    "channel.*.presence": F + "test_sdk_presence.py::test_presence_refusals",
    "channel.*.join_leave": F + "test_sdk_pubsub.py::test_join_and_leave",
    "channel.*.force_push_join_leave":
        F + "test_sdk_pubsub.py::test_leave_is_sent_when_a_subscriber_disconnects",
    "channel.*.history_size":
        F + "test_sdk_history_recovery.py::test_overflowed_history_is_reported_not_recovered",
    "channel.*.history_ttl": KEYS + "test_history_ttl_drops_the_publications",
    "channel.*.history_meta_ttl": CROSS,  # only the global value may be repeated
    "channel.*.force_positioning": KEYS + "test_positioning_only_when_allowed_and_asked_or_forced",
    "channel.*.allow_positioning": KEYS + "test_positioning_only_when_allowed_and_asked_or_forced",
    "channel.*.force_recovery":
        F + "test_sdk_history_recovery.py::test_recoverable_only_when_allowed_and_asked_or_forced",
    "channel.*.allow_recovery":
        F + "test_sdk_history_recovery.py::test_recoverable_only_when_allowed_and_asked_or_forced",
    "channel.*.force_recovery_mode": F + "test_cache_lastvalue.py::"
        "test_plain_subscriber_gets_it_with_auto_cache_recover_and_stream_mode_does_not",
    "channel.*.auto_cache_recover": F + "test_cache_lastvalue.py::"
        "test_plain_subscriber_gets_it_with_auto_cache_recover_and_stream_mode_does_not",
    "channel.*.allowed_delta_types":
        F + "test_sdk_delta.py::test_delta_is_off_when_namespace_does_not_allow_it",
    "channel.*.allow_subscribe_for_client": U + "test_connection_state.py::"
        "test_subscribe_needs_allow_subscribe_for_client_without_token",
    "channel.*.allow_subscribe_for_anonymous":
        U + "test_connection_state.py::test_anonymous_needs_allow_subscribe_for_anonymous_too",
    "channel.*.allow_publish_for_subscriber": ALLOW,
    "channel.*.allow_publish_for_client": ALLOW,
    "channel.*.allow_publish_for_anonymous": ALLOW,
    "channel.*.allow_presence_for_subscriber": ALLOW,
    "channel.*.allow_presence_for_client": ALLOW,
    "channel.*.allow_presence_for_anonymous": ALLOW,
    "channel.*.allow_history_for_subscriber": ALLOW,
    "channel.*.allow_history_for_client": ALLOW,
    "channel.*.allow_history_for_anonymous": ALLOW,
    "channel.*.allow_user_limited_channels": F + "test_sdk_pubsub.py::test_user_limited_channel",
    "channel.*.allow_tags_filter":
        F + "test_sdk_tags_filter.py::test_a_filter_needs_allow_tags_filter",
    "channel.*.channel_regex":
        F + "test_channel_regex.py::test_subscribe_to_a_name_the_regex_refuses_is_107",
    "channel.*.cache_policy": F + "test_cache_policies.py::"
        "test_write_behind_acks_from_l1_and_flushes_within_the_window",
    "channel.*.cache_flush_delay": F + "test_cache_policies.py::"
        "test_write_behind_acks_from_l1_and_flushes_within_the_window",
    # -- server API, admin, metrics, monitor, node
    "http_api.key": F + "test_http_api.py::test_unauthorized_requests_get_401",
    "http_api.insecure": KEYS + "test_http_api_insecure_needs_no_key",
    "admin.enabled": ADMIN + "test_admin_disabled_means_404_everywhere",
    "admin.password": ADMIN + "test_login_issues_a_session_token_that_opens_the_api",
    "admin.secret": ADMIN + "test_every_route_refuses_a_missing_wrong_or_expired_token",
    "admin.insecure": ADMIN + "test_insecure_admin_needs_no_token",
    "admin.allow_crash_actor": ADMIN + "test_crash_is_forbidden_unless_allowed",
    "prometheus.enabled":
        F + "test_metrics_http.py::test_metrics_can_be_opened_or_turned_off_by_config",
    "prometheus.insecure":
        F + "test_metrics_http.py::test_metrics_can_be_opened_or_turned_off_by_config",
    "monitor.interval": KEYS + "test_monitor_interval_is_the_sampling_period",
    "monitor.alerts": ADMIN + "test_alerts_route_and_webhook",
    "monitor.webhook_url": ADMIN + "test_alerts_route_and_webhook",
    "monitor.webhook_timeout": KEYS + "test_webhook_timeout_gives_up_on_a_hanging_receiver",
    "chorus.shard_count": KEYS + "test_shard_count_is_the_number_of_shard_actors",
    "chorus.shutdown_timeout": SERVE + "test_shutdown_timeout_bounds_the_drain",
    "chorus.node_name": KEYS + "test_node_name_is_the_one_info_reports",
    # -- cache (L1)
    "cache.eviction": F + "test_cache_budget.py::test_the_eviction_policy_picks_the_victims",
    "cache.memory_budget": F + "test_cache_budget.py::"
        "test_l1_stays_under_budget_and_evicted_history_is_the_engines",
    "cache.ttl": F + "test_cache_refresh.py::"
        "test_hot_channel_stays_an_l1_hit_across_ttl_periods_cold_one_expires",
    "cache.max_pending": KEYS + "test_cache_max_pending_bounds_the_write_behind_buffer",
    "cache.prewarm":
        F + "test_cache_prewarm.py::test_restarted_shard_serves_its_hottest_channels_from_l1",
    "cache.refresh_ahead": F + "test_cache_refresh.py::"
        "test_hot_channel_stays_an_l1_hit_across_ttl_periods_cold_one_expires",
    "cache.adaptive": ADAPTIVE + "test_write_heavy_channel_switches_to_write_behind_and_back",
    "cache.adaptive_window":
        ADAPTIVE + "test_write_heavy_channel_switches_to_write_behind_and_back",
    "cache.adaptive_write_behind_rate":
        ADAPTIVE + "test_write_heavy_channel_switches_to_write_behind_and_back",
    "cache.adaptive_read_ratio": ADAPTIVE + "test_read_heavy_channel_stays_write_through",
    "cache.adaptive_cold_read_rate":
        ADAPTIVE + "test_cold_channel_keeps_a_small_l1_and_reads_stay_correct",
    "cache.adaptive_min_l1": ADAPTIVE + "test_cold_channel_keeps_a_small_l1_and_reads_stay_correct",
    # -- notifications
    # -- journeys (broker.journal)
    "journeys.enabled": JOURNEYS + "test_journeys_off_records_nothing",
    "journeys.ring_size": JOURNEYS + "test_ring_size_and_reconnect_window_bound_the_memory_journal",
    "journeys.reconnect_window":
        JOURNEYS + "test_ring_size_and_reconnect_window_bound_the_memory_journal",
    "journeys.storm_window": JOURNEYS + "test_reconnect_storm_fires_the_alert",
    "journeys.storm_threshold": JOURNEYS + "test_reconnect_storm_fires_the_alert",
    "journeys.stream_maxlen": JOURNEYS_REDIS + "test_streams_are_capped_and_expire",
    "journeys.all_stream_maxlen": JOURNEYS_REDIS + "test_streams_are_capped_and_expire",
    "journeys.stream_ttl": JOURNEYS_REDIS + "test_streams_are_capped_and_expire",
    "notifications.enabled": KEYS + "test_notifications_disabled_answers_108",
    "notifications.retention_count": KEYS + "test_notification_retention_by_count_and_age",
    "notifications.retention_age": KEYS + "test_notification_retention_by_count_and_age",
    "notifications.read_from_replica": TOPOLOGY + "test_sentinel_keys_and_read_from_replica",
    # -- added with prometheus.token, cache bounds, Centrifugo 6.8 currency
    "prometheus.token": "tests/functional/test_metrics_http.py::"
    "test_metrics_need_the_prometheus_token_and_nothing_else_opens_them",
    "cache.adaptive_forget_after": "tests/unit/test_cache_adaptive.py::"
    "test_cold_channels_are_forgotten_after_idle_windows",
    "cache.adaptive_max_channels": "tests/unit/test_cache_adaptive.py::"
    "test_tracked_channels_stay_under_the_cap_for_100k_channels",
    "cache.single_writer": "tests/unit/test_cache_writers.py::"
    "test_write_behind_with_redis_needs_the_single_writer_declaration",
    "channel.*.allow_channel_compaction": "tests/functional/test_sdk_compaction.py::"
    "test_sdk_negotiates_compaction_and_routes_pushes_by_id",
    "channel.*.delta_publish": "tests/functional/test_sdk_delta.py::"
    "test_client_publications_follow_delta_publish",
    "channel.*.publication_data_format": "tests/functional/test_publication_data_format.py::"
    "test_json_object_namespaces_take_only_objects",
    "channel.publication_data_format": "tests/functional/test_publication_data_format.py::"
    "test_the_global_format_applies_where_a_namespace_sets_none",
    # accepted only as "stream" (map and shared_poll refused): the refusal is the behaviour
    "channel.*.subscription_type": "tests/unit/test_config_centrifugo6.py::"
    "test_bad_or_unsupported_keys_are_refused_by_name",
    "client.disallow_anonymous_connection_tokens": "tests/functional/test_sdk_connect.py::"
    "test_anonymous_connection_tokens_can_be_disallowed",
    "client.stale_close_delay": "tests/functional/test_sdk_connect.py::"
    "test_a_socket_without_connect_closes_after_the_stale_delay",
    # -- event proxies (broker.config.proxy): every proxy section's keys as proxy.*.<key>
    "proxy.*.endpoint": PCONN + "test_sdk_connects_without_a_token_through_the_connect_proxy",
    "proxy.*.timeout": PRES + "test_a_hanging_backend_costs_only_its_own_callers",
    "proxy.*.http_headers": PCONN + "test_headers_static_and_from_the_upgrade_request",
    "proxy.*.emulated_headers":
        F + "test_node_sdk_proxy.py::test_centrifuge_js_through_the_proxies",
    "proxy.*.binary_encoding": PCHAN + "test_binary_encoding_carries_any_bytes_as_base64",
    "proxy.*.include_connection_meta":
        PCHAN + "test_connection_meta_goes_with_every_call_that_includes_it",
    "proxy.*.http.static_headers": PCONN + "test_headers_static_and_from_the_upgrade_request",
    "proxy.*.http.status_to_code_transforms":
        PCONN + "test_status_to_code_transforms_answer_like_the_backend",
    "proxy.*.max_in_flight": PRES + "test_calls_past_the_concurrency_bound_fail_at_once",
    "proxy.*.max_queued": PRES + "test_calls_past_the_concurrency_bound_fail_at_once",
    "proxy.*.breaker_failures": PRES + "test_breaker_opens_after_failures_and_half_opens",
    "proxy.*.breaker_open_time": PRES + "test_breaker_opens_after_failures_and_half_opens",
    "client.proxy.connect.enabled":
        PCONN + "test_sdk_connects_without_a_token_through_the_connect_proxy",
    "client.proxy.refresh.enabled":
        PCONN + "test_refresh_proxy_renews_the_connection_then_expires_it",
    "proxies": PCHAN + "test_subscribe_proxy_refuses_and_allows",
    "channel.*.subscribe_proxy_enabled": PCHAN + "test_subscribe_proxy_refuses_and_allows",
    "channel.*.subscribe_proxy_name": PCHAN + "test_subscribe_proxy_refuses_and_allows",
    "channel.*.publish_proxy_enabled":
        PCHAN + "test_publish_proxy_rewrites_client_publications",
    "channel.*.publish_proxy_name": PCHAN + "test_publish_proxy_rewrites_client_publications",
    "channel.*.sub_refresh_proxy_enabled":
        PCHAN + "test_sub_refresh_proxy_renews_subscriptions_server_side",
    "channel.*.sub_refresh_proxy_name":
        PCHAN + "test_sub_refresh_proxy_renews_subscriptions_server_side",
    "rpc.without_namespace.proxy_enabled": PCHAN + RPC_SPACES,
    "rpc.without_namespace.proxy_name": PCHAN + RPC_SPACES,
    "rpc.namespaces": PCHAN + "test_rpc_reaches_the_backend_by_namespace",
    "rpc.namespace_boundary": PCHAN + RPC_SPACES,
    "rpc.ping.enabled": PCHAN + "test_rpc_ping_is_answered_without_the_backend",
    "rpc.ping.method": PCHAN + "test_rpc_ping_is_answered_without_the_backend",
    # -- transports (besides the bidirectional WebSocket)
    "http_stream.handler_prefix": TRANSPORT_KEYS,
    "http_stream.max_request_body_size": TRANSPORT_KEYS,
    "sse.handler_prefix": TRANSPORT_KEYS,
    "sse.max_request_body_size": TRANSPORT_KEYS,
    "uni_sse.handler_prefix": TRANSPORT_KEYS,
    "uni_sse.max_request_body_size": TRANSPORT_KEYS,
    "uni_http_stream.handler_prefix": TRANSPORT_KEYS,
    "uni_http_stream.max_request_body_size": TRANSPORT_KEYS,
    "emulation.handler_prefix": TRANSPORT_KEYS,
    "emulation.max_request_body_size": TRANSPORT_KEYS,
    "http_stream.enabled": F + "test_node_transports.py::test_publish_recovery_presence_and_rpc",
    "sse.enabled": F + "test_node_transports.py::test_publish_recovery_presence_and_rpc",
    "uni_sse.enabled": (
        F + "test_uni_transports.py::test_uni_sse_connect_publications_pings_and_disconnect"),
    "uni_http_stream.enabled": (
        F + "test_uni_transports.py::"
        "test_uni_http_stream_recovers_from_a_position_in_the_connect_request"),
    "uni_websocket.enabled": UNI_WS_OPTIONS,
    "uni_websocket.handler_prefix": UNI_WS_OPTIONS,
    "uni_websocket.join_push_messages": UNI_WS_OPTIONS,
    "uni_websocket.disable_disconnect_push": UNI_WS_OPTIONS,
    "uni_websocket.message_size_limit": UNI_WS_OPTIONS,
    # refused at any value but their default (nothing in Chorus they could set)
    "uni_websocket.compression": UNI_WS_REFUSED,
    "uni_websocket.compression_level": UNI_WS_REFUSED,
    "uni_websocket.compression_min_size": UNI_WS_REFUSED,
    "uni_websocket.decompressed_message_size_limit": UNI_WS_REFUSED,
    "uni_websocket.disable_closing_handshake": UNI_WS_REFUSED,
    "uni_websocket.read_buffer_size": UNI_WS_REFUSED,
    "uni_websocket.use_write_buffer_pool": UNI_WS_REFUSED,
    "uni_websocket.write_buffer_size": UNI_WS_REFUSED,
    "uni_websocket.write_timeout": UNI_WS_REFUSED,
    "engine.redis.replica_acks": "tests/contract/test_redis_replica_acks.py::"
    "test_without_the_replica_a_publish_is_stored_and_sent_but_not_acknowledged",
    "engine.redis.replica_ack_timeout": "tests/contract/test_redis_replica_acks.py::"
    "test_without_the_replica_a_publish_is_stored_and_sent_but_not_acknowledged",
    # Chorus extension: Pusher apps (a list of sections; each key of an entry is
    # exercised by tests/functional/test_pusher*.py, webhooks by test_pusher_webhooks.py)
    "pusher.apps": F + "test_pusher.py::"
    "test_public_and_private_channels_get_events_triggered_by_the_server_library",
    "pusher.activity_timeout": F + "test_pusher.py::"
    "test_connection_established_names_the_socket_and_the_activity_timeout",
    "pusher.timestamp_window": F + "test_pusher.py::"
    "test_timestamp_window_bounds_how_old_a_signed_request_may_be",
    # a list of sections; each key of an entry is exercised by the consumer tests
    # (tests/functional/test_consumer_postgres.py, test_consumer_redis_stream.py)
    "consumers": "tests/functional/test_consumer_postgres.py::"
    "test_committed_rows_reach_subscribers_in_order_and_leave_the_table",
}


def schema_keys(cls: type = Config, prefix: str = "") -> set[str]:
    """Every leaf key path of the schema (namespace options as ``channel.*.<name>``)."""
    keys: set[str] = set()
    for f in dataclasses.fields(cls):
        if not f.init:
            continue  # derived state (a compiled regex, an index), not a key
        path = f"{prefix}{f.name}"
        kind = field_kind(f)
        if kind == "section":
            section = section_type(f)
            if issubclass(section, ProxyConfig):
                keys |= proxy_keys(section, f"{path}.")
                continue
            keys |= schema_keys(section, "channel.*." if section is ChannelOptions
                                else f"{path}.")
        elif kind == NAMESPACES:
            keys.add(f"{path}[].name")
            keys |= schema_keys(f.metadata["options"], "channel.*.")
        else:
            keys.add(path)
    return keys


def proxy_keys(section: type, path: str) -> set[str]:
    """A proxy's keys once, as ``proxy.*.<key>`` (one ``ProxyConfig`` class serves every
    proxy section, as ``ChannelOptions`` every namespace); what a subclass adds
    (``client.proxy.connect.enabled``) at its own path."""
    own = {f.name for f in dataclasses.fields(ProxyConfig)}
    return schema_keys(ProxyConfig, "proxy.*.") | {
        f"{path}{f.name}" for f in dataclasses.fields(section) if f.init and f.name not in own}


@cache
def functions_in(path: str) -> frozenset[str]:
    """Names of the test functions in a file (module level and ``Class::method``)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{item.name}" for item in node.body
                      if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)}
    return frozenset(names)


def test_every_config_key_has_a_behaviour_test() -> None:
    keys = schema_keys()
    missing = sorted(keys - COVERED.keys())
    assert not missing, "config keys without a behaviour test in COVERED:\n  " + \
        "\n  ".join(missing)
    stale = sorted(COVERED.keys() - keys)
    assert not stale, "COVERED rows for keys the schema no longer has:\n  " + "\n  ".join(stale)


def test_every_referenced_test_exists() -> None:
    broken = []
    for key, ref in sorted(COVERED.items()):
        path, sep, name = ref.partition("::")
        if not sep or not name.startswith(("test_", "Test")):
            broken.append(f"{key}: {ref!r} is not 'tests/<file>.py::test_<name>'")
        elif not (ROOT / path).is_file():
            broken.append(f"{key}: no file {path}")
        elif name not in functions_in(path):
            broken.append(f"{key}: no test {name} in {path}")
    assert not broken, "\n".join(broken)


def test_the_walk_sees_nested_sections_and_namespace_options() -> None:
    keys = schema_keys()
    assert "client.subscribe_to_user_personal_channel.single_connection" in keys
    assert "channel.*.channel_regex" in keys and "channel.namespaces[].name" in keys
    assert not any(key.startswith("channel.without_namespace") for key in keys)
    assert not any("channel_pattern" in key for key in keys)  # derived, not a key
