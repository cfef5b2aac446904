"""Surveys: ask every live node a question over the engine's control channel and merge the
answers, as Centrifugo's ``Node.Survey`` does (its ``channels`` API is one).

A survey is a ``survey`` control message (``from``, ``id``, ``survey`` op, ``params``)
sent to every node; each node answers with a ``survey_reply`` addressed to the requester
(``node``: its uid; every node receives it, only the requester keeps it). The requester
answers itself locally, without the engine, and waits until every node its
``NodeDirectory`` knows as alive has answered, or ``SURVEY_TIMEOUT``. Alone (the memory
engine, or no other node heard from) it publishes nothing and returns its own answer at
once.

Missing answers: Centrifugo's semantics, an error, never a partial result. A survey that
times out raises ``SurveyIncomplete`` naming the silent nodes (Centrifugo's ``Survey``
returns the context's deadline error and its ``channels`` API answers "internal server
error"). A node that died stays in the directory until ``NODE_TTL`` has passed since its
last heartbeat; until then surveys fail after ``SURVEY_TIMEOUT``, then they answer
without it. A reply with a non-zero code (unknown op, bad params, too large) raises
``SurveyFailed``. Replies from a node the directory did not know yet are merged too.

Bounds: at most ``MAX_IN_FLIGHT`` surveys of this node wait at once (``TooManySurveys``
beyond); at most ``MAX_ANSWERING`` answers to other nodes are in progress at once (more
requests are dropped: the requester times out, control messages are at most once
anyway); a reply over ``MAX_REPLY_BYTES`` is replaced by a ``TOO_LARGE`` code, because
every node's Redis pub/sub connection receives every reply (Redis drops a subscriber
whose output buffer passes 8 MB for a minute or 32 MB at once, by default).

``SurveyTable`` holds the logic (pending surveys, completion, results, bounds) and is
tested without a loop; ``Surveys`` is the wiring (engine, futures, the local answer).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from broker.shard.messages import ChannelSummary

if TYPE_CHECKING:
    from broker.node import Node

__all__ = ["MAX_ANSWERING", "MAX_IN_FLIGHT", "MAX_REPLY_BYTES", "SURVEY_TIMEOUT",
           "PendingSurvey", "SurveyError", "SurveyFailed", "SurveyIncomplete", "SurveyTable",
           "Surveys", "TooManySurveys", "channel_filter", "sum_counts"]

log = logging.getLogger("chorus.survey")

SURVEY_TIMEOUT = 2.0  # seconds; a Redis round trip is a millisecond, a busy node more
MAX_IN_FLIGHT = 16
MAX_ANSWERING = 32
MAX_REPLY_BYTES = 2 << 20

# Reply codes, Centrifugo's survey codes where they exist.
OK, FAILED, INVALID, UNKNOWN_OP, TOO_LARGE = 0, 1, 2, 3, 4


class SurveyError(Exception):
    """A survey gave no usable result (the caller may retry)."""


class TooManySurveys(SurveyError):
    """``MAX_IN_FLIGHT`` surveys of this node are waiting already."""


class SurveyIncomplete(SurveyError):
    def __init__(self, missing: Iterable[str]) -> None:
        self.missing = sorted(missing)
        super().__init__(f"no answer in time from node(s) {', '.join(self.missing)}")


class SurveyFailed(SurveyError):
    def __init__(self, node: str, code: int) -> None:
        self.node, self.code = node, code
        super().__init__(f"node {node} answered the survey with code {code}")


@dataclass
class PendingSurvey:
    """One survey of this node: who must answer, who did."""

    id: int
    op: str
    expected: frozenset[str]
    replies: dict[str, tuple[int, Any]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.expected <= self.replies.keys()

    @property
    def missing(self) -> set[str]:
        return set(self.expected - self.replies.keys())

    def result(self) -> dict[str, Any]:
        """Each node's answer by uid. Raises SurveyFailed for a non-zero code, else
        SurveyIncomplete if an expected node has not answered."""
        for node, (code, _) in sorted(self.replies.items()):
            if code != OK:
                raise SurveyFailed(node, code)
        if not self.complete:
            raise SurveyIncomplete(self.missing)
        return {node: data for node, (_, data) in self.replies.items()}


class SurveyTable:
    """Per node, pure: its pending surveys and its answers in progress."""

    def __init__(self, uid: str, *, max_in_flight: int = MAX_IN_FLIGHT,
                 max_answering: int = MAX_ANSWERING) -> None:
        self.uid = uid
        self.max_in_flight, self.max_answering = max_in_flight, max_answering
        self.pending: dict[int, PendingSurvey] = {}
        self.answering = 0
        # complete / incomplete / failed / refused surveys; answered / dropped requests
        self.outcomes: Counter[str] = Counter()
        self._last_id = 0

    def open(self, op: str, others: Iterable[str]) -> PendingSurvey:
        """A new survey expecting this node and ``others`` (the live nodes).

        Raises TooManySurveys when ``max_in_flight`` are pending."""
        if len(self.pending) >= self.max_in_flight:
            self.outcomes["refused"] += 1
            raise TooManySurveys(f"{len(self.pending)} surveys in flight")
        self._last_id += 1
        survey = PendingSurvey(self._last_id, op, frozenset({self.uid, *others}))
        self.pending[survey.id] = survey
        return survey

    def request(self, survey: PendingSurvey, params: Mapping[str, Any]) -> dict[str, Any]:
        """The control message asking every other node."""
        return {"op": "survey", "from": self.uid, "id": survey.id, "survey": survey.op,
                "params": dict(params)}

    def answer(self, survey_id: int, node: str, code: int, data: Any) -> PendingSurvey | None:
        """Record ``node``'s answer; the survey if it is complete now (None if it is not, or
        no longer pending: a late reply is dropped)."""
        survey = self.pending.get(survey_id)
        if survey is None:
            return None
        survey.replies[node] = (code, data)
        return survey if survey.complete else None

    def on_reply(self, message: Mapping[str, Any]) -> PendingSurvey | None:
        """``answer`` for a ``survey_reply`` control message; malformed ones are dropped."""
        survey_id, node, code = message.get("id"), message.get("from"), message.get("code")
        if not isinstance(survey_id, int) or not isinstance(node, str) or not node \
                or not isinstance(code, int):
            return None
        return self.answer(survey_id, node, code, message.get("data"))

    def close(self, survey_id: int) -> None:
        self.pending.pop(survey_id, None)

    def finish(self, survey: PendingSurvey) -> dict[str, Any]:
        """Close ``survey`` and return ``survey.result()``, counting the outcome."""
        self.close(survey.id)
        try:
            result = survey.result()
        except SurveyFailed:
            self.outcomes["failed"] += 1
            raise
        except SurveyIncomplete:
            self.outcomes["incomplete"] += 1
            raise
        self.outcomes["complete"] += 1
        return result

    def start_answer(self) -> bool:
        """Whether this node may answer one more request now (call ``end_answer`` after)."""
        if self.answering >= self.max_answering:
            self.outcomes["dropped"] += 1
            return False
        self.answering += 1
        self.outcomes["answered"] += 1
        return True

    def end_answer(self) -> None:
        self.answering -= 1


def reply_bytes(request: Mapping[str, Any], uid: str, code: int, data: Any) -> bytes:
    """The ``survey_reply`` control message to the requester of ``request``; its data is
    replaced by the ``TOO_LARGE`` code when it passes ``MAX_REPLY_BYTES``."""
    fields = {"op": "survey_reply", "node": request["from"], "from": uid, "id": request["id"]}
    encoded = orjson.dumps({**fields, "code": code, "data": data})
    if len(encoded) > MAX_REPLY_BYTES:
        encoded = orjson.dumps({**fields, "code": TOO_LARGE, "data": None})
    return encoded


def sum_counts(results: Mapping[str, Any]) -> dict[str, int]:
    """Merge per-node ``{channel: subscribers}`` answers, summing each channel's counts.

    Raises SurveyFailed for an answer that is not such a mapping."""
    total: dict[str, int] = {}
    for node, counts in results.items():
        if not isinstance(counts, dict):
            raise SurveyFailed(node, INVALID)
        for name, count in counts.items():
            if not isinstance(count, int):
                raise SurveyFailed(node, INVALID)
            total[name] = total.get(name, 0) + count
    return total


def channel_filter(params: Mapping[str, Any]) -> Callable[[str], bool] | None:
    """The channels a ``channels`` survey asks for: all of ``pattern`` (glob), ``prefix``
    and ``channel`` (exact name) that are given; None if one is not a string."""
    pattern, prefix, exact = (params.get(k, "") for k in ("pattern", "prefix", "channel"))
    if not all(isinstance(v, str) for v in (pattern, prefix, exact)):
        return None
    return lambda name: ((not exact or name == exact) and name.startswith(prefix)
                         and (not pattern or fnmatch.fnmatchcase(name, pattern)))


async def _answer_channels(node: Node, params: Mapping[str, Any]) -> tuple[int, Any]:
    """This node's channels with their subscriber counts, from the shards that own them."""
    wanted = channel_filter(params)
    if wanted is None:
        return INVALID, None
    found: dict[str, int] = {}
    for shard_id in node.shard_ids:
        summary = await node.runtime.ask(shard_id, ChannelSummary(), timeout=SURVEY_TIMEOUT)
        found.update((name, n) for name, n in summary.items() if n and wanted(name))
    return OK, found


Answer = Callable[["Node", Mapping[str, Any]], Awaitable[tuple[int, Any]]]
ANSWERS: dict[str, Answer] = {"channels": _answer_channels}


async def _answer(node: Node, op: str, params: Any) -> tuple[int, Any]:
    handler = ANSWERS.get(op)
    if handler is None:
        return UNKNOWN_OP, None
    if not isinstance(params, dict):
        return INVALID, None
    try:
        return await handler(node, params)
    except Exception as error:  # a shard restarting, say: this node's answer fails
        log.warning("survey %s: this node's answer failed: %r", op, error)
        return FAILED, None


class Surveys:
    """The node's surveys: run one (``run``, ``channel_counts``) and answer the others'.

    Error handling: ``run`` raises TooManySurveys, SurveyIncomplete (timeout, or the
    request could not be sent) or SurveyFailed, as the module docstring says; it never
    waits longer than its ``timeout``. Answering never raises: a failure is logged.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.table = SurveyTable(node.uid)
        self._waiters: dict[int, asyncio.Future[None]] = {}

    async def run(self, op: str, params: Mapping[str, Any], *,
                  timeout: float = SURVEY_TIMEOUT) -> dict[str, Any]:
        node = self.node
        others = [uid for info in node.directory.alive(time.time())
                  if isinstance(uid := info.get("uid"), str) and uid != node.uid]
        survey = self.table.open(op, others)
        waiter = self._waiters[survey.id] = node.runtime.loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                if others:
                    request = self.table.request(survey, params)
                    await node.engine.publish_control(orjson.dumps(request))
                code, data = await _answer(node, op, params)
                if self.table.answer(survey.id, node.uid, code, data) is None:
                    await waiter
        except TimeoutError:
            pass  # result() names the nodes that did not answer
        except Exception as error:  # the engine could not send the request
            log.warning("survey %s not sent: %r", op, error)
        finally:
            self._waiters.pop(survey.id, None)
            self.table.close(survey.id)  # cancelled, say: no longer pending either way
        return self.table.finish(survey)

    async def channel_counts(self, params: Mapping[str, Any], *,
                             timeout: float = SURVEY_TIMEOUT) -> dict[str, int]:
        """Channels matching ``params`` (see ``channel_filter``) in the whole cluster, with
        their subscribers summed over the nodes."""
        return sum_counts(await self.run("channels", params, timeout=timeout))

    def on_reply(self, message: Mapping[str, Any]) -> None:
        survey = self.table.on_reply(message)
        waiter = self._waiters.get(survey.id) if survey is not None else None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_request(self, message: Mapping[str, Any]) -> None:
        """Answer another node's survey (dropped if malformed or over ``MAX_ANSWERING``)."""
        if not isinstance(message.get("from"), str) or not isinstance(message.get("id"), int) \
                or message["from"] == self.node.uid:
            return
        if not self.table.start_answer():
            log.warning("survey request dropped: %d answers in progress", self.table.answering)
            return
        self.node.spawn(self._send_answer(message))

    async def _send_answer(self, message: Mapping[str, Any]) -> None:
        try:
            code, data = await _answer(self.node, str(message.get("survey")),
                                       message.get("params"))
            await self.node.engine.publish_control(
                reply_bytes(message, self.node.uid, code, data))
        finally:
            self.table.end_answer()
