"""Latency histogram, delivery ledger and payload sizing of the bench harness."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.latency import DeliveryLedger, LatencyHistogram, bucket_of, value_of
from bench.publisher import make_payload
from bench.servers import ADAPTERS, make_adapter


@given(st.integers(0, 10**10))
def test_bucket_value_is_within_0_2_percent_below(us: int) -> None:
    low = value_of(bucket_of(us))
    assert low <= us
    assert us - low <= us * 0.002  # exact below 1,024 µs, 512 sub-buckets above


def test_percentiles_of_known_values() -> None:
    h = LatencyHistogram()
    for us in range(1, 1001):
        h.record(us)
    assert h.percentile(0.5) == 500
    assert h.percentile(0.99) == 990
    assert h.summary_ms()["max_ms"] == 1.0


def test_merge_adds_counts_and_keeps_max() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    a.record(10)
    b.record(5_000_000)
    a.merge(LatencyHistogram.from_state(b.to_state()))
    assert a.total == 2 and a.max_us == 5_000_000
    assert a.percentile(1.0) == pytest.approx(5_000_000, rel=0.002)


def test_ledger_counts_loss_duplicates_and_strays() -> None:
    ledger = DeliveryLedger(base=10, count=3)
    for seq in (10, 10, 11, 11, 11, 12, 9, 13):
        ledger.record(seq)
    report = ledger.loss(subscribers=2)
    assert (report.received, report.lost, report.duplicates) == (6, 1, 1)
    assert report.seqs_with_loss == 1 and ledger.stray == 2


@pytest.mark.parametrize("server", list(ADAPTERS))
@pytest.mark.parametrize("seq", [0, 7, 123456])
def test_delivered_frame_payload_is_the_requested_size(server: str, seq: int) -> None:
    adapter = make_adapter(server)
    payload = make_payload(seq, 100, adapter.frame_overhead)
    assert len(payload) + adapter.frame_overhead == 100
    assert payload.startswith(b'{"t":') and b'"s":%d,' % seq in payload
