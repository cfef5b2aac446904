"""``chorus journeys``: read connection journeys from a running node's server API.

Asks ``POST <url>/api/journeys`` with the config's ``http_api.key`` and prints the events
as JSON Lines (``--jsonl``, one event per line, oldest first: for ``jq``, pandas, a data
warehouse) or the whole answer (aggregates, funnel, sessions) as JSON.

Error handling: a node that cannot be reached or answers an error makes the command
print the reason and exit 1; a config error exits 2 (the CLI's convention).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parser(sub: Any, default_config: str | None) -> None:
    journeys = sub.add_parser(
        "journeys", help="read connection journeys from a running node",
        description="Read connection journeys (connect, subscribe and recovery, refresh, "
                    "slow consumer, limits, disconnect, reconnect) from a running node's "
                    "server API: one user's across nodes, or the latest of every user.")
    journeys.add_argument("-c", "--config", default=default_config, metavar="FILE",
                          help="the node's config (http_api.key, http_server); "
                               "default: $CHORUS_CONFIG")
    journeys.add_argument("--url", metavar="URL",
                          help="the node (default: http://<http_server.address>:<port>)")
    journeys.add_argument("-u", "--user", default="", help="one user's journey")
    journeys.add_argument("-n", "--limit", type=int, default=200, help="events (default 200)")
    journeys.add_argument("--jsonl", action="store_true",
                          help="the events as JSON Lines (else the whole answer as JSON)")


def run(args: argparse.Namespace) -> int:
    from broker.config import ConfigError, load_config  # only when run (a fast CLI start)

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"chorus: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    server = config.http_server
    url = args.url or f"http://{server.address or '127.0.0.1'}:{server.port}"
    body = json.dumps({"user": args.user, "limit": args.limit}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/api/journeys", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-API-Key": config.http_api.key})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"chorus: journeys: {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if "error" in answer:
        print(f"chorus: journeys: {answer['error'].get('message')}", file=sys.stderr)
        return EXIT_FAILED
    result = answer["result"]
    if args.jsonl:
        for event in result["events"]:
            sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    else:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0
