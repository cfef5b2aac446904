"""The survey's state (broker.survey.SurveyTable and friends), without a loop or engine."""

from __future__ import annotations

import orjson
import pytest

from broker.survey import (
    MAX_REPLY_BYTES,
    OK,
    TOO_LARGE,
    UNKNOWN_OP,
    SurveyFailed,
    SurveyIncomplete,
    SurveyTable,
    TooManySurveys,
    channel_filter,
    reply_bytes,
    sum_counts,
)


def test_a_lone_node_completes_with_its_own_answer() -> None:
    table = SurveyTable("me")
    survey = table.open("channels", [])
    assert table.answer(survey.id, "me", OK, {"a": 1}) is survey
    assert survey.result() == {"me": {"a": 1}}


def test_completes_only_when_every_live_node_answered() -> None:
    table = SurveyTable("me")
    survey = table.open("channels", ["b", "c"])
    assert table.answer(survey.id, "me", OK, {"x": 1}) is None
    assert table.on_reply({"id": survey.id, "from": "b", "code": 0, "data": {"x": 2}}) is None
    assert survey.missing == {"c"}
    done = table.on_reply({"id": survey.id, "from": "c", "code": 0, "data": {"y": 5}})
    assert done is survey
    assert sum_counts(survey.result()) == {"x": 3, "y": 5}


def test_a_silent_node_makes_the_result_an_error_naming_it() -> None:
    table = SurveyTable("me")
    survey = table.open("channels", ["b", "dead"])
    table.answer(survey.id, "me", OK, {})
    table.answer(survey.id, "b", OK, {"x": 1})
    with pytest.raises(SurveyIncomplete) as caught:
        survey.result()
    assert caught.value.missing == ["dead"]


def test_a_non_zero_code_fails_the_survey() -> None:
    table = SurveyTable("me")
    survey = table.open("nope", ["b"])
    table.answer(survey.id, "me", UNKNOWN_OP, None)
    table.answer(survey.id, "b", OK, {})
    with pytest.raises(SurveyFailed) as caught:
        survey.result()
    assert (caught.value.node, caught.value.code) == ("me", UNKNOWN_OP)


def test_an_unknown_node_answering_is_merged_and_late_replies_are_dropped() -> None:
    table = SurveyTable("me")
    survey = table.open("channels", [])
    table.answer(survey.id, "newcomer", OK, {"x": 4})  # joined after the survey started
    table.answer(survey.id, "me", OK, {"x": 1})
    assert sum_counts(survey.result()) == {"x": 5}
    table.close(survey.id)
    assert table.answer(survey.id, "late", OK, {"x": 9}) is None
    assert table.pending == {}


@pytest.mark.parametrize("message", [
    {"id": "1", "from": "b", "code": 0}, {"id": 1, "from": "", "code": 0},
    {"id": 1, "from": "b"}, {"from": "b", "code": 0}])
def test_malformed_replies_are_dropped(message: dict) -> None:
    table = SurveyTable("me")
    survey = table.open("channels", ["b"])
    table.answer(survey.id, "me", OK, {})
    assert table.on_reply(message) is None
    assert survey.missing == {"b"}


def test_in_flight_surveys_are_bounded() -> None:
    table = SurveyTable("me", max_in_flight=2)
    first = table.open("channels", [])
    table.open("channels", [])
    with pytest.raises(TooManySurveys):
        table.open("channels", [])
    table.close(first.id)
    assert table.open("channels", []).id == 3  # ids never repeat


def test_answers_in_progress_are_bounded() -> None:
    table = SurveyTable("me", max_answering=1)
    assert table.start_answer()
    assert not table.start_answer()
    table.end_answer()
    assert table.start_answer()


def test_the_request_names_the_asker_and_the_reply_is_addressed_to_it() -> None:
    table = SurveyTable("me")
    survey = table.open("channels", ["b"])
    request = table.request(survey, {"pattern": "a*"})
    assert request == {"op": "survey", "from": "me", "id": survey.id, "survey": "channels",
                       "params": {"pattern": "a*"}}
    reply = orjson.loads(reply_bytes(request, "b", OK, {"ab": 2}))
    assert reply == {"op": "survey_reply", "node": "me", "from": "b", "id": survey.id,
                     "code": 0, "data": {"ab": 2}}


def test_a_reply_over_the_size_cap_carries_only_the_too_large_code() -> None:
    request = {"from": "me", "id": 7}
    huge = {f"channel-{i:07d}": 1 for i in range(MAX_REPLY_BYTES // 10)}
    encoded = reply_bytes(request, "b", OK, huge)
    assert len(encoded) < 200
    reply = orjson.loads(encoded)
    assert (reply["code"], reply["data"]) == (TOO_LARGE, None)


def test_sum_counts_refuses_a_malformed_answer() -> None:
    with pytest.raises(SurveyFailed):
        sum_counts({"b": ["x"]})
    with pytest.raises(SurveyFailed):
        sum_counts({"b": {"x": "1"}})


def test_channel_filter_combines_pattern_prefix_and_exact_name() -> None:
    names = ["news", "news:1", "chat:1", "pusher:1:a", "pusher:1:ab", "pusher:2:a"]
    wanted = channel_filter({})
    assert wanted is not None and [n for n in names if wanted(n)] == names
    wanted = channel_filter({"pattern": "*:1"})
    assert wanted is not None and [n for n in names if wanted(n)] == ["news:1", "chat:1"]
    wanted = channel_filter({"prefix": "pusher:1:"})
    assert wanted is not None and [n for n in names if wanted(n)] == ["pusher:1:a",
                                                                      "pusher:1:ab"]
    wanted = channel_filter({"channel": "pusher:1:a"})
    assert wanted is not None and [n for n in names if wanted(n)] == ["pusher:1:a"]
    assert channel_filter({"pattern": 3}) is None


def test_outcomes_are_counted() -> None:
    table = SurveyTable("me", max_in_flight=2, max_answering=0)
    done = table.open("channels", [])
    table.answer(done.id, "me", OK, {})
    assert table.finish(done) == {"me": {}}
    silent = table.open("channels", ["b"])
    table.answer(silent.id, "me", OK, {})
    with pytest.raises(SurveyIncomplete):
        table.finish(silent)
    failed = table.open("channels", [])
    table.answer(failed.id, "me", UNKNOWN_OP, None)
    with pytest.raises(SurveyFailed):
        table.finish(failed)
    table.open("channels", [])
    table.open("channels", [])
    with pytest.raises(TooManySurveys):
        table.open("channels", [])
    assert not table.start_answer()
    assert table.outcomes == {"complete": 1, "incomplete": 1, "failed": 1, "refused": 1,
                              "dropped": 1}
