"""The commented YAML starter config written by ``chorus genconfig``.

The template names the options people change first; everything else keeps its default
(``chorus checkconfig`` prints what was loaded). Secrets are fresh per call.
"""

from __future__ import annotations

import secrets

_TEMPLATE = """\
# Chorus configuration — Centrifugo v6 key layout.
#
# Every key can also come from the environment as CHORUS_<PATH>, for example
#   CHORUS_HTTP_SERVER_PORT=9000
#   CHORUS_ENGINE_TYPE=redis
#   CHORUS_CHANNEL_NAMESPACES="chat news"         # declare namespaces by name
#   CHORUS_CHANNEL_NAMESPACES_CHAT_PRESENCE=true  # then set their options
# Environment variables override this file; `chorus serve` flags override both.
# Durations: "25s", "500ms", "1m30s", "2h" or a number of seconds.
# Check a file with `chorus checkconfig <file>`.

http_server:
  address: ""          # interface to bind, "" = all
  port: 8000
  tls:
    enabled: false
    cert_pem_file: ""
    key_pem_file: ""

log:
  level: info          # trace | debug | info | warn | error | fatal | none

engine:
  type: memory         # memory (one node) | redis (several nodes share channels)
  redis:
    address: ["redis://127.0.0.1:6379"]   # or "host:port"; several = client-side sharding
    prefix: chorus
    # sentinel_address: ["127.0.0.1:26379"]
    # sentinel_master_name: mymaster
    # cluster_address: ["127.0.0.1:7000"]

client:
  token:
    # Connection JWTs (HS256/384/512) are signed with this secret; keep it private.
    # `chorus gentoken --config <file> --user 42` makes a token for testing.
    hmac_secret_key: "{hmac_secret}"
    # rsa_public_key: "-----BEGIN PUBLIC KEY-----\\n..."   # RS256/384/512
    # ecdsa_public_key: "-----BEGIN PUBLIC KEY-----\\n..." # ES256/384/512
    # jwks_file: /etc/chorus/jwks.json                     # keys selected by "kid"
    # audience: ""
    # issuer: ""
  # subscription_token:   # separate keys for subscription JWTs (default: client.token's)
  #   enabled: true
  #   hmac_secret_key: ""
  allowed_origins: []   # browser origins allowed, e.g. ["https://example.com"]; [] = same origin
  insecure: false       # true = no token needed and every channel open (development only!)
  allow_anonymous_connect_without_token: false
  ping_interval: 25s
  pong_timeout: 8s
  channel_limit: 128
  user_connection_limit: 0     # 0 = unlimited
  queue_max_size: 1048576      # bytes queued for one slow client before disconnecting it

websocket:
  message_size_limit: 65536
  compression: false

channel:
  without_namespace:           # channels without "namespace:" prefix
    allow_subscribe_for_client: true
    presence: false
    history_size: 0
    history_ttl: 0s
  namespaces:
    - name: chat               # channels "chat:..."
      allow_subscribe_for_client: true
      allow_publish_for_subscriber: true
      allow_history_for_subscriber: true
      allow_presence_for_subscriber: true
      presence: true
      join_leave: true
      force_push_join_leave: true
      history_size: 100
      history_ttl: 300s
      force_recovery: true

http_api:
  # Server API (/api): send as "X-API-Key: <key>" or "Authorization: apikey <key>".
  key: "{api_key}"
  insecure: false

admin:
  enabled: false
  password: "{admin_password}"
  secret: "{admin_secret}"
  insecure: false

prometheus:
  enabled: true                # metrics at /metrics
  # Prometheus sends "Authorization: Bearer <token>"; it opens /metrics and nothing else.
  token: "{prometheus_token}"
  insecure: false              # true: scrape without a token

monitor:
  interval: 1s                 # node monitor sampling period
  alerts:                      # threshold and trend rules; see the README
    - "loop_lag > 100ms for 30s"
    - "open_files will exceed open_files_limit within 10m"
  webhook_url: ""              # POST alert changes here ("" = off)

chorus:
  shard_count: 16              # channel shard actors per node
  shutdown_timeout: 10s
  node_name: ""                # "" = host name
"""


def starter_config() -> str:
    """Render the starter YAML with fresh random secrets; it loads without errors."""
    return _TEMPLATE.format(
        hmac_secret=secrets.token_urlsafe(32),
        api_key=secrets.token_urlsafe(24),
        admin_password=secrets.token_urlsafe(12),
        admin_secret=secrets.token_urlsafe(32),
        prometheus_token=secrets.token_urlsafe(32),
    )
