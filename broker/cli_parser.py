"""The ``chorus`` command line's argument parser: every subcommand and its flags.

Standard library only (the journeys and admin subcommands add their own flags from their
modules, which are as light): :mod:`broker.cli` builds it before anything else is
imported, so that ``chorus serve`` stays a fast start. The commands themselves live in
:mod:`broker.cli`, which re-exports :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

PROG = "chorus"
DEFAULT_TOKEN_TTL = 7 * 24 * 3600  # Centrifugo's gentoken default: one week

_DESCRIPTION = """\
Chorus: an actor-based realtime broker speaking Centrifugo's client protocol v2, so the
official Centrifugo SDKs (centrifuge-js, centrifuge-python, ...) connect unchanged."""

_EPILOG = """\
examples:
  chorus genconfig -o config.yaml          write a starter config with fresh secrets
  chorus checkconfig config.yaml           validate it and print a summary
  chorus serve --config config.yaml        run the broker
  chorus serve -c config.yaml --port 9000 --log-level debug
  chorus gentoken -c config.yaml --user 42 --ttl 3600
  chorus gentoken --secret s3cret --user 42 --channel '$private:room'
  chorus backup -c config.yaml -o chorus-backup.jsonl.gz
  chorus restore -c config.yaml chorus-backup.jsonl.gz
  chorus journeys -c config.yaml --user 42 --jsonl
  chorus admin --url http://10.0.0.11:8000 status     (admin.secret in $CHORUS_ADMIN_TOKEN)

configuration:
  File keys follow Centrifugo v6 (JSON, YAML or TOML). Any key can be set from the
  environment as CHORUS_<PATH>, e.g. CHORUS_HTTP_SERVER_PORT=9000 or
  CHORUS_CHANNEL_NAMESPACES_CHAT_PRESENCE=true; CHORUS_CONFIG names the config file.
  Priority: flags > environment > file > defaults."""

_LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "none": logging.CRITICAL + 10,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (exposed so docs and tests can render the help).

    ``command="serve"``: the parser with only the ``serve`` subcommand, which parses a
    command line that starts with ``serve`` exactly as the full parser does (a
    subcommand's flags and help are its own). ``chorus serve`` uses it: every argparse
    parser looks up its messages' translations (``gettext`` searches the locale
    directories on each call, and caches nothing it did not find), so the ~15 other
    subparsers cost a start about 5 ms of CPU for nothing.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    default_config = os.environ.get("CHORUS_CONFIG")

    serve = sub.add_parser("serve", help="run the broker", description="Run the broker.")
    serve.add_argument(
        "-c",
        "--config",
        default=default_config,
        metavar="FILE",
        help="config file (.json/.yaml/.toml); default: $CHORUS_CONFIG",
    )
    serve.add_argument("--host", metavar="ADDR", help="interface to bind (http_server.address)")
    serve.add_argument("-p", "--port", type=int, help="port to listen on (http_server.port)")
    serve.add_argument("--log-level", choices=list(_LOG_LEVELS), help="log level (log.level)")
    serve.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="run N worker processes on the same port (SO_REUSEPORT), restarted by a "
             "parent if they crash; needs engine.type redis (default: 1)")
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by --workers
    if command == "serve":
        return parser

    gentoken = sub.add_parser(
        "gentoken",
        help="print an HS256 token for testing",
        description="Print an HS256 connection token, or a subscription token with --channel.",
    )
    gentoken.add_argument("-u", "--user", required=True, help='user id ("" = anonymous)')
    gentoken.add_argument("--channel", help="make a subscription token for this channel")
    gentoken.add_argument(
        "-t",
        "--ttl",
        type=float,
        default=DEFAULT_TOKEN_TTL,
        metavar="SECONDS",
        help="lifetime in seconds, 0 = never expires (default: one week)",
    )
    gentoken.add_argument(
        "-c",
        "--config",
        default=default_config,
        metavar="FILE",
        help="take the secret from this config's client.token.hmac_secret_key",
    )
    gentoken.add_argument("-s", "--secret", help="HMAC secret (instead of --config)")

    check = sub.add_parser(
        "checkconfig",
        help="validate a config file",
        description="Validate a config file (environment applied too).",
    )
    check.add_argument("file", help="config file to check")

    genconfig = sub.add_parser(
        "genconfig",
        help="write a commented starter config",
        description="Write a commented YAML starter config with random secrets (stdout unless -o).",
    )
    genconfig.add_argument("-o", "--output", metavar="FILE", help="file to write")
    genconfig.add_argument("-f", "--force", action="store_true", help="overwrite FILE")

    sub.add_parser("version", help="print the version", description="Print the version.")
    _add_cluster_parser(sub)
    _add_backup_parsers(sub, default_config)
    from broker.journal.cli import add_parser as add_journeys

    add_journeys(sub, default_config)
    from broker.admin_cli import add_admin_parser  # standard library only: cheap

    add_admin_parser(sub)
    return parser


def _add_backup_parsers(sub: Any, default_config: str | None) -> None:
    backup = sub.add_parser(
        "backup", help="write what Chorus keeps in Redis to a file",
        description="Write history streams, stream positions (epoch, top offset), "
                    "notification inboxes and the saved hot-channel list under "
                    "engine.redis.prefix to a JSON Lines file (presence excluded). "
                    "Each channel is read atomically; see README 'Backup and restore'.")
    backup.add_argument("-c", "--config", default=default_config, metavar="FILE",
                        help="the nodes' config (engine.redis); default: $CHORUS_CONFIG")
    backup.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="file to write (.gz: gzip; -: stdout)")
    restore = sub.add_parser(
        "restore", help="restore a backup into Redis",
        description="Restore a `chorus backup` file into the Redis of the config, best "
                    "before nodes serve clients. Each restored channel gets a new epoch; "
                    "clients positioned within the backup recover (recovered: true), "
                    "clients past it are told recovered: false. Channels that already "
                    "hold publications and existing inboxes are left alone.")
    restore.add_argument("file", help="backup file (.gz: gzip; -: stdin)")
    restore.add_argument("-c", "--config", default=default_config, metavar="FILE",
                         help="the nodes' config (engine.redis); default: $CHORUS_CONFIG")
    restore.add_argument("--dry-run", action="store_true",
                         help="check the file and print what it holds; write nothing")


CLUSTER_BASE_PORT = 17400  # broker.devcluster.conf.DEFAULT_BASE_PORT (a test checks)


def _add_cluster_parser(sub: Any) -> None:
    """``cluster up|down|status``; its code (broker/devcluster) loads only when run."""
    cluster = sub.add_parser("cluster", help="run a local multi-node cluster (loopback)",
                             description="Run Chorus on loopback: a Redis primary, its replica and "
                             "3 Sentinels, N nodes and nginx in front (see deploy/README.md).")
    cluster.add_argument("action", choices=("up", "down", "status", "restart", "env"),
                         help="env: print `export` lines for docs/runbooks/ (eval them)")
    cluster.add_argument("name", nargs="?", help="restart: the process to stop (if running) "
                         "and start again, as `status` names it (node-2, redis-primary, ...)")
    cluster.add_argument("-n", "--nodes", type=int, default=3, help="Chorus nodes (default 3)")
    cluster.add_argument("--base-port", type=int, default=CLUSTER_BASE_PORT, metavar="PORT",
                         help=f"nginx on PORT, nodes PORT+1.., Redis PORT+20/21, Sentinels "
                              f"PORT+30..; 0 = any free ports (default {CLUSTER_BASE_PORT})")
    cluster.add_argument("--state-dir", default=".chorus-cluster", metavar="DIR",
                         help="configs, logs and pids (default .chorus-cluster)")
    cluster.add_argument("--insecure", action="store_true",
                         help="client.insecure: connect and subscribe without tokens")
