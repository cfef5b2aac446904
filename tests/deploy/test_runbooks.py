"""Every command block of every runbook (docs/runbooks/), run against a local cluster
with the runbook's incident injected: Confirm must see it, Check must see the recovery.

One cluster (``chorus cluster up``, 3 nodes, Redis + replica + 3 Sentinels, nginx) serves
every page, in the order of ``INCIDENTS``; each page leaves it healthy for the next (its
Check blocks prove it). A block fails the test with its page, line, text and output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broker.devcluster.launcher import leftover_processes
from tests.deploy.runbook_incidents import INCIDENTS, Ctx
from tests.deploy.runbooks import REPO, RUNBOOKS, block_env, blocks, cluster_env, run_block

RUN_SECTIONS = ("confirm", "fix", "check")  # each page must have run blocks in these


def _cluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker", "cluster", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=90, check=False)


def test_every_runbook_is_indexed_tested_and_has_checks() -> None:
    """A page without an incident here, without Confirm/Fix/Check blocks, or missing
    from the index would not be proved by the cluster test."""
    pages = sorted(p.name for p in RUNBOOKS.glob("*.md") if p.name != "README.md")
    assert pages == sorted(INCIDENTS), "every runbook needs an incident in runbook_incidents.py"
    index = (RUNBOOKS / "README.md").read_text()
    for page in pages:
        assert f"]({page})" in index, f"{page} is not linked from docs/runbooks/README.md"
        sections = {b.section for b in blocks(RUNBOOKS / page)}
        missing = [s for s in RUN_SECTIONS if s not in sections]
        assert not missing, f"{page}: no sh block under {missing}"
        assert sections <= {"before", "confirm", "fix", "check"}, f"{page}: {sections}"
    for readme in (REPO / "README.md", REPO / "deploy" / "README.md"):
        assert "docs/runbooks" in readme.read_text(), f"{readme} does not link the runbooks"


SUGGESTED_RULES = ("engine_down: engine_up < 1 for 30s severity critical",
                   "outbox_bytes > 64MiB for 1m",
                   "high_rss: rss_bytes >= 2GiB for 1m severity critical",
                   "loop_lag > 100ms for 30s",
                   "open_files will exceed open_files_limit within 10m")


def test_the_alert_rules_the_runbooks_suggest_parse() -> None:
    """An operator pastes these into ``monitor.alerts``: they must be valid rules."""
    from broker.monitor.alerts import parse_rules

    text = "\n".join(p.read_text() for p in RUNBOOKS.glob("*.md"))
    for rule in SUGGESTED_RULES:
        assert rule in text.replace("\n  ", " "), rule
    parse_rules(SUGGESTED_RULES)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    for binary in ("redis-server", "redis-cli", "nginx", "prlimit", "curl"):
        if shutil.which(binary) is None and shutil.which(binary, path="/usr/sbin") is None:
            pytest.skip(f"{binary} is not installed")
    state_dir = tmp_path_factory.mktemp("runbook-cluster")
    up = _cluster("up", "--state-dir", str(state_dir), "--base-port", "0", "--insecure")
    assert up.returncode == 0, up.stderr[-3000:]
    state: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    state["dir"] = state_dir
    try:
        yield state
    finally:
        final = json.loads((state_dir / "state.json").read_text())  # pids after restarts
        down = _cluster("down", "--state-dir", str(state_dir))
        assert down.returncode == 0, down.stderr[-3000:]
        assert leftover_processes(final) == []


@pytest.fixture
async def ctx(cluster: dict[str, Any], tmp_path: Path) -> AsyncIterator[Ctx]:
    connector = aiohttp.TCPConnector(limit=0)  # hundreds of WebSockets at once
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15),
                                     connector=connector) as session:
        yield Ctx(cluster, cluster["dir"], tmp_path, session)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(240)
@pytest.mark.parametrize("page", list(INCIDENTS))
async def test_runbook(page: str, ctx: Ctx) -> None:
    incident = INCIDENTS[page]
    env = block_env({**cluster_env(ctx.state_dir), **incident.page_env(ctx)})
    page_blocks = blocks(RUNBOOKS / page)
    started = time.monotonic()
    try:
        await incident.setup(ctx)
        for block in (b for b in page_blocks if b.section == "before"):
            await run_block(block, env, ctx.tmp)
        await incident.inject(ctx)
        for block in (b for b in page_blocks if b.section != "before"):
            await run_block(block, env, ctx.tmp)
    finally:
        await incident.cleanup(ctx)
    print(f"{page}: {len(page_blocks)} blocks in {time.monotonic() - started:.1f} s")
