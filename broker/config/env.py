"""``CHORUS_<PATH>`` and ``CENTRIFUGO_<PATH>`` environment variables over the raw config.

Both prefixes name the same keys, so a Centrifugo v6 environment (a docker-compose file,
a Kubernetes manifest) configures Chorus unchanged. When both set the same key (the same
name after the prefix), the ``CHORUS_`` one wins and a warning names both variables.

Keys contain underscores (``history_size``), so an environment name cannot be split back
into a path. Instead the schema is walked once to list every known leaf path and its
name after the prefix (``CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE``), and each variable is
looked up in that table. Namespaces follow Centrifugo's scheme:

* ``CHORUS_CHANNEL_NAMESPACES="chat news"`` (spaces or commas, or a JSON array of names)
  declares namespaces by name; ones already in the file keep their options. A JSON array
  of objects replaces the whole list instead.
* ``CHORUS_CHANNEL_NAMESPACES_CHAT_PRESENCE=true`` sets an option of the namespace whose
  name, upper-cased with ``.`` and ``-`` turned into ``_``, is ``CHAT``.

Error handling: a variable of either prefix that matches no key (a Centrifugo feature
Chorus lacks, a typo), an ambiguous namespace match, or a value that does not fit the
key's type raises ConfigError naming the variable. Not configuration, so skipped:
``CHORUS_CONFIG`` (the CLI's config file path), the runbooks' ``CHORUS_ADMIN``,
``CHORUS_ADMIN_TOKEN``, ``CHORUS_NODES``, ``CHORUS_API``, ``CHORUS_API_KEY`` and
``CHORUS_CLUSTER_DIR`` (read by ``chorus admin``, see docs/runbooks/), Kubernetes
service links of a Service named "chorus" or "centrifugo", and ``CENTRIFUGO_VAR_*``
(Centrifugo's variables for interpolation, which Chorus does not do).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
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
ENV_PREFIXES = (ENV_PREFIX, "CENTRIFUGO_")  # first wins when both set one key
# Not configuration: the CLI's config file, and the variables ``chorus admin`` and the
# runbooks read (docs/runbooks/README.md), so an operator's shell that has them set can
# still run ``chorus serve``/``backup``/``checkconfig``.
RESERVED_ENV = frozenset({"CHORUS_CONFIG", "CHORUS_ADMIN", "CHORUS_ADMIN_TOKEN", "CHORUS_NODES",
                          "CHORUS_API", "CHORUS_API_KEY", "CHORUS_CLUSTER_DIR"})

Path = tuple[str, ...]

log = logging.getLogger("chorus.config")

# Kubernetes injects these for a Service named "chorus" or "centrifugo"
# (CHORUS_SERVICE_HOST, CENTRIFUGO_PORT_8000_TCP_ADDR, ...); they are not configuration.
_SERVICE_LINK = re.compile(
    r"^(CHORUS|CENTRIFUGO)_(SERVICE_(HOST|PORT)(_\w+)?|PORT(_\d+_(TCP|UDP)\w*)?)$")


def env_key(*parts: str) -> str:
    """A key path as spelled after the prefix: upper case, ``.``/``-`` become ``_``."""
    return "_".join(parts).upper().replace(".", "_").replace("-", "_")


def env_name(*parts: str) -> str:
    """The ``CHORUS_`` environment spelling of a key path."""
    return ENV_PREFIX + env_key(*parts)


def schema_leaves(root: type) -> tuple[dict[str, tuple[Path, Any]], list[tuple[Path, Any]]]:
    """Walk the schema: (key after the prefix -> (path, field)) for leaves, and the
    namespace fields."""
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
                leaves[env_key(*path)] = (path, f)

    walk(root, ())
    return leaves, ns_fields


def _skipped(var: str) -> bool:
    return var in RESERVED_ENV or bool(_SERVICE_LINK.match(var)) or \
        var.startswith("CENTRIFUGO_VAR_")


def collect_env(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Configuration variables by key after the prefix: key -> (variable, value).

    Where ``CHORUS_X`` and ``CENTRIFUGO_X`` are both set, ``CHORUS_X`` is kept and a
    warning names both (whether or not the values differ: one of them is dead config).
    """
    found: dict[str, tuple[str, str]] = {}
    for prefix in reversed(ENV_PREFIXES):  # lowest priority first
        for var in sorted(v for v in env if v.startswith(prefix) and not _skipped(v)):
            key = var[len(prefix):]
            if key in found:
                log.warning("%s and %s set the same config key: %s wins", var,
                            found[key][0], var)
            found[key] = (var, env[var])
    return found


def apply_env(raw: Mapping[str, Any], env: Mapping[str, str], root: type) -> dict[str, Any]:
    """Return a copy of ``raw`` with every ``CHORUS_``/``CENTRIFUGO_`` variable applied."""
    out = _copy(raw)
    leaves, ns_fields = schema_leaves(root)
    todo = collect_env(env)
    for path, f in ns_fields:
        list_key = env_key(*path)
        if list_key in todo:
            var, value = todo.pop(list_key)
            _apply_namespace_list(out, path, value, var)
        for key in sorted(k for k in todo if k.startswith(list_key + "_")):
            var, value = todo.pop(key)
            _apply_namespace_option(out, path, f, key[len(list_key) + 1:], var, value)
    for key in sorted(todo):
        var, value = todo[key]
        if key not in leaves:
            prefix = var[: len(var) - len(key)]
            hint = _close_match(key, list(leaves))
            suffix = f" (did you mean {prefix}{hint[0]}?)" if hint else ""
            raise ConfigError(f"{var}: environment variable matches no config key{suffix}")
        path, f = leaves[key]
        _set(out, path, _env_value(".".join(path), f, value, var))
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


def _apply_namespace_option(out: dict[str, Any], path: Path, f: Any, rest: str, var: str,
                            text: str) -> None:
    """Set the option that ``rest`` (``<NAMESPACE>_<OPTION>``) names, from ``var``."""
    fields = dataclasses.fields(f.metadata["options"])
    options = {env_key(o.name): o for o in fields}
    items = _get_list(out, path)
    matches, named = [], []
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            continue
        prefix = env_key(name) + "_"
        if rest.startswith(prefix):
            named.append((name, rest[len(prefix):]))
            if rest[len(prefix):] in options:
                matches.append((index, options[rest[len(prefix):]]))
    if not matches and named:
        name, option = named[0]
        hint = _close_match(option, list(options))
        suffix = f" (did you mean {hint[0]}?)" if hint else ""
        raise ConfigError(f"{var}: namespace {name!r} has no option {option}{suffix}")
    if not matches:
        list_var = var[: len(var) - len(rest) - 1]
        raise ConfigError(
            f"{var}: environment variable matches no namespace option (declare the namespace "
            f"in the config file or in {list_var})"
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


def _close_match(word: str, known: list[str]) -> list[str]:
    """difflib's closest match, for an error message (difflib is imported only then)."""
    import difflib

    return difflib.get_close_matches(word, known, n=1)
