"""``CHORUS_<PATH>`` environment variables layered over the raw config mapping.

Keys contain underscores (``history_size``), so an environment name cannot be split back
into a path. Instead the schema is walked once to list every known leaf path and its
environment name (``CHORUS_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE``), and each variable is
looked up in that table. Namespaces follow Centrifugo's scheme:

* ``CHORUS_CHANNEL_NAMESPACES="chat news"`` (spaces or commas, or a JSON array of names)
  declares namespaces by name; ones already in the file keep their options. A JSON array
  of objects replaces the whole list instead.
* ``CHORUS_CHANNEL_NAMESPACES_CHAT_PRESENCE=true`` sets an option of the namespace whose
  name, upper-cased with ``.`` and ``-`` turned into ``_``, is ``CHAT``.

Error handling: a ``CHORUS_`` variable that matches no key, an ambiguous namespace match,
or a value that does not fit the key's type raises ConfigError naming the variable.
``CHORUS_CONFIG`` is reserved for the CLI (config file path) and ignored here.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from collections.abc import Mapping
from typing import Any

from broker.config.parse import (
    NAMESPACES,
    ConfigError,
    check_value,
    field_kind,
    parse_env_value,
    section_type,
    show,
    split_list,
)

ENV_PREFIX = "CHORUS_"
RESERVED_ENV = frozenset({"CHORUS_CONFIG"})

Path = tuple[str, ...]


# Kubernetes injects these for a Service named "chorus" (CHORUS_SERVICE_HOST,
# CHORUS_PORT_8000_TCP_ADDR, ...); they are not configuration.
_SERVICE_LINK = re.compile(r"^CHORUS_(SERVICE_(HOST|PORT)(_\w+)?|PORT(_\d+_(TCP|UDP)\w*)?)$")


def env_name(*parts: str) -> str:
    """The environment spelling of a key path: upper case, ``.``/``-`` become ``_``."""
    joined = "_".join(parts)
    return ENV_PREFIX + joined.upper().replace(".", "_").replace("-", "_")


def schema_leaves(root: type) -> tuple[dict[str, tuple[Path, Any]], list[tuple[Path, Any]]]:
    """Walk the schema: (env name -> (path, field)) for leaves, and the namespace fields."""
    leaves: dict[str, tuple[Path, Any]] = {}
    ns_fields: list[tuple[Path, Any]] = []

    def walk(cls: type, prefix: Path) -> None:
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            path = (*prefix, f.name)
            kind = field_kind(f)
            if kind == "section":
                walk(section_type(f), path)
            elif kind == NAMESPACES:
                ns_fields.append((path, f))
            else:
                leaves[env_name(*path)] = (path, f)

    walk(root, ())
    return leaves, ns_fields


def apply_env(raw: Mapping[str, Any], env: Mapping[str, str], root: type) -> dict[str, Any]:
    """Return a copy of ``raw`` with every ``CHORUS_`` variable of ``env`` applied."""
    out = _copy(raw)
    leaves, ns_fields = schema_leaves(root)
    todo = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)
            and k not in RESERVED_ENV and not _SERVICE_LINK.match(k)}
    for path, f in ns_fields:
        list_var = env_name(*path)
        if list_var in todo:
            _apply_namespace_list(out, path, todo.pop(list_var), list_var)
        for var in sorted(k for k in todo if k.startswith(list_var + "_")):
            _apply_namespace_option(out, path, f, var, todo.pop(var))
    for var in sorted(todo):
        if var not in leaves:
            hint = difflib.get_close_matches(var, list(leaves), n=1)
            suffix = f" (did you mean {hint[0]}?)" if hint else ""
            raise ConfigError(f"{var}: environment variable matches no config key{suffix}")
        path, f = leaves[var]
        _set(out, path, _env_value(".".join(path), f, todo[var], var))
    return out


def _env_value(dotted: str, f: Any, text: str, var: str) -> Any:
    value = parse_env_value(field_kind(f), text)
    try:
        check_value(dotted, f, value)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from environment variable {var})") from None
    return value


def _apply_namespace_list(out: dict[str, Any], path: Path, text: str, var: str) -> None:
    dotted = ".".join(path)
    value: Any = split_list(text)
    if text.strip().startswith("{"):
        value = None  # one object is not a list of namespaces
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        _set(out, path, [dict(v) for v in value])  # full definitions replace the list
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{dotted}: expected namespace names or a JSON array of namespace objects, "
            f"got {show(text)} (from environment variable {var})"
        )
    current = _get_list(out, path)
    known = {item.get("name") for item in current if isinstance(item, Mapping)}
    current.extend({"name": name} for name in value if name not in known)
    _set(out, path, current)


def _apply_namespace_option(out: dict[str, Any], path: Path, f: Any, var: str, text: str) -> None:
    rest = var[len(env_name(*path)) + 1 :]
    fields = dataclasses.fields(f.metadata["options"])
    options = {env_name(o.name)[len(ENV_PREFIX) :]: o for o in fields}
    items = _get_list(out, path)
    matches = []
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            continue
        prefix = env_name(name)[len(ENV_PREFIX) :] + "_"
        if rest.startswith(prefix) and rest[len(prefix) :] in options:
            matches.append((index, options[rest[len(prefix) :]]))
    if not matches:
        raise ConfigError(
            f"{var}: environment variable matches no namespace option (declare the namespace "
            f"in the config file or in {env_name(*path)})"
        )
    if len(matches) > 1:
        names = ", ".join(str(items[i].get("name")) for i, _ in matches)
        raise ConfigError(f"{var}: environment variable is ambiguous between namespaces {names}")
    index, opt_field = matches[0]
    dotted = f"{'.'.join(path)}[{index}].{opt_field.name}"
    item = dict(items[index])
    item[opt_field.name] = _env_value(dotted, opt_field, text, var)
    items[index] = item
    _set(out, path, items)


def _get_list(out: dict[str, Any], path: Path) -> list[Any]:
    node: Any = out
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return list(node) if isinstance(node, list | tuple) else []


def _set(out: dict[str, Any], path: Path, value: Any) -> None:
    node = out
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = dict(child) if isinstance(child, Mapping) else {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the JSON-like structure, so env overlays never touch the caller's."""
    return copy.deepcopy(dict(raw))
