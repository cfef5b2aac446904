"""Tags filters: validation at subscribe time and matching, with the SDK's own builders."""

from __future__ import annotations

from typing import Any

import pytest
from centrifuge.filter import Filter, FilterNode

from broker.shard.filters import MAX_DEPTH, FilterError, compile_filter

TAGS = {"ticker": "AAPL", "price": "101.5", "source": "NASDAQ", "empty": ""}


def match(node: FilterNode | dict[str, Any], tags: dict[str, str] = TAGS) -> bool:
    return compile_filter(node.node if isinstance(node, FilterNode) else node)(tags)


@pytest.mark.parametrize(("node", "expected"), [
    (Filter.eq("ticker", "AAPL"), True),
    (Filter.eq("ticker", "MSFT"), False),
    (Filter.eq("missing", "x"), False),
    (Filter.neq("ticker", "MSFT"), True),
    (Filter.neq("missing", "x"), True),
    (Filter.is_in("source", ["NYSE", "NASDAQ"]), True),
    (Filter.is_in("source", ["NYSE"]), False),
    (Filter.not_in("source", ["NYSE"]), True),
    (Filter.exists("empty"), True),
    (Filter.exists("missing"), False),
    (Filter.not_exists("missing"), True),
    (Filter.starts_with("ticker", "AA"), True),
    (Filter.ends_with("ticker", "PL"), True),
    (Filter.contains("source", "SDA"), True),
    (Filter.contains("missing", "x"), False),
    (Filter.gt("price", "100"), True),
    (Filter.gt("price", "101.5"), False),
    (Filter.gte("price", "101.50"), True),
    (Filter.lt("price", "200"), True),
    (Filter.lte("price", "101.4"), False),
    (Filter.gt("ticker", "1"), False),  # not a number: never matches
    (Filter.gt("price", "abc"), False),
    (Filter.gt("missing", "1"), False),
])
def test_leaf_comparisons(node: FilterNode, expected: bool) -> None:
    assert match(node) is expected


def test_logical_nodes_combine_children() -> None:
    aapl, nyse = Filter.eq("ticker", "AAPL"), Filter.eq("source", "NYSE")
    assert match(Filter.all(aapl, Filter.gte("price", "100"))) is True
    assert match(Filter.all(aapl, nyse)) is False
    assert match(Filter.any(nyse, aapl)) is True
    assert match(Filter.any(nyse, Filter.eq("ticker", "X"))) is False
    assert match(Filter.negate(nyse)) is True
    assert match(Filter.negate(Filter.all(aapl, Filter.negate(nyse)))) is False


def test_publication_without_tags_matches_only_absence_filters() -> None:
    assert match(Filter.not_exists("ticker"), {}) is True
    assert match(Filter.neq("ticker", "AAPL"), {}) is True
    assert match(Filter.eq("ticker", "AAPL"), {}) is False


@pytest.mark.parametrize("node", [
    {},  # a leaf without cmp
    {"key": "a", "cmp": "regex", "val": "x"},
    {"key": "a", "cmp": "eq"},  # eq needs val
    {"key": "a", "cmp": "eq", "val": "x", "vals": ["y"]},
    {"key": "a", "cmp": "in"},  # in needs vals
    {"key": "a", "cmp": "in", "val": "x", "vals": ["x"]},
    {"key": "a", "cmp": "ex", "val": "x"},
    {"cmp": "eq", "val": "x"},  # no key
    {"op": "and", "nodes": []},
    {"op": "or"},
    {"op": "not", "nodes": [{"key": "a", "cmp": "ex"}, {"key": "b", "cmp": "ex"}]},
    {"op": "xor", "nodes": [{"key": "a", "cmp": "ex"}]},
    {"op": "and", "nodes": [{"key": "a", "cmp": "bogus"}]},  # a bad child
    {"key": 5, "cmp": "eq", "val": "x"},
    {"key": "a", "cmp": "in", "vals": "x"},
    {"op": "and", "nodes": "x"},
    "eq",
    None,
])
def test_malformed_filters_are_refused(node: Any) -> None:
    with pytest.raises(FilterError):
        compile_filter(node)


def test_depth_is_bounded() -> None:
    node: dict[str, Any] = {"key": "a", "cmp": "ex"}
    for _ in range(MAX_DEPTH):
        node = {"op": "not", "nodes": [node]}
    with pytest.raises(FilterError, match="deeply"):
        compile_filter(node)


def test_node_count_is_bounded() -> None:
    leaves = [{"key": "a", "cmp": "ex"}] * 2000
    with pytest.raises(FilterError, match="too many"):
        compile_filter({"op": "or", "nodes": leaves})
