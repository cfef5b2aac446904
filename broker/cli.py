"""The ``chorus`` command line: serve, gentoken, checkconfig, genconfig, version, cluster,
backup, restore, journeys, admin (``broker.admin_cli``).

``main(argv)`` returns the exit status instead of exiting, so tests call it directly.
Exit status: 0 success, 1 failure (backup/restore, cluster), 2 usage or configuration
error (argparse's convention). Subcommands import their machinery when run, so ``chorus
serve`` loads only the server (a fast start), and it does so with the cyclic garbage
collector paused until the server listens (see ``main``).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.cli_parser import _LOG_LEVELS, PROG, build_parser
from broker.cli_parser import CLUSTER_BASE_PORT as CLUSTER_BASE_PORT  # re-exported

# broker.config is imported by the commands that use it, so that `chorus serve` can pause
# the garbage collector before the bulk of its imports (see main).
if TYPE_CHECKING:
    from broker.config import Config

EXIT_OK = 0
EXIT_USAGE = 2


def version() -> str:
    """The installed package version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("chorus-broker")
    except PackageNotFoundError:
        return "0.1.0+source"


def _cluster(args: argparse.Namespace) -> int:
    from broker.devcluster.launcher import run_cluster

    return run_cluster(args)


def _admin(args: argparse.Namespace) -> int:
    from broker.admin_cli import run_admin

    return run_admin(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``chorus`` command line; return the exit status.

    The cyclic garbage collector is paused from here until ``serve``'s server listens
    (other commands resume it once their arguments are parsed): a start allocates
    ~45,000 long-lived objects (modules, classes, the config, the actor tree) and next to
    no cyclic garbage, yet every collection would scan them all, about 8 % of the CPU of
    a start. When the collector resumes, what the start built is frozen (``gc.freeze``:
    never scanned again, so cycles the start left stay; they are few and one-off), and
    the youngest generation collects every ``_GC_GEN0`` allocations instead of 700: a
    handshake allocates hundreds of short-lived containers freed by reference counting,
    and at 700 the collections (each older one scanning every live connection's objects)
    took over half the server CPU of a connect at 10,000 connections.
    """
    resume = _pause_gc()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        parser = build_parser("serve" if argv[:1] == ["serve"] else None)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, or a usage error argparse already printed
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        args.argv = argv
        if args.command == "serve":
            return _serve(args, lambda: resume(serving=True))
        resume()
        handlers = {
            "gentoken": _gentoken,
            "checkconfig": _checkconfig,
            "genconfig": _genconfig,
            "version": _version,
            "cluster": _cluster,
            "backup": _backup,
            "restore": _restore,
            "journeys": _journeys,
            "admin": _admin,
        }
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return handlers[args.command](args)
    finally:
        resume()


_GC_GEN0 = 10_000  # gen0 threshold once serving (CPython's default: 700)


def _pause_gc() -> Callable[..., None]:
    """Disable the cyclic GC if it runs; the callable re-enables it (idempotent), with
    ``serving=True`` after freezing what exists and setting the serving threshold."""
    if not gc.isenabled():
        return lambda serving=False: None
    gc.disable()
    return _resume_gc


def _resume_gc(serving: bool = False) -> None:
    if gc.isenabled():
        return
    if not serving:  # another command: the collector as it was
        gc.enable()
        return
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(_GC_GEN0, gen1, gen2)
    gc.enable()


def _journeys(args: argparse.Namespace) -> int:
    from broker.journal.cli import run

    return run(args)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_USAGE


def _serve(args: argparse.Namespace, on_serving: Callable[[], None]) -> int:
    """Load the config and run the server (or the ``--workers`` parent); ``on_serving``
    resumes the garbage collector once the server listens (see ``main``)."""
    from broker.config import ConfigError, load_config
    from broker.config.checks import check_workers

    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides.setdefault("http_server", {})["address"] = args.host
    if args.port is not None:
        overrides.setdefault("http_server", {})["port"] = args.port
    if args.log_level is not None:
        overrides["log"] = {"level": args.log_level}
    try:
        config = load_config(args.config, overrides=overrides)
        check_workers(config, args.workers)  # the one check that needs --workers
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    setup_logging(config.log.level)
    if args.workers < 1:
        return _fail("--workers must be at least 1")
    if args.workers > 1:
        on_serving()  # the parent only supervises: nothing to speed up
        if config.engine.type != "redis":
            return _fail("config error: --workers > 1 needs engine.type redis "
                         "(the memory engine cannot join processes)")
        from broker.workers import WorkerPool, worker_command

        return WorkerPool(worker_command(args.argv), args.workers,
                          stop_timeout=config.chorus.shutdown_timeout + 5).run()
    from broker import clientssl

    with clientssl.deferred_verify_paths():  # aiohttp's client CAs load once serving
        from broker.app import run_server  # late: the server stack is heavy

    def serving() -> None:
        on_serving()
        clientssl.load_in_background()

    return run_server(config, reuse_port=args.worker_index is not None, on_serving=serving)


def setup_logging(level: str) -> None:
    """Configure root logging for ``log.level`` (trace/debug/info/warn/error/fatal/none)."""
    logging.basicConfig(
        level=_LOG_LEVELS[level],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def _gentoken(args: argparse.Namespace) -> int:
    from broker.auth import make_token
    from broker.config import ConfigError, load_config

    secret = args.secret
    if not secret:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            return _fail(f"config error: {exc}")
        token_cfg = config.client.token
        if args.channel is not None and config.client.subscription_token.enabled:
            token_cfg = config.client.subscription_token
        secret = token_cfg.hmac_secret_key
        if not secret:
            return _fail(
                "no HMAC secret: pass --secret, or --config with client.token.hmac_secret_key"
            )
    ttl = args.ttl if args.ttl and args.ttl > 0 else None
    print(make_token(secret, args.user, channel=args.channel, ttl=ttl))
    return EXIT_OK


def _checkconfig(args: argparse.Namespace) -> int:
    from broker.config import ConfigError, load_config
    from broker.config.checks import config_warnings

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    for warning in config_warnings(config):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    print(f"config OK: {summary(config)}")
    return EXIT_OK


def summary(config: Config) -> str:
    """A one-line description of what a config will run."""
    host = config.http_server.address or "*"
    scheme = "https" if config.http_server.tls.enabled else "http"
    token = config.client.token
    keys = [
        name
        for name, value in (
            ("HMAC", token.hmac_secret_key),
            ("RSA", token.rsa_public_key),
            ("ECDSA", token.ecdsa_public_key),
            ("JWKS", token.jwks_file),
        )
        if value
    ]
    auth = "insecure" if config.client.insecure else "+".join(keys) or "anonymous only"
    names = [ns.name for ns in config.channel.namespaces]
    namespaces = f"{len(names)} namespace(s)" + (f" ({', '.join(names)})" if names else "")
    return (
        f"{scheme}://{host}:{config.http_server.port}, engine {config.engine.type}, "
        f"token {auth}, {namespaces}, {config.chorus.shard_count} shards"
    )


def _genconfig(args: argparse.Namespace) -> int:
    from broker.config import dump_starter_config

    text = dump_starter_config()
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    path = Path(args.output)
    if path.exists() and not args.force:
        return _fail(f"{path} exists; use --force to overwrite")
    try:
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)  # it holds secrets
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror or exc}")
    print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def _version(args: argparse.Namespace) -> int:
    print(f"{PROG} {version()}")
    return EXIT_OK


def _redis_config(path: str | None) -> Config | int:
    """The config for backup/restore, or the exit status of a refusal."""
    from broker.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    if config.engine.type != "redis":
        return _fail("config error: engine.type is not redis: the memory engine keeps "
                     "nothing outside the node to back up or restore")
    return config


def _backup(args: argparse.Namespace) -> int:
    from broker.backup import BackupError, backup_to

    config = _redis_config(args.config)
    if isinstance(config, int):
        return config
    try:
        summary = backup_to(config, args.output)
    except BackupError as exc:
        print(f"{PROG}: backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"{PROG}: backup: {summary.describe()} -> {args.output}", file=sys.stderr)
    return EXIT_OK


def _restore(args: argparse.Namespace) -> int:
    from broker.backup import BackupError, restore_from

    config = _redis_config(args.config)
    if isinstance(config, int):
        return config
    try:
        summary, notes = restore_from(config, args.file, dry_run=args.dry_run)
    except BackupError as exc:
        print(f"{PROG}: restore failed: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    what = "restore (dry run, nothing written)" if args.dry_run else "restore"
    print(f"{PROG}: {what}: {summary.describe()}", file=sys.stderr)
    return EXIT_OK
