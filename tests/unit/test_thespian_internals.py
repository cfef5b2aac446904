"""The thespian internals that ``actors/`` relies on, checked by name and behaviour.

``pyproject.toml`` pins thespian below 4.1 because the runtime reaches past its public
API for speed (see ``actors/loop.py`` and ``actors/cell.py``). If a new thespian moves
any of these, this file fails first and says which, instead of the runtime failing in
some stranger way under load.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

from thespian.actors import Actor, ActorExitRequest, ActorSystem, ActorSystemMessage


def test_version_is_inside_the_pinned_range() -> None:
    major, minor, *_ = (int(part) for part in version("thespian").split(".")[:2])
    assert (major, minor) == (4, 0), "actors/ was written against thespian 4.0.x"


def test_simple_system_base_exposes_what_the_runtime_patches() -> None:
    system = ActorSystem("simpleSystemBase", transientUnique=True, logDefs=False)
    try:
        base = system._systemBase
        # Runtime.__init__: skip the per-delivery wakeup scan when no wakeups exist.
        assert isinstance(base._wakeUps, list | dict)
        assert callable(base._realizeWakeups)
        # Runtime: the bound tell it calls directly.
        assert callable(base.tell)
        # Cell.start_child_cell and Runtime's pruning: the registry maps address strings
        # to refs with ``.instance``; ended actors are set to None, never deleted.
        registry = base.actorRegistry
        assert isinstance(registry, dict)
        external = registry[system.systemAddress.actorAddressString]
        assert hasattr(external, "instance")

        class Probe(Actor):
            def receiveMessage(self, message: object, sender: object) -> None:
                pass

        address = system.createActor(Probe)
        entry = registry.get(address.actorAddressString)
        assert entry is not None and isinstance(entry.instance, Probe)
        system.tell(address, ActorExitRequest())
        assert registry.get(address.actorAddressString) is None
    finally:
        system.shutdown()


def test_actor_construction_goes_through_with_possible_init_args() -> None:
    # actors.cell replaces simpleSystemBase's ``withPossibleInitArgs`` (thespian's asks
    # for a signature it then misreads, on every creation); if the name moved, the
    # replacement is dead weight and creations are slow again.
    import thespian.system.simpleSystemBase as simple
    from thespian.system.utilis import withPossibleInitArgs

    import actors.cell

    assert "withPossibleInitArgs(" in inspect.getsource(simple.ActorSystemBase._newRefAndActor)
    assert simple.withPossibleInitArgs is actors.cell._InitArgs
    assert issubclass(actors.cell._InitArgs, withPossibleInitArgs)

    class Takes:
        def __init__(self, capabilities: object, other: object = None) -> None:
            self.capabilities, self.other = capabilities, other

    made = actors.cell._InitArgs(capabilities={"x": 1}, requirements=None).create(Takes)
    assert made.capabilities == {"x": 1} and made.other is None
    # Cell.receiveMessage tells thespian's own messages apart by this base class.
    assert issubclass(ActorExitRequest, ActorSystemMessage)


def test_the_runtime_delivers_directly_only_with_the_queue_it_expects() -> None:
    # Runtime._send hands a message to its cell when thespian's queue is empty; that
    # needs the queue's name, and the drain it runs afterwards.
    system = ActorSystem("simpleSystemBase", transientUnique=True, logDefs=False)
    try:
        base = system._systemBase
        assert isinstance(base._pendingSends, list) and not base._pendingSends
        assert callable(base._runSends)
        # The per-instance ``_receive`` thespian calls (Cell.start_child_cell replaces it).
        assert "_receive" in inspect.getsource(simple_base_call(base))
    finally:
        system.shutdown()


def simple_base_call(base: object) -> object:
    return type(base)._callActorWithMessage  # type: ignore[attr-defined]


def test_new_cell_registers_as_create_actor_does() -> None:
    # actors.cell.new_cell replays simpleSystemBase.newPrimaryActor for Cell.
    import thespian.system.simpleSystemBase as simple

    from actors.cell import Cell, address_name, new_cell

    for count in (0, 1, 51, 52, 53, 2703, 2704, 10**6):
        assert address_name(count) == simple._namegen(count)
    assert "_newAddress(\"/A\", self._primaryCount)" in inspect.getsource(
        simple.ActorSystemBase.newPrimaryActor)
    system = ActorSystem("simpleSystemBase", transientUnique=True, logDefs=False)
    try:
        base = system._systemBase
        first = system.createActor(Cell)
        address, cell = new_cell(system)
        after = system.createActor(Cell)
        names = [a.actorAddressString for a in (first, address, after)]
        assert len(set(names)) == 3 and all(n.startswith("/A~") for n in names)
        entry = base.actorRegistry[address.actorAddressString]
        assert isinstance(entry, simple.ActorRef) and entry.instance is cell
        assert cell.myAddress == address and entry.parent == system.systemAddress
        system.tell(address, ActorExitRequest())  # thespian ends it like its own
        assert base.actorRegistry.get(address.actorAddressString) is None
    finally:
        system.shutdown()


_FRESH_IMPORT = """
import json, sys
import actors, actors.cell, actors.loop
skipped = [m for m in ("logging.config", "logging.handlers", "socketserver", "zipfile",
                       "importlib.resources", "thespian.system.sourceLoader")
           if m in sys.modules]
from thespian.actors import ActorSystem
import thespian.system.simpleSystemBase as simple
system = ActorSystem("simpleSystemBase", transientUnique=True)  # logDefs: dictConfig runs
system.shutdown()
import logging.config
import thespian.system.sourceLoader as loader
print(json.dumps({"skipped": skipped, "config_loaded": "logging.config" in sys.modules,
                  "real_config": logging.config.dictConfig.__module__,
                  "finder": simple.SourceHashFinder.__name__,
                  "loader_class": loader.SourceHashFinder.__module__}))
"""


def test_the_runtime_imports_thespian_without_its_unused_modules() -> None:
    # actors.thespian_base: simpleSystemBase is imported with logging.config and the
    # source loader deferred (a fresh interpreter: imports are process-wide).
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _FRESH_IMPORT], cwd=root, text=True,
                          capture_output=True, timeout=60, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["skipped"] == []
    # The deferred dictConfig ran for real (an ActorSystem without logDefs=False) and the
    # real modules load as usual afterwards.
    assert report["config_loaded"] and report["real_config"] == "logging.config"
    assert report["loader_class"] == "thespian.system.sourceLoader"
    assert report["finder"] == "SourceHashFinder"


def test_simple_system_base_takes_only_the_deferred_names_from_those_modules() -> None:
    # If a thespian release imports another name from them, the stand-in would lack it.
    import ast

    import thespian.system.simpleSystemBase as simple

    from actors.thespian_base import DEFERRED, _deferred

    taken: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(inspect.getsource(simple))):
        if isinstance(node, ast.ImportFrom) and node.module in DEFERRED:
            taken.setdefault(node.module, set()).update(a.name for a in node.names)
        if isinstance(node, ast.Import):
            assert not {a.name for a in node.names} & set(DEFERRED)
    assert taken == {module: set(names) for module, names in DEFERRED.items()}
    assert _deferred("os.path", "join")("a", "b") == "a/b"
