"""Write-behind needs a single writer: an explicit ``cache_policy: write_behind`` with
possible other writers (the Redis engine, ``--workers N``) is refused at start unless
``cache.single_writer`` declares this node the only one; the memory engine is a single
writer by construction. (The adaptive policy's side: test_cache_adaptive.py.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.cli import main
from broker.config import CacheConfig, ConfigError, config_from_mapping
from broker.config.checks import check_workers

REDIS = {"type": "redis", "redis": {"address": ["redis://127.0.0.1:1"]}}


def mapping(engine: dict[str, Any] | None = None, cache: dict[str, Any] | None = None,
            policy: str = "write_behind", without_namespace: bool = False) -> dict[str, Any]:
    options = {"history_size": 10, "history_ttl": "60s", "cache_policy": policy}
    channel: dict[str, Any] = {"namespaces": [{"name": "chat", "history_size": 5,
                                               "history_ttl": "60s"},
                                              {"name": "ticks", **options}]}
    if without_namespace:
        channel = {"without_namespace": options}
    return {"client": {"token": {"hmac_secret_key": "s" * 32}}, "http_api": {"key": "k"},
            "engine": engine or {"type": "memory"}, "cache": cache or {},
            "channel": channel}


def test_write_behind_with_redis_needs_the_single_writer_declaration() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(mapping(REDIS))
    message = str(info.value)
    assert message.startswith('channel.namespaces[1].cache_policy: write_behind '
                              '(namespace "ticks") needs a single writer per channel')
    assert "engine.type is redis" in message and "cache.single_writer: true" in message
    with pytest.raises(ConfigError, match=r"^channel\.without_namespace\.cache_policy: "
                                          r"write_behind \(channels without namespace\)"):
        config_from_mapping(mapping(REDIS, without_namespace=True))


def test_write_behind_is_accepted_with_one_writer() -> None:
    memory = config_from_mapping(mapping())  # one process by construction
    assert memory.cache.other_writers("memory") == ""
    declared = config_from_mapping(mapping(REDIS, {"single_writer": True}))
    assert declared.cache.single_writer and declared.cache.other_writers("redis") == ""
    for policy in ("write_through", "read_through", "off"):  # engine first: any writers
        config_from_mapping(mapping(REDIS, policy=policy))


def test_single_writer_contradicts_several_workers() -> None:
    config = config_from_mapping(mapping(REDIS, {"single_writer": True}))
    check_workers(config, 1)
    with pytest.raises(ConfigError, match=r"^cache\.single_writer: true contradicts "
                                          r"--workers 3"):
        check_workers(config, 3)
    check_workers(config_from_mapping(mapping(REDIS, policy="write_through")), 3)
    assert CacheConfig().single_writer is False  # never assumed


def test_serve_refuses_before_starting_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHORUS_")]:
        monkeypatch.delenv(name)  # the CLI reads CHORUS_* too
    path = tmp_path / "chorus.yaml"
    path.write_text(yaml.safe_dump(mapping(REDIS)))
    assert main(["serve", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus: config error: channel.namespaces[1].cache_policy: ")
    path.write_text(yaml.safe_dump(mapping(REDIS, {"single_writer": True})))
    assert main(["serve", "-c", str(path), "--workers", "2"]) == 2
    assert capsys.readouterr().err.startswith(
        "chorus: config error: cache.single_writer: true contradicts --workers 2")
