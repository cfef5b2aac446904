"""A compiled-code cache for the methods ``@dataclass`` generates: part of the fast start.

On CPython 3.11, ``@dataclass`` writes each method it adds (``__init__``, ``__repr__``,
``__eq__``, a frozen class's ``__setattr__`` and ``__delattr__``, ``__hash__``) as source
text and compiles it with ``exec`` when the class is created. Chorus defines about 140
dataclasses on the way to serving (config sections, actor messages, state), and those
~600 compiles were the largest single cost of ``import broker.app`` (about 45 ms of CPU
on the reference machine, a quarter of what Chorus adds to a bare aiohttp start). This
module keeps the compiled code objects in a file beside the modules' bytecode cache,
keyed by the generated source text, so a later start runs cached code instead of
compiling: what ``__pycache__`` does for modules, done for the generated methods.

``install()`` (run by ``import broker``) points the name ``exec`` inside the
``dataclasses`` module at :func:`cached_exec`; classes defined in Chorus's own modules
(``broker``, ``actors``, ``bench``) go through the cache, every other dataclass is
compiled exactly as before. ``save()`` writes what was compiled (``chorus serve`` calls it
once the app is built, and at exit).

Guarantees: a class made from the cache is the one ``@dataclass`` would have made: the
key is the whole generated text, compiled the way ``exec`` compiles it (no inherited
``__future__`` flags), and the file is tied to the interpreter's bytecode magic number.
Error handling: a missing, unreadable, corrupt or foreign file counts as empty (everything
compiles as usual); a failed write is ignored (a read-only install), as for ``.pyc``
files; nothing is written when ``sys.dont_write_bytecode`` is set.
"""

# No `from __future__ import annotations` here: `exec` and `compile` called with source
# text inherit the calling module's future flags, which would turn the annotations of the
# generated methods into strings. Both paths below also compile with dont_inherit.

import atexit
import builtins
import contextlib
import dataclasses
import importlib.util
import marshal
import os
import sys
from types import CodeType
from typing import Any

SCOPE = ("broker.", "actors.", "bench.")  # module name prefixes whose classes are cached
MAX_ENTRIES = 4096  # past this, a save keeps only what this process used
_HEADER = importlib.util.MAGIC_NUMBER + b"chorus-dataclass-code-1\n"


def default_path() -> str | None:
    """The cache file: in this package's ``__pycache__`` (or under ``sys.pycache_prefix``),
    named for the interpreter; None if the interpreter writes no bytecode cache."""
    try:
        pyc = importlib.util.cache_from_source(__file__)
    except NotImplementedError:  # sys.implementation.cache_tag is None
        return None
    return os.path.join(os.path.dirname(pyc),
                        f"dataclass-code.{sys.implementation.cache_tag}.bin")


class CodeCache:
    """Source text -> code object, loaded from ``path`` on first use.

    ``hits`` and ``compiled`` count lookups since the load (tests and diagnostics).
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._codes: dict[str, CodeType] | None = None
        self._used: set[str] = set()
        self.hits = 0
        self.compiled = 0

    def _load(self) -> dict[str, CodeType]:
        codes: dict[str, CodeType] = {}
        if self.path is not None:
            with contextlib.suppress(OSError, ValueError, EOFError, TypeError):
                with open(self.path, "rb") as f:
                    data = f.read()
                if data.startswith(_HEADER):
                    loaded = marshal.loads(data[len(_HEADER):])
                    if isinstance(loaded, dict):
                        codes = {k: v for k, v in loaded.items()
                                 if isinstance(k, str) and isinstance(v, CodeType)}
        self._codes = codes
        return codes

    def code_for(self, source: str) -> CodeType:
        """The code of ``source`` as ``exec(source, ...)`` would compile it."""
        codes = self._codes if self._codes is not None else self._load()
        code = codes.get(source)
        if code is None:
            # dont_inherit: this module's `from __future__ import annotations` must not
            # leak into the generated methods (their annotations would become strings).
            code = compile(source, "<string>", "exec", dont_inherit=True)
            codes[source] = code
            self.compiled += 1
        else:
            self.hits += 1
        self._used.add(source)
        return code

    def save(self) -> bool:
        """Write the file if anything was compiled since the load; True if written."""
        if self.compiled == 0 or self.path is None or sys.dont_write_bytecode:
            return False
        codes = self._codes or {}
        if len(codes) > MAX_ENTRIES:  # stale entries of old class layouts: drop them
            codes = {k: v for k, v in codes.items() if k in self._used}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(_HEADER + marshal.dumps(codes))
            os.replace(tmp, self.path)  # atomic: concurrent workers never see half a file
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        self.compiled = 0
        return True


_CACHE = CodeCache(default_path())


def cached_exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:
    """``exec`` for the dataclasses module: Chorus's generated methods come from the cache."""
    if isinstance(source, str):
        if isinstance(globals, dict) and str(globals.get("__name__", "")).startswith(SCOPE):
            source = _CACHE.code_for(source)
        else:  # as dataclasses' own exec would: no flags inherited from this module
            source = compile(source, "<string>", "exec", dont_inherit=True)
    builtins.exec(source, globals, locals)


def install() -> None:
    """Route the dataclasses module's ``exec`` through the cache (idempotent)."""
    if getattr(dataclasses, "exec", None) is not cached_exec:
        setattr(dataclasses, "exec", cached_exec)  # noqa: B010 - a module global, not an attribute mypy knows
        atexit.register(save)


def save() -> bool:
    """Write the process-wide cache (see ``CodeCache.save``)."""
    return _CACHE.save()


def stats() -> tuple[int, int]:
    """(hits, compiled) of the process-wide cache since its load."""
    return _CACHE.hits, _CACHE.compiled
