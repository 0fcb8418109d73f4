"""Per-path RTT, jitter and loss from the controller's probes, and SLA verdicts over them.

ProbeTracker turns probe send and reply times into PathStats over a sliding window.
SlaJudge turns PathStats into a usable/unusable verdict per (class, path) with hysteresis,
(choice.py then orders each class's paths by them). Everything is a pure function of
the calls made and the `now` (seconds, monotonic) passed in: nothing here reads a clock.
"""
from __future__ import annotations

import itertools
import secrets
import statistics
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)  # a tunnel path, opaque here
K = TypeVar("K", bound=Hashable)  # what a verdict is about, e.g. (class, path)

SEQUENCE_MODULUS = 2**64  # the probe's sequence field is a u64


@dataclass(frozen=True)
class PathStats:
    """What the probes of one path showed over the window; None where nothing is known.

    samples counts the probes resolved in the window: replied, or unanswered past the
    timeout. Probes still in flight are in neither samples nor loss.
    """

    rtt_ms: float | None
    jitter_ms: float | None
    loss_pct: float | None
    samples: int
    last_reply_at: float | None


@dataclass
class _SentProbe:
    sent_at: float
    rtt_ms: float | None = None


@dataclass
class _PathRecord:
    next_sequence: int = 0
    last_reply_at: float | None = None
    # In send order, which is time order because `now` only grows: eviction pops the front.
    probes: OrderedDict[int, _SentProbe] = field(default_factory=OrderedDict)


class ProbeTracker(Generic[P]):
    """Probes in flight and answered, per path, over the last window_s seconds.

    A probe unanswered timeout_s after it was sent is lost, and a reply after that is
    ignored (it would otherwise turn a loss back into a very slow success). Memory per
    path is bounded by the probes sent in one window.
    """

    def __init__(self, window_s: float = 5.0, timeout_s: float = 1.0,
                 first_sequence: Callable[[], int] = lambda: secrets.randbits(64)) -> None:
        """first_sequence: where a path's sequence numbers start. Random by default: a box
        sees only its own paths' probes, so it cannot forge a reply for another path."""
        if not 0 < timeout_s < window_s:
            raise ValueError(f"need 0 < timeout_s ({timeout_s}) < window_s ({window_s})")
        self.window_s = window_s
        self.timeout_s = timeout_s
        self.first_sequence = first_sequence
        self._paths: dict[P, _PathRecord] = {}

    def next_sequence(self, path: P) -> int:
        record = self._record(path)
        sequence = record.next_sequence
        record.next_sequence = (sequence + 1) % SEQUENCE_MODULUS
        return sequence

    def sent(self, path: P, sequence: int, now: float) -> None:
        record = self._record(path)
        self._forget_old(record, now)
        if sequence not in record.probes:  # a resend must not restart the clock
            record.probes[sequence] = _SentProbe(sent_at=now)

    def received(self, path: P, sequence: int, now: float) -> float | None:
        """The probe's RTT in ms, or None if the reply is unknown, a duplicate or late."""
        record = self._paths.get(path)
        if record is None:
            return None
        self._forget_old(record, now)
        probe = record.probes.get(sequence)
        if probe is None or probe.rtt_ms is not None:
            return None
        elapsed = now - probe.sent_at
        if not 0 <= elapsed <= self.timeout_s:
            return None
        probe.rtt_ms = elapsed * 1000.0
        record.last_reply_at = now
        return probe.rtt_ms

    def stats(self, path: P, now: float) -> PathStats:
        record = self._paths.get(path)
        if record is None:
            return PathStats(rtt_ms=None, jitter_ms=None, loss_pct=None, samples=0, last_reply_at=None)
        self._forget_old(record, now)
        probes = list(record.probes.values())
        rtts = [p.rtt_ms for p in probes if p.rtt_ms is not None]
        timed_out = [p for p in probes if now - p.sent_at > self.timeout_s]
        lost = sum(1 for p in timed_out if p.rtt_ms is None)
        return PathStats(
            # Median, not mean or EWMA: one reply delayed by the controller's own scheduling
            # must not move the estimate a class is judged on.
            rtt_ms=statistics.median(rtts) if rtts else None,
            jitter_ms=_mean_consecutive_difference(rtts),
            loss_pct=100.0 * lost / len(timed_out) if timed_out else None,
            samples=len(rtts) + lost,
            last_reply_at=record.last_reply_at,
        )

    def forget(self, path: P) -> None:
        """Drop a path that is no longer probed (its record would otherwise stay)."""
        self._paths.pop(path, None)

    def tracked_probes(self, path: P) -> int:
        """How many probes of the path are remembered (for tests and diagnostics)."""
        record = self._paths.get(path)
        return len(record.probes) if record else 0

    def _record(self, path: P) -> _PathRecord:
        record = self._paths.get(path)
        if record is None:
            record = self._paths[path] = _PathRecord(next_sequence=self.first_sequence() % SEQUENCE_MODULUS)
        return record

    def _forget_old(self, record: _PathRecord, now: float) -> None:
        horizon = now - self.window_s
        while record.probes:
            oldest = next(iter(record.probes.values()))
            if oldest.sent_at >= horizon:
                return
            record.probes.popitem(last=False)


def _mean_consecutive_difference(rtts: Sequence[float]) -> float | None:
    """Jitter as the mean |RTT(i) - RTT(i-1)| over replies in send order (RFC 3393's IPDV,
    unsmoothed: the window already does the smoothing)."""
    if len(rtts) < 2:
        return None
    return statistics.fmean(abs(b - a) for a, b in itertools.pairwise(rtts))


@dataclass(frozen=True)
class SlaThresholds:
    """A class's SLA; None means the class does not care about that metric."""

    max_rtt_ms: float | None = None
    max_loss_pct: float | None = None
    max_jitter_ms: float | None = None
    # To become usable again a path must beat every threshold lowered by this much...
    hysteresis_pct: float = 20.0
    # ...continuously for this long.
    recover_s: float = 10.0

    def limits(self) -> tuple[tuple[str, float], ...]:
        named = (("rtt_ms", self.max_rtt_ms), ("loss_pct", self.max_loss_pct),
                 ("jitter_ms", self.max_jitter_ms))
        return tuple((name, limit) for name, limit in named if limit is not None)


@dataclass(frozen=True)
class VerdictChange(Generic[K]):
    key: K
    usable: bool
    at: float
    reason: str
    stats: PathStats


@dataclass
class _Verdict:
    usable: bool = True
    good_since: float | None = None  # while unusable: since when stats have been clearly good


class SlaJudge(Generic[K]):
    """Usable or not, per key (typically (class, path)), with hysteresis.

    A key is usable until its stats break a threshold, judged only once at least
    min_samples probes are resolved in the window (too little data gives no verdict,
    so the last verdict stands). A path that has not answered for silence_s (set it to
    the tracker's timeout_s) is unusable whatever the thresholds. An unusable key becomes
    usable again once its stats beat every threshold lowered by hysteresis_pct,
    continuously for recover_s; any update that is not clearly good restarts that wait.

    Flips are both visible in update's return value and queued as VerdictChange events
    (with a reason, for the log): read them with pop_changes().
    """

    def __init__(self, min_samples: int = 10, silence_s: float = 1.0) -> None:
        self.min_samples = min_samples
        self.silence_s = silence_s
        self._verdicts: dict[K, _Verdict] = {}
        self._changes: list[VerdictChange[K]] = []

    def update(self, key: K, stats: PathStats, thresholds: SlaThresholds, now: float) -> bool:
        """Whether the key is usable after these stats (True for keys never judged)."""
        verdict = self._verdicts.setdefault(key, _Verdict())
        if stats.samples < self.min_samples:
            verdict.good_since = None  # recovery needs evidence, not an absence of it
            return verdict.usable
        if verdict.usable:
            self._judge_usable(key, verdict, stats, thresholds, now)
        else:
            self._judge_unusable(key, verdict, stats, thresholds, now)
        return verdict.usable

    def usable(self, key: K) -> bool:
        verdict = self._verdicts.get(key)
        return verdict.usable if verdict else True

    def pop_changes(self) -> list[VerdictChange[K]]:
        """The verdict flips since the last call, oldest first."""
        changes, self._changes = self._changes, []
        return changes

    def forget(self, key: K) -> None:
        self._verdicts.pop(key, None)

    def _judge_usable(self, key: K, verdict: _Verdict, stats: PathStats,
                      thresholds: SlaThresholds, now: float) -> None:
        problem = self._silence(stats, now) or _broken_threshold(stats, thresholds)
        if problem:
            verdict.usable, verdict.good_since = False, None
            self._changes.append(VerdictChange(key, False, now, problem, stats))

    def _judge_unusable(self, key: K, verdict: _Verdict, stats: PathStats,
                        thresholds: SlaThresholds, now: float) -> None:
        if self._silence(stats, now) or not _clearly_good(stats, thresholds):
            verdict.good_since = None
            return
        if verdict.good_since is None:
            verdict.good_since = now
        if now - verdict.good_since >= thresholds.recover_s:
            verdict.usable, verdict.good_since = True, None
            reason = (f"within thresholds less {thresholds.hysteresis_pct:g}% "
                      f"for {thresholds.recover_s:g} s")
            self._changes.append(VerdictChange(key, True, now, reason, stats))

    def _silence(self, stats: PathStats, now: float) -> str | None:
        if stats.last_reply_at is None:
            return "no reply yet"
        quiet = now - stats.last_reply_at
        return f"no reply for {quiet:.1f} s" if quiet > self.silence_s else None


def _broken_threshold(stats: PathStats, thresholds: SlaThresholds) -> str | None:
    for name, limit in thresholds.limits():
        value = getattr(stats, name)
        if value is not None and value > limit:
            return f"{name} {value:.1f} > {limit:g}"
    return None


def _clearly_good(stats: PathStats, thresholds: SlaThresholds) -> bool:
    """Every judged metric is known and below its threshold lowered by the hysteresis."""
    factor = 1.0 - thresholds.hysteresis_pct / 100.0
    for name, limit in thresholds.limits():
        value = getattr(stats, name)
        bound = limit * factor
        # A zero bound can only be met, not beaten: "< 0" would never recover.
        if value is None or not (value < bound or (bound <= 0 and value <= bound)):
            return False
    return True
