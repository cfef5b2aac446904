"""``chorus admin ...``: a node's admin API, ``/ready`` and ``/metrics`` from a shell.

What an operator (and ``docs/runbooks/``) runs during an incident: ``status``, ``nodes``,
``alerts``, ``connections``, ``metric``, and the actions ``drain``, ``disconnect`` and
``publish``. The node is ``--url`` (default ``$CHORUS_ADMIN``, e.g.
``http://10.0.0.11:8000``), the bearer ``--token`` (default ``$CHORUS_ADMIN_TOKEN``: the
node's ``admin.secret``); ``/metrics`` is read with ``$CHORUS_PROMETHEUS_TOKEN`` when set.
Standard library only (urllib): it runs wherever the ``chorus`` command is installed.

Every read can be a check: ``status`` fails while the node is not ready, ``nodes
--expect N``, ``alerts --none``/``--firing NAME``, ``metric NAME --above X``/``--below X``
fail while the condition does not hold; ``--wait S`` retries the check for up to S
seconds (twice a second) before failing. Exit status: 0 the check holds (or the action
was done), 1 it does not (or the node answered an error, or could not be reached),
2 usage (argparse's convention).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["add_admin_parser", "parse_metrics", "run_admin"]

_HELP = """\
Query or act on a running node: its admin API, /ready and /metrics. Every read can be a
check (exit 1 until it holds; --wait S retries it). The node: --url or $CHORUS_ADMIN;
the bearer: --token or $CHORUS_ADMIN_TOKEN (admin.secret); /metrics is read with
$CHORUS_PROMETHEUS_TOKEN when set. Runbooks using it: docs/runbooks/."""
API = "/admin/api"
POLL = 0.5  # seconds between tries of a --wait check


class AdminCallError(RuntimeError):
    """The node could not be reached or answered an error; the message says which."""


def _call(args: argparse.Namespace, path: str, body: Any = None, *,
          auth: str | None = None) -> tuple[int, bytes]:
    """One HTTP request to the node; returns (status, body). Non-2xx is not an error here."""
    import urllib.error  # late: ``chorus serve`` builds this parser too, and starts fast
    import urllib.request

    url = args.url.rstrip("/") + path
    headers = {"Content-Type": "application/json"}
    token = args.token if auth is None else auth
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers,
                                     method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        raise AdminCallError(f"{url}: {getattr(error, 'reason', error)}") from None


def _json(args: argparse.Namespace, path: str, body: Any = None) -> Any:
    status, raw = _call(args, path, body)
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        data = {"error": raw[:200].decode(errors="replace")}
    if status >= 300:
        raise AdminCallError(f"{path}: HTTP {status}: {data.get('error', data)}")
    return data


# -- formatting ---------------------------------------------------------------------------


def _number(value: Any) -> str:
    """An integer without ".0"; a per-kind dict (before the first sample) summed."""
    if isinstance(value, dict):
        value = sum(value.values())
    if not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0")  # full precision: process_start_time_seconds


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def _local(args: argparse.Namespace) -> dict[str, Any]:
    """This node's entry of ``GET nodes`` with its monitor sample merged in."""
    entry: dict[str, Any] = _json(args, f"{API}/nodes")["nodes"][0]
    return {**entry, **entry.get("sample", {})}  # the sample's figures are numbers


# -- checks -------------------------------------------------------------------------------

Check = Callable[[], tuple[bool, str]]


def _until(check: Check, wait: float) -> int:
    """Run ``check`` until it holds or ``wait`` seconds pass; print its last text."""
    deadline = time.monotonic() + wait
    while True:
        try:
            ok, text = check()
        except AdminCallError as error:
            ok, text = False, f"chorus admin: {error}"
        if ok or time.monotonic() >= deadline:
            print(text, file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
        time.sleep(POLL)  # another process's state: nothing to await


def _status(args: argparse.Namespace) -> Check:
    def check() -> tuple[bool, str]:
        status, raw = _call(args, "/ready", auth="")
        ready = json.loads(raw or b"{}")
        node = _local(args)
        if args.field:
            value = node.get(args.field, ready.get(args.field))
            if value is None:
                raise AdminCallError(f"no field {args.field!r}; known: {', '.join(sorted(node))}")
            return True, _number(value) if isinstance(value, float) else str(value)
        state = "ready" if status == 200 else "NOT READY"
        text = (f"{node['name']}  {state}  uptime {node.get('uptime', 0)}s  "
                f"clients {node.get('num_clients', 0)}  subscriptions {node.get('num_subs', 0)}  "
                f"draining {'yes' if node.get('draining') else 'no'}  "
                f"engine {'up' if node.get('engine_up', 1) else 'DOWN'}\n"
                f"  open files {_number(node.get('open_files', 0))} / "
                f"{_number(node.get('open_files_limit', 0))}  "
                f"rss {_bytes(node.get('rss_bytes', 0))}"
                f"  loop lag {node.get('loop_lag', 0) * 1000:.0f} ms  "
                f"outbox {_bytes(node.get('outbox_bytes', 0))}  "
                f"slow consumers {_number(node.get('slow_consumers', 0))}  "
                f"actor restarts {_number(node.get('actor_restarts', 0))}")
        if ready.get("problems"):
            text += "\n  problems: " + "; ".join(ready["problems"])
        return status == 200, text
    return check


def _nodes(args: argparse.Namespace) -> Check:
    def check() -> tuple[bool, str]:
        listed = _json(args, f"{API}/nodes")["nodes"]
        # A restarted node is announced under a new uid while its old announcement ages
        # out (broker.cluster.NODE_TTL): one line per name, the youngest process.
        by_name: dict[str, dict[str, Any]] = {}
        for entry in sorted(listed, key=lambda n: -int(n.get("uptime", 0))):
            by_name[str(entry["name"])] = entry
        nodes = list(by_name.values())
        total = sum(int(n.get("num_clients", 0)) for n in nodes)
        if args.total_clients:
            return total >= (args.min_clients or 0), str(total)
        lines = [f"{n['name']:<16} uptime {n.get('uptime', 0):>7}s  clients "
                 f"{n.get('num_clients', 0):>7}  subscriptions {n.get('num_subs', 0):>7}"
                 for n in sorted(nodes, key=lambda n: str(n["name"]))]
        lines.append(f"{len(nodes)} nodes, {total} clients")
        ok = args.expect is None or len(nodes) == args.expect
        ok = ok and (args.min_clients is None or total >= args.min_clients)
        return ok, "\n".join(lines)
    return check


def _alerts(args: argparse.Namespace) -> Check:
    def check() -> tuple[bool, str]:
        active = _json(args, f"{API}/alerts")["active"]
        names = [a["name"] for a in active]
        lines = [f"FIRING {a['name']} ({a['severity']}): {a['message']}" for a in active]
        text = "\n".join(lines) or "no alert firing"
        if args.firing:
            return args.firing in names, text
        if args.not_firing:
            return args.not_firing not in names, text
        return not (args.none and active), text
    return check


def _connections(args: argparse.Namespace) -> Check:
    def check() -> tuple[bool, str]:
        listed = _json(args, f"{API}/connections")
        conns = sorted(listed["connections"], key=lambda c: -int(c.get("outbox_bytes", 0)))
        conns = [c for c in conns if c.get("outbox_bytes", 0) > args.outbox_above]
        if args.ids:
            return True, "\n".join(c["client"] for c in conns[:args.limit])
        lines = [f"{c['client']}  user {c['user'] or '-'}  {c['transport']}  outbox "
                 f"{_bytes(c.get('outbox_bytes', 0))} (peak {_bytes(c.get('outbox_peak', 0))})  "
                 f"out {c.get('messages_out', 0)}  {c.get('last_error') or ''}".rstrip()
                 for c in conns[:args.limit]]
        lines.append(f"{listed['total']} connections on this node, {len(conns)} listed")
        return True, "\n".join(lines)
    return check


def parse_metrics(text: str, name: str, labels: dict[str, str]) -> float | None:
    """The sum of the samples of ``name`` whose labels include ``labels``, from the
    Prometheus text format; None when there is no such sample."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        series, _, label_text = head.partition("{")
        if series != name:
            continue
        parts = label_text.rstrip("}").split(",")
        pairs = dict(part.split("=", 1) for part in parts if "=" in part)
        if all(pairs.get(k) == json.dumps(v) for k, v in labels.items()):
            total, found = total + float(value), True
    return total if found else None


def _metric(args: argparse.Namespace) -> Check:
    labels = dict(pair.split("=", 1) for pair in args.label)

    urls = os.environ.get("CHORUS_NODES", "").split() if args.cluster else [args.url]
    if not urls:
        raise AdminCallError("--cluster reads every node of $CHORUS_NODES, which is empty")

    def read_one(url: str) -> float:
        token = os.environ.get("CHORUS_PROMETHEUS_TOKEN", "")
        status, raw = _call(argparse.Namespace(**{**vars(args), "url": url}), "/metrics",
                            auth=token)
        if status != 200:
            raise AdminCallError(f"{url}/metrics: HTTP {status} (set CHORUS_PROMETHEUS_TOKEN?)")
        value = parse_metrics(raw.decode(), args.name, labels)
        if value is None and labels:
            value = 0.0  # a labelled series appears at its first count (a counter at 0)
        if value is None:
            raise AdminCallError(f"no sample of {args.name} {labels or ''} in {url}/metrics")
        return value

    def read() -> float:
        return sum(read_one(url) for url in urls)

    def check() -> tuple[bool, str]:
        value = read()
        if args.rate:
            time.sleep(args.rate)  # a rate is measured over a time span, by definition
            value = (read() - value) / args.rate
        ok = (args.above is None or value > args.above) and \
             (args.below is None or value < args.below)
        return ok, _number(round(value, 3))
    return check


# -- actions ------------------------------------------------------------------------------


def _action(args: argparse.Namespace) -> Check:
    def check() -> tuple[bool, str]:
        if args.action == "drain":
            done = _json(args, f"{API}/drain", {})
            told = done["clients_told"]
            return True, f"{done['node']} draining: {told} clients told to reconnect"
        if args.action == "disconnect":
            done = _json(args, f"{API}/connections/{args.client}/disconnect",
                         {"reconnect": args.reconnect})
            return True, f"disconnected {done['client']} (code {done['code']})"
        data = json.loads(args.data)
        done = _json(args, f"{API}/publish", {"channel": args.channel, "data": data})
        return True, f"published to {args.channel}: offset {done['offset']} epoch {done['epoch']}"
    return check


_CHECKS: dict[str, Callable[[argparse.Namespace], Check]] = {
    "status": _status, "nodes": _nodes, "alerts": _alerts, "connections": _connections,
    "metric": _metric, "drain": _action, "disconnect": _action, "publish": _action,
}


def run_admin(args: argparse.Namespace) -> int:
    """The ``chorus admin`` handler; see the module docstring for the exit status."""
    if not args.url:
        print("chorus admin: no node: pass --url or set CHORUS_ADMIN", file=sys.stderr)
        return 2
    try:
        return _until(_CHECKS[args.action](args), getattr(args, "wait", 0.0) or 0.0)
    except (AdminCallError, ValueError) as error:
        print(f"chorus admin: {error}", file=sys.stderr)
        return 1


def add_admin_parser(sub: Any) -> None:
    """``chorus admin <action>`` (argparse subparsers of the ``chorus`` command)."""
    admin = sub.add_parser(
        "admin", help="query or act on a running node (admin API, /ready, /metrics)",
        description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    admin.add_argument("--url", default=os.environ.get("CHORUS_ADMIN"),
                       help="the node, e.g. http://10.0.0.11:8000 (default $CHORUS_ADMIN)")
    admin.add_argument("--token", default=os.environ.get("CHORUS_ADMIN_TOKEN", ""),
                       help="admin.secret (default $CHORUS_ADMIN_TOKEN)")
    admin.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    actions = admin.add_subparsers(dest="action", metavar="<action>", required=True)

    def action(name: str, text: str, wait: bool = True) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=text, description=text)
        if wait:
            parser.add_argument("--wait", type=float, default=0.0, metavar="S",
                                help="retry the check for up to S seconds before failing")
        return parser

    status = action("status", "readiness and health of this node; fails while not ready")
    status.add_argument("--field", help="print one field (name, uptime, num_clients, "
                                        "open_files, rss_bytes, draining, ...)")
    nodes = action("nodes", "every node of the cluster: uptime, clients")
    nodes.add_argument("--expect", type=int, metavar="N", help="fail unless N nodes answer")
    nodes.add_argument("--min-clients", type=int, metavar="N",
                       help="fail unless the nodes hold N clients or more in total")
    nodes.add_argument("--total-clients", action="store_true",
                       help="print only the clients of every node, summed")
    alerts = action("alerts", "firing alerts of this node")
    alerts.add_argument("--none", action="store_true", help="fail while any alert fires")
    alerts.add_argument("--firing", metavar="NAME", help="fail unless alert NAME fires")
    alerts.add_argument("--not-firing", metavar="NAME", help="fail while alert NAME fires")
    conns = action("connections", "this node's connections, largest outbox first", wait=False)
    conns.add_argument("--limit", type=int, default=20)
    conns.add_argument("--outbox-above", type=int, default=-1, metavar="BYTES",
                       help="only connections with more than BYTES queued")
    conns.add_argument("--ids", action="store_true", help="print only client ids")
    metric = action("metric", "one metric from /metrics (matching samples summed)")
    metric.add_argument("name", help="e.g. chorus_connections, process_open_fds")
    metric.add_argument("--label", action="append", default=[], metavar="K=V")
    metric.add_argument("--above", type=float, help="fail unless the value is above")
    metric.add_argument("--below", type=float, help="fail unless the value is below")
    metric.add_argument("--cluster", action="store_true",
                        help="sum over every node of $CHORUS_NODES (space-separated URLs)")
    metric.add_argument("--rate", type=float, metavar="S",
                        help="print the per-second increase over S seconds instead")
    action("drain", "tell every client to reconnect elsewhere and turn unready "
                    "(before a restart)", wait=False)
    disconnect = action("disconnect", "disconnect one client", wait=False)
    disconnect.add_argument("client")
    disconnect.add_argument("--reconnect", action="store_true",
                            help="let it reconnect (3000-range code), else it stays away")
    publish = action("publish", "publish through this node (fails while it cannot)")
    publish.add_argument("channel")
    publish.add_argument("data", nargs="?", default='{"probe": true}', help="JSON")
