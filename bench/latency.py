"""Delivery accounting for the load generator: a latency histogram and per-seq counts.

Pure classes, no I/O, cheap enough to call once per delivery on the client hot path.

`LatencyHistogram` is log-linear (HDR-style): exact below 1,024 µs, then 512 sub-buckets
per power of two, so every recorded value is reported within 0.2 % of its true value.
It merges across worker processes by adding bucket counts (plain lists, picklable).

`DeliveryLedger` counts deliveries per publication seq inside the measured window
[base, base + count); anything outside (late warm-up deliveries) is counted as stray,
never as a measured delivery.
"""

from __future__ import annotations

from dataclasses import dataclass

_SUB_BITS = 9  # 512 sub-buckets per power of two above the exact range
_EXACT = 1 << (_SUB_BITS + 1)  # values below this (1,024 µs) get their own bucket


def bucket_of(us: int) -> int:
    """The bucket index for a latency of `us` microseconds (negative clamps to 0)."""
    if us < _EXACT:
        return us if us > 0 else 0
    shift = us.bit_length() - _SUB_BITS - 1
    return (shift << _SUB_BITS) + (us >> shift)


def value_of(bucket: int) -> int:
    """The lowest latency (µs) that falls in `bucket` (inverse of `bucket_of`)."""
    if bucket < _EXACT:
        return bucket
    shift = (bucket >> _SUB_BITS) - 1
    mantissa = bucket - (shift << _SUB_BITS)
    return mantissa << shift


class LatencyHistogram:
    """Counts of latencies in log-linear buckets; grows on demand."""

    __slots__ = ("counts", "max_us", "total")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * (_EXACT * 2)
        self.total = 0
        self.max_us = 0

    def record(self, us: int) -> None:
        """Add one observation of `us` microseconds."""
        b = bucket_of(us)
        counts = self.counts
        if b >= len(counts):
            counts.extend([0] * (b + 1 - len(counts)))
        counts[b] += 1
        self.total += 1
        if us > self.max_us:
            self.max_us = us

    def merge(self, other: LatencyHistogram) -> None:
        """Add `other`'s observations to this histogram."""
        if len(other.counts) > len(self.counts):
            self.counts.extend([0] * (len(other.counts) - len(self.counts)))
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        self.total += other.total
        self.max_us = max(self.max_us, other.max_us)

    def percentile(self, q: float) -> float:
        """The latency (µs) at quantile `q` in [0, 1]; 0.0 when empty."""
        if self.total == 0:
            return 0.0
        rank = max(1, int(q * self.total + 0.999999))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return float(min(value_of(i), self.max_us))
        return float(self.max_us)

    def summary_ms(self) -> dict[str, float]:
        """p50/p90/p99/p999/max in milliseconds, rounded to the microsecond."""
        out = {
            f"p{name}_ms": round(self.percentile(q) / 1000.0, 3)
            for name, q in (("50", 0.5), ("90", 0.9), ("99", 0.99), ("999", 0.999))
        }
        out["max_ms"] = round(self.max_us / 1000.0, 3)
        return out

    def to_state(self) -> tuple[list[int], int, int]:
        """A picklable snapshot: (counts, total, max_us)."""
        return (list(self.counts), self.total, self.max_us)

    @classmethod
    def from_state(cls, state: tuple[list[int], int, int]) -> LatencyHistogram:
        """Rebuild from `to_state()` output."""
        h = cls()
        h.counts, h.total, h.max_us = list(state[0]), state[1], state[2]
        return h


@dataclass
class LossReport:
    """Loss and duplication over a measured window, given `subscribers` per seq."""

    expected: int
    received: int
    lost: int
    duplicates: int
    seqs_with_loss: int


class DeliveryLedger:
    """Per-seq delivery counts for the measured window [base, base + count)."""

    __slots__ = ("base", "count", "counts", "received", "stray")

    def __init__(self, base: int = 0, count: int = 0) -> None:
        self.base = base
        self.count = count
        self.counts = [0] * count
        self.received = 0
        self.stray = 0

    def record(self, seq: int) -> bool:
        """Count one delivery of `seq`; False (and counted as stray) outside the window."""
        i = seq - self.base
        if 0 <= i < self.count:
            self.counts[i] += 1
            self.received += 1
            return True
        self.stray += 1
        return False

    def merge(self, other: DeliveryLedger) -> None:
        """Add `other`'s counts (same window) to this ledger."""
        if (other.base, other.count) != (self.base, self.count):
            raise ValueError("ledgers cover different windows")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.received += other.received
        self.stray += other.stray

    def loss(self, subscribers: int) -> LossReport:
        """Compare counts with `subscribers` deliveries expected for every seq."""
        lost = dup = bad = 0
        for c in self.counts:
            if c < subscribers:
                lost += subscribers - c
                bad += 1
            elif c > subscribers:
                dup += c - subscribers
        return LossReport(
            expected=subscribers * self.count,
            received=self.received,
            lost=lost,
            duplicates=dup,
            seqs_with_loss=bad,
        )
