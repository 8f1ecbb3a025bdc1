"""Timing on a shared machine: interleaved rounds, medians, paired per-round ratios and a noise band.

A chapter that compares speeds must not let the machine's mood decide: another program that wakes up for ten
seconds slows whatever runs in those ten seconds. So every measurement here is made the same way:

* :func:`interleaved` times the contenders **in turns** (A B C, then B C A, then C A B, ...): a slow spell hits
  all of them alike, and each one runs in every position of a round equally often;
* a comparison is the **per-round ratio** (A's time over B's in the same round, seconds apart, under the same
  load) summarised by its median and range (:func:`paired_ratio`), not a ratio of two medians taken minutes apart;
* a **noise band** (:func:`noise_band`) is measured, not assumed: time two contenders that do identical work (the
  same model twice, a pruned copy whose zeros are multiplied like any number); their ratio should be 1, and how
  far from 1 it lands is the smallest difference this run can resolve. A ratio inside the band is "no
  measurable difference", whatever its digits say.

    times = interleaved({"fused": f, "serial": g, "fused again": f}, rounds=9)
    r = paired_ratio(times, "serial", "fused")          # Spread(median=1.18, low=1.02, high=1.31)
    band = noise_band(times, [("fused again", "fused")])
    band.verdict(r.median)                                # '1.18x (slower)' or '1.03x (within noise)'
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

__all__ = ["NoiseBand", "Spread", "Stopwatch", "interleaved", "medians", "noise_band", "paired_ratio", "rates"]

K = TypeVar("K", bound=Hashable)


def interleaved(
    fns: Mapping[K, Callable[[], object]],
    rounds: int = 5,
    *,
    warmup: int = 1,
    number: int = 1,
    device: str | torch.device | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[K, list[float]]:
    """Seconds per call of each function, timed in turns, one list entry per round.

    Round ``r`` calls the functions in their order rotated by ``r`` (A B C, B C A, C A B, ...), so a busy spell
    of the machine hits all of them alike and none always runs first (after a pause) or last.

    Args:
        fns: name -> a function of no arguments (bind arguments with a lambda or ``functools.partial``).
        rounds: timed rounds; every list in the result has this length, entry ``r`` from round ``r``.
        warmup: untimed rounds first (first calls allocate, compile and fill caches).
        number: calls per turn; the entry is their mean (for functions too quick to time one call at a time).
        device: a CUDA device is synchronised before the clock starts and before it stops (kernels run
            asynchronously: without it the clock would time the launch, not the work).
        clock: seconds as a float (tests pass a fake one).

    Returns:
        ``{name: [seconds per call in round 0, round 1, ...]}``, in the order of ``fns``.
    """
    if rounds < 1 or number < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, number >= 1 and warmup >= 0; got {rounds}, {number}, {warmup}")
    cuda = device is not None and torch.device(device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[K, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            fn = fns[name]
            sync()
            start = clock()
            for _ in range(number):
                fn()
            sync()
            times[name].append((clock() - start) / number)
    return times


@dataclass(frozen=True)
class Spread:
    """The median of repeated measurements and their range (``low`` .. ``high``)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        """The median, smallest and largest of ``values`` (at least one)."""
        values = list(values)
        if not values:
            raise ValueError("a spread needs at least one value: time at least one round")
        return cls(statistics.median(values), min(values), max(values))

    def __str__(self) -> str:
        return f"{self.median:.3g} ({self.low:.3g} .. {self.high:.3g})"


def medians(times: Mapping[K, Sequence[float]]) -> dict[K, float]:
    """The median seconds of each contender of :func:`interleaved`."""
    return {name: statistics.median(ts) for name, ts in times.items()}


def rates(seconds: Sequence[float], work: float) -> Spread:
    """Work per second of repeated timings of the same ``work`` (e.g. tokens): median, slowest, fastest."""
    return Spread.of(work / s for s in seconds)


def paired_ratio(times: Mapping[K, Sequence[float]], a: K, b: K) -> Spread:
    """``a``'s time over ``b``'s, round by round: above 1, ``a`` took longer (``b`` is that many times faster).

    Each ratio compares two timings made seconds apart in the same round, under the same load; the median of
    these per-round ratios is the comparison to report, their range shows how much the rounds disagreed.
    """
    ta, tb = times[a], times[b]
    if len(ta) != len(tb):
        raise ValueError(f"{a!r} and {b!r} were timed in different rounds ({len(ta)} vs {len(tb)}): time them together")
    return Spread.of(x / y for x, y in zip(ta, tb, strict=True))


@dataclass(frozen=True)
class NoiseBand:
    """The ratios this run cannot tell from 1: ``1 / factor`` .. ``factor`` (``factor >= 1``)."""

    factor: float

    @property
    def low(self) -> float:
        return 1 / self.factor

    @property
    def high(self) -> float:
        return self.factor

    def contains(self, ratio: float) -> bool:
        """True when ``ratio`` is no evidence of a difference."""
        return self.low <= ratio <= self.high

    def verdict(self, ratio: float, above: str = "slower", below: str = "faster") -> str:
        """``ratio`` with its reading: ``above`` past the band's top, ``below`` under its bottom, else within noise.

        The default words fit a time ratio (:func:`paired_ratio`: above 1 is slower); for a speed ratio pass
        ``above="faster", below="slower"``.
        """
        word = above if ratio > self.high else below if ratio < self.low else "within noise"
        return f"{ratio:.2f}x ({word})"

    def __str__(self) -> str:
        return f"{self.low:.2f}x .. {self.high:.2f}x"


def noise_band(times: Mapping[K, Sequence[float]], same_work: Iterable[tuple[K, K]]) -> NoiseBand:
    """The noise band of a run: how far from 1 the median per-round ratio of identical work landed.

    Args:
        times: what :func:`interleaved` returned.
        same_work: pairs of contenders that do exactly the same arithmetic (timed in the same rounds); their true
            ratio is 1. The band is the widest of their medians, either side of 1: ``exp(max |log ratio|)``.
    """
    logs = [abs(math.log(paired_ratio(times, a, b).median)) for a, b in same_work]
    if not logs:
        raise ValueError("a noise band needs at least one pair of contenders doing identical work")
    return NoiseBand(math.exp(max(logs)))


class Stopwatch:
    """Wall-clock seconds of a block, for a chapter's "these runs took N s": ``with Stopwatch() as sw: ...``, then
    ``sw.seconds`` (or ``f"{sw}"``, which reads ``"12 s"``). Read inside the block, it gives the time so far."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock, self._start, self._stop = clock, None, None

    def __enter__(self) -> Stopwatch:
        self._start, self._stop = self._clock(), None
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = self._clock()

    @property
    def seconds(self) -> float:
        if self._start is None:
            raise RuntimeError("a Stopwatch measures the block of a `with Stopwatch() as sw:`; it was never entered")
        return (self._clock() if self._stop is None else self._stop) - self._start

    def __str__(self) -> str:
        return f"{self.seconds:.0f} s"
