"""Server-side tags filters with the official Python SDK, over JSON and protobuf."""

from __future__ import annotations

from centrifuge.filter import Filter

from tests.functional.conftest import base_config, next_event, run_node, sdk_client

FILTERS = base_config(channel={"without_namespace": {"allow_tags_filter": True}})


async def test_only_publications_whose_tags_match_are_delivered(protobuf: bool) -> None:
    tags_filter = Filter.all(Filter.eq("ticker", "AAPL"), Filter.gte("price", "100"))
    async with run_node(FILTERS) as node, \
            sdk_client(node, protobuf=protobuf, user="f") as filtered, \
            sdk_client(node, protobuf=not protobuf, user="p") as plain:
        _, events = await filtered.subscribe("quotes", tags_filter=tags_filter)
        _, all_events = await plain.subscribe("quotes")
        sent = [({"ticker": "AAPL", "price": "99"}, 1), ({"ticker": "MSFT", "price": "300"}, 2),
                ({"ticker": "AAPL", "price": "120.5"}, 3), (None, 4),
                ({"ticker": "AAPL", "price": "100"}, 5)]
        for tags, n in sent:
            params = {"channel": "quotes", "data": {"n": n}}
            if tags is not None:
                params["tags"] = tags
            status, _ = await node.api("publish", params)
            assert status == 200
        # The unfiltered subscriber gets everything, in order; the filtered one the matches.
        assert [plain.value((await next_event(all_events.publications)).data)["n"]
                for _ in sent] == [1, 2, 3, 4, 5]
        got = [await next_event(events.publications) for _ in range(2)]
        assert [filtered.value(p.data)["n"] for p in got] == [3, 5]
        assert got[0].tags == {"ticker": "AAPL", "price": "120.5"}
        assert events.publications.empty()


async def test_negated_filter_matches_untagged_publications(protobuf: bool) -> None:
    async with run_node(FILTERS) as node, sdk_client(node, protobuf=protobuf) as sdk:
        _, events = await sdk.subscribe("feed", tags_filter=Filter.negate(
            Filter.eq("source", "NYSE")))
        await node.api("publish", {"channel": "feed", "data": 1, "tags": {"source": "NYSE"}})
        await node.api("publish", {"channel": "feed", "data": 2})
        await node.api("publish", {"channel": "feed", "data": 3, "tags": {"source": "LSE"}})
        got = [sdk.value((await next_event(events.publications)).data) for _ in range(2)]
        assert got == [2, 3]


async def test_malformed_filter_is_refused_with_bad_request(protobuf: bool) -> None:
    async with run_node(FILTERS) as node, sdk_client(node, protobuf=protobuf) as sdk:
        bad = Filter.all()  # "and" without children
        _, events = await sdk.subscribe("feed", tags_filter=bad, wait=False)
        assert (await next_event(events.unsubscribed)).code == 107
        # The connection is fine: another subscription works.
        _, ok_events = await sdk.subscribe("other")
        await node.api("publish", {"channel": "other", "data": "still here"})
        assert sdk.value((await next_event(ok_events.publications)).data) == "still here"


async def test_unsubscribed_filtered_subscriber_gets_nothing_more(protobuf: bool) -> None:
    async with run_node(FILTERS) as node, sdk_client(node, protobuf=protobuf) as sdk:
        sub, events = await sdk.subscribe("feed", tags_filter=Filter.exists("k"))
        _, marker = await sdk.subscribe("marker")
        await sub.unsubscribe()
        await next_event(events.unsubscribed)
        await node.api("publish", {"channel": "feed", "data": 1, "tags": {"k": "v"}})
        await node.api("publish", {"channel": "marker", "data": "after"})
        await next_event(marker.publications)  # the feed publication was handled before
        assert events.publications.empty()


async def test_a_filter_needs_allow_tags_filter() -> None:
    import orjson

    async with run_node(base_config(client={"insecure": True})) as node:
        ws = await node.session.ws_connect(node.ws_url)
        tf = {"key": "kind", "cmp": "eq", "val": "a"}
        await ws.send_str('{"id":1,"connect":{}}\n' + orjson.dumps(
            {"id": 2, "subscribe": {"channel": "news", "tf": tf}}).decode())
        replies: dict[int, dict] = {}  # type: ignore[type-arg]
        while 2 not in replies:
            message = await ws.receive(timeout=5)
            for line in message.data.split("\n"):
                reply = orjson.loads(line)
                replies[reply.get("id", 0)] = reply
        assert replies[2]["error"]["code"] == 103
        await ws.close()
