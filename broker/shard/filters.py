"""Server-side publication filters on tags (the subscribe request's ``tf`` field).

A filter is a tree of dict nodes, as the SDKs send it (``centrifuge.filter``): a leaf
``{"key", "cmp", "val" | "vals"}`` compares one tag; a logical node ``{"op": "and" |
"or" | "not", "nodes": [...]}`` combines children. ``compile_filter`` validates the tree
once, at subscribe time, with centrifuge's rules (``internal/filter``), and returns a
predicate over a publication's tags that the shard calls per publication: a closure
tree, no re-parsing and no errors at delivery time.

Semantics (as centrifuge): ``eq``/``sw``/``ew``/``ct`` need the tag present; ``neq``
matches a missing tag; ``in``/``nin`` compare the tag's value, a missing tag reading as
``""``; ``ex``/``nex`` test presence; ``gt``/``gte``/``lt``/``lte`` compare decimals and
are false when the tag is missing or either side is not a decimal number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by the first numeric filter (decimal is slow to import)
    from decimal import Decimal

__all__ = ["FilterError", "Predicate", "compile_filter", "matches_all"]

Predicate = Callable[[Mapping[str, str]], bool]

MAX_DEPTH = 32  # as the protobuf decoder's nesting limit
MAX_NODES = 1024  # a filter is evaluated per publication: keep its cost bounded
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_VAL_CMPS = frozenset({"eq", "neq", "sw", "ew", "ct", "gt", "gte", "lt", "lte"})
_VALS_CMPS = frozenset({"in", "nin"})
_PRESENCE_CMPS = frozenset({"ex", "nex"})


class FilterError(ValueError):
    """The filter is malformed; the subscribe is refused with bad request (107)."""


def matches_all(tags: Mapping[str, str]) -> bool:
    """The predicate of "no filter"."""
    return True


def compile_filter(node: Any) -> Predicate:
    """Validate ``node`` and return its predicate.

    Error handling: FilterError (with the reason) for anything but a well-formed tree of
    at most ``MAX_NODES`` nodes and ``MAX_DEPTH`` levels; never another exception.
    """
    budget = [MAX_NODES]
    return _compile(node, 0, budget)


def _compile(node: Any, depth: int, budget: list[int]) -> Predicate:
    if not isinstance(node, dict):
        raise FilterError("filter node must be an object")
    if depth >= MAX_DEPTH:
        raise FilterError("filter nested too deeply")
    budget[0] -= 1
    if budget[0] < 0:
        raise FilterError("filter has too many nodes")
    op = _text(node, "op")
    if op == "":
        return _leaf(node)
    nodes = node.get("nodes") or []
    if not isinstance(nodes, list):
        raise FilterError("nodes must be a list")
    children = [_compile(child, depth + 1, budget) for child in nodes]
    if op in ("and", "or") and not children:
        raise FilterError(f"{op} node must have at least one child")
    if op == "and":
        return lambda tags: all(child(tags) for child in children)
    if op == "or":
        return lambda tags: any(child(tags) for child in children)
    if op == "not":
        if len(children) != 1:
            raise FilterError("not node must have exactly one child")
        only = children[0]
        return lambda tags: not only(tags)
    raise FilterError(f"invalid op: {op}")


def _text(node: dict[str, Any], name: str) -> str:
    value = node.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FilterError(f"{name} must be a string")
    return value


def _leaf(node: dict[str, Any]) -> Predicate:
    key, cmp, val = _text(node, "key"), _text(node, "cmp"), _text(node, "val")
    vals = node.get("vals") or []
    if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
        raise FilterError("vals must be a list of strings")
    if node.get("nodes"):
        raise FilterError("leaf node must not have nodes")
    if cmp == "":
        raise FilterError("leaf node must have cmp set")
    if cmp in _VAL_CMPS:
        if val == "" or vals:
            raise FilterError(f"{cmp} comparison requires val and no vals")
    elif cmp in _VALS_CMPS:
        if not vals or val != "":
            raise FilterError(f"{cmp} comparison requires non-empty vals and no val")
    elif cmp in _PRESENCE_CMPS:
        if val != "" or vals:
            raise FilterError(f"{cmp} comparison must not use val or vals")
    else:
        raise FilterError(f"unknown comparison operator: {cmp}")
    if key == "" and cmp not in _PRESENCE_CMPS:
        raise FilterError("leaf node requires key")
    return _comparison(key, cmp, val, frozenset(vals))


def _comparison(key: str, cmp: str, val: str, vals: frozenset[str]) -> Predicate:
    if cmp == "eq":
        return lambda tags: tags.get(key) == val
    if cmp == "neq":
        return lambda tags: tags.get(key) != val
    if cmp == "in":
        return lambda tags: tags.get(key, "") in vals
    if cmp == "nin":
        return lambda tags: tags.get(key, "") not in vals
    if cmp == "ex":
        return lambda tags: key in tags
    if cmp == "nex":
        return lambda tags: key not in tags
    if cmp == "sw":
        return lambda tags: tags.get(key, "").startswith(val) and key in tags
    if cmp == "ew":
        return lambda tags: tags.get(key, "").endswith(val) and key in tags
    if cmp == "ct":
        return lambda tags: val in tags.get(key, "") and key in tags
    return _numeric(key, cmp, val)


def _numeric(key: str, cmp: str, val: str) -> Predicate:
    from decimal import Decimal

    def number(text: str | None) -> Decimal | None:
        if text is None or not _DECIMAL.fullmatch(text):
            return None
        return Decimal(text)

    bound = number(val)
    if bound is None:
        return lambda tags: False  # centrifuge: a non-numeric bound never matches
    test: Callable[[Decimal], bool] = {
        "gt": lambda v: v > bound,
        "gte": lambda v: v >= bound,
        "lt": lambda v: v < bound,
        "lte": lambda v: v <= bound,
    }[cmp]

    def predicate(tags: Mapping[str, str]) -> bool:
        value = number(tags.get(key))
        return value is not None and test(value)

    return predicate
