"""Import thespian's ``simpleSystemBase`` without the modules it imports for features the
runtime never uses: part of the fast start.

At import, ``thespian.system.simpleSystemBase`` takes ``dictConfig`` from
``logging.config`` (which imports ``logging.handlers`` and ``socketserver``), and
``loadModuleFromHashSource`` / ``SourceHashFinder`` from ``thespian.system.sourceLoader``
(which imports ``zipfile`` and ``importlib.resources``). It calls the first only when an
``ActorSystem`` is made without ``logDefs=False`` (the runtime passes False) and the
others only for actors loaded from source zips (``loadActorSource``: never here).
Importing those modules was ~5 ms of a node's start, all for nothing.

:func:`load_simple_system_base` imports the module with those names bound to functions
that import the real module and call the real object on first use. The stand-in modules
exist in ``sys.modules`` only during that import (and only for modules not imported
yet), so any later ``import logging.config`` loads the real one as usual; nothing else
changes. ``tests/unit/test_thespian_internals.py`` checks that the deferred names still
work and that the module asks for nothing else from those two.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

SIMPLE_SYSTEM_BASE = "thespian.system.simpleSystemBase"

# module -> the names simpleSystemBase imports from it (thespian 4.0.x)
DEFERRED: dict[str, tuple[str, ...]] = {
    "logging.config": ("dictConfig",),
    "thespian.system.sourceLoader": ("loadModuleFromHashSource", "SourceHashFinder"),
}


def _deferred(module: str, name: str) -> Any:
    """A callable standing for ``module.name``: imports ``module`` when called."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported on first use (actors.thespian_base)."
    return call


def _stand_in(module: str, names: tuple[str, ...]) -> ModuleType:
    stub = ModuleType(module, f"stand-in for {module} during an import (actors.thespian_base)")
    for name in names:
        setattr(stub, name, _deferred(module, name))
    return stub


def load_simple_system_base() -> ModuleType:
    """``thespian.system.simpleSystemBase``, imported without ``logging.config`` and
    thespian's source loader (see the module docstring); the module as is if it was
    imported already."""
    loaded = sys.modules.get(SIMPLE_SYSTEM_BASE)
    if loaded is not None:
        return loaded
    stubs = {module: _stand_in(module, names) for module, names in DEFERRED.items()
             if module not in sys.modules}
    sys.modules.update(stubs)
    try:
        return importlib.import_module(SIMPLE_SYSTEM_BASE)
    finally:
        for module, stub in stubs.items():
            if sys.modules.get(module) is stub:
                del sys.modules[module]
