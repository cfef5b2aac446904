"""Schema-driven parsing for Chorus configuration: values, files and the typed builder.

The schema *is* the frozen dataclasses in :mod:`broker.config`. Each field's kind comes
from its default (``bool``, ``int``, ``float``, ``str``, ``tuple`` of strings, nested
dataclass) or from ``metadata["kind"]`` (``"duration"``, ``"namespaces"``). Constraints
live in the same metadata (``min``, ``max``, ``choices``), so there is one place that
says what an option is.

Error handling: every problem is a :class:`ConfigError` whose message starts with the full
key path (``channel.namespaces[1].history_size: ...``); nothing else escapes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key path."""


class SectionError(ConfigError):
    """Raised by a section's ``__post_init__`` with a key relative to the section (a
    section used at several paths, like a namespace's options); :func:`build` puts the
    section's path in front."""


# --- field kinds ----------------------------------------------------------------------

DURATION = "duration"
NAMESPACES = "namespaces"
SECTIONS = "sections"  # a list of sections, ``metadata["item"]`` the dataclass of each


def opt(default: Any, **meta: Any) -> Any:
    """A dataclass field with schema metadata (``kind``, ``min``, ``max``, ``choices``).

    Nested sections are plain ``field(default_factory=Section)``; when the factory is not
    the class itself, ``metadata={"section": Section}`` names it.
    """
    if isinstance(default, list | dict):
        raise TypeError("mutable defaults are not allowed in the config schema")
    return dataclasses.field(default=default, metadata=meta)


def field_kind(f: dataclasses.Field[Any]) -> str:
    """The schema kind of a dataclass field: bool, int, float, str, list, duration, ..."""
    kind = f.metadata.get("kind")
    if kind:
        return str(kind)
    factory = f.default_factory
    if "section" in f.metadata or (isinstance(factory, type) and dataclasses.is_dataclass(factory)):
        return "section"
    default = f.default
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, tuple):
        return "list"
    raise TypeError(f"config field {f.name!r} has no schema kind")


def section_type(f: dataclasses.Field[Any]) -> type:
    """The dataclass of a ``section`` field."""
    cls = f.metadata.get("section", f.default_factory)
    assert isinstance(cls, type)
    return cls


# --- value parsing ---------------------------------------------------------------------

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def show(value: Any) -> str:
    """Render a bad value for an error message: JSON where possible, repr otherwise."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_duration(text: str) -> float | None:
    """Parse a Go-style duration ("1m30s", "500ms", "2h", "0") into seconds, or None."""
    text = text.strip()
    if text == "0":
        return 0.0
    try:
        return float(text)  # a bare number of seconds, as in a file
    except ValueError:
        pass
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total if text else None


_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def parse_env_value(kind: str, text: str) -> Any:
    """Turn an environment string into the Python value the schema kind expects.

    Strings that do not parse are returned unchanged so that the builder reports them
    with the usual "expected ..., got ..." message and key path.
    """
    if kind == MAPPING:  # a JSON object, as Centrifugo's static_headers in the environment
        try:
            return json.loads(text)
        except ValueError:
            return text
    if kind == "bool":
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return text
    if kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            return text
    if kind == "float":
        try:
            return float(text.strip())
        except ValueError:
            return text
    if kind == "list":
        return split_list(text)
    if kind == SECTIONS:  # a JSON array of objects, as Centrifugo's CENTRIFUGO_CONSUMERS
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text  # str and duration: the builder parses durations from strings


def split_list(text: str) -> Any:
    """A list from the environment: a JSON array, or words split on spaces/commas."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    return [part for part in re.split(r"[\s,]+", stripped) if part]


MAPPING = "mapping"  # string keys to string values (``static_headers``), kept read-only


def check_mapping(path: str, value: Any) -> Mapping[str, str]:
    """A mapping of strings to strings, as a read-only copy; ConfigError naming ``path``."""
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"{path}: expected a mapping of strings to strings, got {show(value)}")
    return MappingProxyType(dict(value))


def check_value(path: str, f: dataclasses.Field[Any], value: Any) -> Any:
    """Validate and convert one leaf value; raise ConfigError naming ``path``."""
    kind = field_kind(f)
    meta = f.metadata
    if kind == MAPPING:
        return check_mapping(path, value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected a boolean, got {show(value)}")
        return value
    if kind == "int":
        return _check_int(path, value, meta)
    if kind in ("float", DURATION):
        return _check_number(path, value, meta, duration=kind == DURATION)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {show(value)}")
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            allowed = ", ".join(f'"{c}"' for c in choices)
            raise ConfigError(f"{path}: expected one of {allowed}, got {show(value)}")
        return value
    if kind == "list":
        if isinstance(value, str):
            value = split_list(value)  # Centrifugo accepts "a,b" for list options too
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: expected a list of strings, got {show(value)}")
        choices = meta.get("choices")
        for item in value:
            if choices is not None and item not in choices:
                allowed = ", ".join(f'"{c}"' for c in choices)
                raise ConfigError(f"{path}: items must be one of {allowed}, got {show(item)}")
        return tuple(value)
    if kind == SECTIONS:
        return build_sections(f, value, path)
    raise TypeError(f"check_value cannot handle kind {kind!r}")


def _check_int(path: str, value: Any, meta: Mapping[str, Any]) -> int:
    lo, hi = meta.get("min", 0), meta.get("max")
    if lo == 0 and hi is None:
        expected = "a non-negative integer"
    elif hi is None:
        expected = f"an integer >= {lo}"
    else:
        expected = f"an integer between {lo} and {hi}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}: expected {expected}, got {show(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{path}: expected {expected}, got {show(value)}")
    return value


def _check_number(path: str, value: Any, meta: Mapping[str, Any], *, duration: bool) -> float:
    expected = (
        'a duration such as "25s", "500ms", "1m30s" or a number of seconds'
        if duration
        else "a non-negative number"
    )
    number: float | None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and duration:
        number = parse_duration(value)
    else:
        number = None
    if number is None or not math.isfinite(number) or number < meta.get("min", 0.0):
        raise ConfigError(f"{path}: expected {expected}, got {show(value)}")
    hi = meta.get("max")
    if hi is not None and number > hi:
        limit = f"{hi:g}s" if duration else f"{hi:g}"
        raise ConfigError(f"{path}: at most {limit}, got {show(value)}")
    return number


# --- the typed builder -----------------------------------------------------------------


def unknown_key_error(path: str, key: str, known: list[str]) -> ConfigError:
    """A ConfigError for a key the schema does not define, with a close-match hint."""
    full = f"{path}.{key}" if path else str(key)
    import difflib  # only for a message: not loaded on the happy path

    hint = difflib.get_close_matches(str(key), known, n=1)
    suffix = f' (did you mean "{hint[0]}"?)' if hint else ""
    return ConfigError(f"{full}: unknown key{suffix}")


def build(cls: type, raw: Any, path: str, *, skip: tuple[str, ...] = (), base: Any = None) -> Any:
    """Build the frozen dataclass ``cls`` from a raw mapping, validating every key.

    Keys absent from ``raw`` keep the value in ``base`` (default: ``cls()``'s defaults).
    ``skip`` names raw keys that the caller handles itself (a namespace's ``name``).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path or '<top level>'}: expected a mapping, got {show(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in raw:
        if key not in fields and key not in skip:
            raise unknown_key_error(path, key, list(fields))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        kind = field_kind(f)
        if kind == "section":
            default = f.default_factory() if callable(f.default_factory) else None
            values[name] = build(section_type(f), raw.get(name), sub, base=default)
        elif name not in raw:
            continue
        elif kind == NAMESPACES:
            values[name] = build_namespaces(f, raw[name], sub)
        else:
            values[name] = check_value(sub, f, raw[name])
    try:
        return cls(**values) if base is None else dataclasses.replace(base, **values)
    except SectionError as exc:
        raise ConfigError(f"{path}.{exc}" if path else str(exc)) from None


def build_namespaces(f: dataclasses.Field[Any], raw: Any, path: str) -> tuple[Any, ...]:
    """Build the namespace list: each item is ``{name, <channel options>...}``."""
    ns_cls, opts_cls = f.metadata["item"], f.metadata["options"]
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{path}: expected a list of namespaces, got {show(raw)}")
    items = []
    for i, item in enumerate(raw):
        sub = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{sub}: expected a mapping, got {show(item)}")
        name = item.get("name")
        if not isinstance(name, str):
            raise ConfigError(f"{sub}.name: expected a string, got {show(name)}")
        options = build(opts_cls, item, sub, skip=("name",))
        items.append(ns_cls(name=name, options=options))
    return tuple(items)


def build_sections(f: dataclasses.Field[Any], raw: Any, path: str) -> tuple[Any, ...]:
    """Build a list of sections (``consumers: [{...}, ...]``), each item by ``build``."""
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{path}: expected a list of mappings, got {show(raw)}")
    return tuple(build(f.metadata["item"], item, f"{path}[{i}]") if isinstance(item, Mapping)
                 else _not_mapping(f"{path}[{i}]", item) for i, item in enumerate(raw))


def _not_mapping(path: str, item: Any) -> Any:
    raise ConfigError(f"{path}: expected a mapping, got {show(item)}")


# --- files and merging -----------------------------------------------------------------


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON, YAML or TOML config file (by extension) into a plain dict.

    Error handling: a missing file, an unknown extension, a parse error or a top level
    that is not a mapping each raise ConfigError naming the file.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml", ".toml"):
        raise ConfigError(f"{p}: unknown config file type (use .json, .yaml, .yml or .toml)")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror or exc}") from None
    try:
        data = _parse(suffix, text)
    except ValueError as exc:  # YAMLError is re-raised as ValueError by _parse
        raise ConfigError(f"{p}: cannot parse: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {show(data)}")
    return data


def _parse(suffix: str, text: str) -> Any:
    """Parse config text by file type. The TOML and YAML parsers are imported here, on
    demand: a node configured by JSON (or by the environment) never loads them.

    Error handling: ValueError for malformed text (YAML's errors converted)."""
    if suffix == ".json":
        return json.loads(text) if text.strip() else {}
    if suffix == ".toml":
        import tomllib

        return tomllib.loads(text)
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``top`` into a copy of ``base``: mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        elif isinstance(value, Mapping):
            out[key] = deep_merge({}, value)
        else:
            out[key] = value
    return out
