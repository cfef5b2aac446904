"""The dataclass code cache (broker/codecache.py): same classes, fewer compiles."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from broker import codecache
from broker.codecache import CodeCache, cached_exec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def writes_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    """As an installed interpreter does (the test run may set PYTHONDONTWRITEBYTECODE)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


SOURCE = ("def __create_fn__(_type_x):\n def __init__(self, x: _type_x):\n  self.x = x\n"
          " return __init__")


def make_class(module: str) -> type:
    """A frozen slotted dataclass defined as if in ``module`` (its generated methods are
    compiled through the dataclasses module's ``exec``)."""
    namespace: dict[str, Any] = {"__name__": module}
    sys.modules[module] = type(sys)(module)
    sys.modules[module].__dict__.update(namespace)
    try:
        cls = type("Point", (), {"__module__": module,
                                 "__annotations__": {"x": int, "y": "list[str]"},
                                 "y": dataclasses.field(default_factory=list)})
        return dataclasses.dataclass(frozen=True, slots=True)(cls)
    finally:
        del sys.modules[module]


def test_import_broker_installs_the_hook() -> None:
    assert dataclasses.exec is cached_exec  # type: ignore[attr-defined]


def test_a_cached_class_is_the_class_dataclass_makes() -> None:
    """Chorus's module (through the cache) and a foreign one (plain exec) get the same
    methods: same bytecode, same annotations (not strings), same behaviour."""
    hits, compiled = codecache.stats()
    ours = make_class("broker.test_codecache_probe")
    after = codecache.stats()
    assert after[0] + after[1] > hits + compiled  # it went through the cache
    theirs = make_class("someone_elses_module")
    assert codecache.stats() == after  # a foreign module's class did not
    for name in ("__init__", "__repr__", "__eq__", "__setattr__", "__hash__"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert a.__code__.co_code == b.__code__.co_code, name
        assert a.__code__.co_consts == b.__code__.co_consts, name
    assert inspect.get_annotations(ours.__init__) == inspect.get_annotations(theirs.__init__)
    assert inspect.get_annotations(ours.__init__)["x"] is int
    p = ours(1)
    assert repr(p) == "Point(x=1, y=[])" and p == ours(1) and p != ours(2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 3  # type: ignore[misc]


def test_a_saved_cache_answers_the_next_load(tmp_path: Path) -> None:
    path = str(tmp_path / "sub" / "cache.bin")
    first = CodeCache(path)
    code = first.code_for(SOURCE)
    assert (first.hits, first.compiled) == (0, 1)
    assert first.save() and not first.save()  # nothing new the second time
    second = CodeCache(path)
    again = second.code_for(SOURCE)
    assert (second.hits, second.compiled) == (1, 0)
    assert again.co_consts[0].co_code == code.co_consts[0].co_code
    ns: dict[str, Any] = {}
    exec(again, {}, ns)
    init = ns["__create_fn__"](_type_x=int)
    assert init.__annotations__ == {"x": int}  # no `annotations` future flag inherited


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x00" * 100])
def test_a_corrupt_or_foreign_file_counts_as_empty(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "cache.bin"
    path.write_bytes(content)
    cache = CodeCache(str(path))
    cache.code_for(SOURCE)
    assert (cache.hits, cache.compiled) == (0, 1)


def test_another_interpreters_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "cache.bin"
    first = CodeCache(str(path))
    first.code_for(SOURCE)
    first.save()
    data = path.read_bytes()
    path.write_bytes(b"\xff\xff" + data[2:])  # another bytecode magic number
    second = CodeCache(str(path))
    second.code_for(SOURCE)
    assert second.compiled == 1


def test_nothing_is_written_without_bytecode_caching(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cache = CodeCache(str(tmp_path / "cache.bin"))
    cache.code_for(SOURCE)
    assert not cache.save()
    assert not (tmp_path / "cache.bin").exists()


def test_an_unwritable_place_is_ignored(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = CodeCache(str(blocker / "cache.bin"))
    cache.code_for(SOURCE)
    assert not cache.save()


def test_a_second_start_compiles_nothing(tmp_path: Path) -> None:
    """End to end, in fresh interpreters with their own bytecode cache
    (``-X pycache_prefix``): the first import of the server compiles the generated
    methods and saves them; the second compiles none."""
    script = ("import json, broker.app, broker.cli, broker.codecache as c; "
              "s = c.stats(); c.save(); print(json.dumps(s))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)

    def run() -> tuple[int, int]:
        done = subprocess.run([sys.executable, "-X", f"pycache_prefix={tmp_path}", "-c", script],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        hits, compiled = json.loads(done.stdout.strip().splitlines()[-1])
        return hits, compiled

    hits, compiled = run()
    assert compiled > 100  # Chorus's dataclasses, compiled once
    assert list(tmp_path.rglob("dataclass-code.*.bin"))
    hits2, compiled2 = run()
    assert (hits2, compiled2) == (hits + compiled, 0)
