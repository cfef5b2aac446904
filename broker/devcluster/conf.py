"""What ``chorus cluster up`` runs, as data: ports, and the config text of every process.

Pure functions, no I/O: :class:`ClusterPlan` picks the layout and renders the Redis,
Sentinel, Chorus and nginx configs, so tests check them (``nginx -t``, Chorus's own
config validation) without starting anything. :mod:`broker.devcluster.launcher` writes them
to the state dir and runs the processes.

Default ports (``--base-port 17400``): nginx base, nodes base+1.., Redis primary base+20,
replica base+21, Sentinels base+30... — clear of the usual services (6379 Redis, 5432,
5672, 4222, 1883) and below the kernel's ephemeral range (32768+), so outgoing
connections never take them. ``base_port=0`` asks the kernel for free ports (tests).
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_BASE_PORT", "MASTER_NAME", "ClusterPlan", "Ports", "free_port"]

DEFAULT_BASE_PORT = 17400
MASTER_NAME = "chorus"  # the Sentinel service name (engine.redis.sentinel_master_name)
SENTINELS = 3
SENTINEL_QUORUM = 2


def free_port() -> int:
    """A loopback port the kernel reports free now (it may be taken before it is bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Ports:
    """Every port of the cluster; all bound on 127.0.0.1."""

    balancer: int
    nodes: tuple[int, ...]
    primary: int
    replica: int
    sentinels: tuple[int, ...]

    @classmethod
    def layout(cls, base: int, nodes: int) -> Ports:
        """Ports from ``base`` (see the module docstring), or free ones when ``base`` is 0.

        Error handling: ValueError if ``nodes`` is not 1..19 or ``base`` is out of range.
        """
        if not 1 <= nodes <= 19:
            raise ValueError(f"--nodes must be between 1 and 19, got {nodes}")
        if base == 0:
            picked: set[int] = set()
            while len(picked) < nodes + 3 + SENTINELS:
                picked.add(free_port())
            it = iter(sorted(picked))
            return cls(next(it), tuple(next(it) for _ in range(nodes)), next(it), next(it),
                       tuple(next(it) for _ in range(SENTINELS)))
        if not 1024 <= base <= 65535 - 40:
            raise ValueError(f"--base-port must be 0 or between 1024 and 65495, got {base}")
        return cls(base, tuple(base + 1 + i for i in range(nodes)), base + 20, base + 21,
                   tuple(base + 30 + i for i in range(SENTINELS)))

    def all(self) -> list[int]:
        return [self.balancer, *self.nodes, self.primary, self.replica, *self.sentinels]


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """The whole local cluster: where it lives, its ports, its secrets."""

    state_dir: Path
    ports: Ports
    insecure: bool = False
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    hmac_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    admin_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def dir_of(self, name: str) -> Path:
        return self.state_dir / name

    # -- Redis --------------------------------------------------------------------------

    def redis_conf(self, port: int, replica_of: int | None = None) -> str:
        """A data server. ``min-replicas-to-write 1`` makes a primary refuse writes when
        its replica is gone (it was promoted, or it died): an acknowledged publication
        then always exists on two servers, so a Sentinel failover cannot drop one. The
        price: with the replica down, publishing fails until it is back."""
        workdir = self.dir_of(f"redis-{port}")
        lines = [
            f"port {port}", "bind 127.0.0.1", f"dir {workdir}", f"logfile {workdir}/redis.log",
            # AOF as in deploy/redis/redis.conf: a restarted server keeps epochs and offsets.
            'save ""', "appendonly yes", "appendfsync everysec",
            "min-replicas-to-write 1", "min-replicas-max-lag 5",
            # A demoted primary resyncs at once instead of 5 s later: writes resume sooner.
            "repl-diskless-sync-delay 0",
        ]
        if replica_of is not None:
            lines.append(f"replicaof 127.0.0.1 {replica_of}")
        return "\n".join(lines) + "\n"

    def sentinel_conf(self, port: int) -> str:
        """A Sentinel watching the primary; it rewrites this file as the topology changes."""
        workdir = self.dir_of(f"sentinel-{port}")
        return (
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\nlogfile {workdir}/sentinel.log\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports.primary} {SENTINEL_QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 2000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )

    # -- Chorus -------------------------------------------------------------------------

    def node_config(self, index: int) -> dict[str, Any]:
        """Node ``index`` (1-based): the Sentinel topology, a history channel space, the
        admin console, metrics without auth (loopback only)."""
        return {
            "http_server": {"address": "127.0.0.1", "port": self.ports.nodes[index - 1]},
            "engine": {"type": "redis", "redis": {
                "sentinel_address": [f"127.0.0.1:{p}" for p in self.ports.sentinels],
                "sentinel_master_name": MASTER_NAME,
                "prefix": "chorus-local",
                "replica_acks": 1,  # acknowledged only once the replica has it
            }},
            "client": {"token": {"hmac_secret_key": self.hmac_secret},
                       "insecure": self.insecure},
            "channel": {"without_namespace": {
                "allow_subscribe_for_client": True, "allow_history_for_subscriber": True,
                "history_size": 1000, "history_ttl": "600s", "allow_recovery": True,
            }},
            "http_api": {"key": self.api_key},
            # Emulated sessions behind the balancer: /emulation may reach any node.
            "http_stream": {"enabled": True}, "sse": {"enabled": True},
            "admin": {"enabled": True, "password": self.admin_password,
                      "secret": self.admin_secret},
            "prometheus": {"insecure": True},
            "chorus": {"node_name": f"node-{index}", "shutdown_timeout": "5s"},
        }

    # -- nginx --------------------------------------------------------------------------

    def nginx_conf(self) -> str:
        """nginx in the foreground with every path under ``state_dir/nginx``.

        ``least_conn``: WebSockets live for hours, so balancing by open connections
        spreads them better than round robin. A failed node is skipped for 5 s
        (``max_fails``/``fail_timeout``) for API requests; nginx OSS has no active health
        checks. Client connections go through their own upstream that never marks a node
        failed (a WebSocket counts as a success only when it ends, so a marked node would
        take one handshake per ``fail_timeout`` once back): a handshake a node refuses or
        answers 503 (draining) moves on to the next node (``proxy_next_upstream``).
        """
        root = self.dir_of("nginx")
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;"
                            for p in self.ports.nodes)
        ws_servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=0;"
                               for p in self.ports.nodes)
        temp = "\n".join(f"    {kind}_temp_path {root}/tmp/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""\
# Generated by `chorus cluster up`; the production template is deploy/nginx/chorus.conf.
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    upstream chorus {{
        least_conn;
{servers}
        keepalive 16;
    }}
    # Client connections: never marked failed. nginx counts a proxied WebSocket as a
    # success only when it ends (hours later), so a node marked failed would take one
    # handshake per fail_timeout after it is back; instead each handshake that a node
    # refuses or answers 503 (draining) moves on to the next node.
    upstream chorus_clients {{
        least_conn;
{ws_servers}
    }}
    server {{
        listen 127.0.0.1:{self.ports.balancer};
        location /connection/ {{
            proxy_pass http://chorus_clients;
            proxy_connect_timeout 2s;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            # Host as the client sent it, port included: with no client.allowed_origins,
            # Chorus compares a browser's Origin with Host ($host would drop the port).
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_buffering off;
            # A draining node answers the handshake 503: try the next node instead.
            proxy_next_upstream error timeout http_502 http_503;
        }}
        location / {{
            proxy_pass http://chorus;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""
