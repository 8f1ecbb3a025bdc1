"""palmbook.book.timing: interleaved rounds, per-round ratios and the noise band, checked with a fake clock."""

from __future__ import annotations

import math

import pytest

from palmbook.book import NoiseBand, Spread, interleaved, medians, noise_band, paired_ratio, rates


class FakeClock:
    """A clock that only moves when a timed function says how long it took."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def work(self, name: str, durations: list[float]):
        """A function that takes durations[i] seconds on its i-th call (warm-up calls included)."""
        it = iter(durations)

        def fn() -> None:
            self.calls.append(name)
            self.now += next(it)

        return fn


def test_each_round_calls_every_function_once_in_rotated_order_after_the_warmup():
    clock = FakeClock()
    fns = {k: clock.work(k, [1.0] * 4) for k in "abc"}
    interleaved(fns, rounds=3, warmup=1, clock=clock)
    assert clock.calls == list("abc" + "abc" + "bca" + "cab")


def test_entries_are_the_seconds_of_each_round_in_order_and_warmup_is_not_recorded():
    clock = FakeClock()
    fns = {"a": clock.work("a", [100.0, 1.0, 2.0, 3.0]), "b": clock.work("b", [100.0, 10.0, 20.0, 30.0])}
    times = interleaved(fns, rounds=3, warmup=1, clock=clock)
    assert times == {"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0, 30.0]}


def test_number_calls_per_turn_and_records_their_mean():
    clock = FakeClock()
    times = interleaved({"a": clock.work("a", [1.0, 3.0, 5.0, 7.0])}, rounds=2, warmup=0, number=2, clock=clock)
    assert times == {"a": [2.0, 6.0]}


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="rounds >= 1"):
        interleaved({"a": lambda: None}, rounds=0)


def test_real_clock_measures_something_positive():
    times = interleaved({"a": lambda: sum(range(1000))}, rounds=2)
    assert len(times["a"]) == 2 and all(t > 0 for t in times["a"])


def test_paired_ratio_is_the_median_and_range_of_per_round_ratios_not_a_ratio_of_medians():
    times = {"a": [2.0, 9.0, 4.0], "b": [1.0, 3.0, 8.0]}  # per round: 2, 3, 0.5
    assert paired_ratio(times, "a", "b") == Spread(median=2.0, low=0.5, high=3.0)
    m = medians(times)
    assert m["a"] / m["b"] == pytest.approx(4 / 3)  # the ratio of medians mixes rounds: what pairing avoids


def test_paired_ratio_refuses_contenders_timed_in_different_rounds():
    with pytest.raises(ValueError, match="time them together"):
        paired_ratio({"a": [1.0, 2.0], "b": [1.0]}, "a", "b")


def test_medians_and_rates():
    assert medians({"a": [3.0, 1.0, 2.0], "b": [5.0]}) == {"a": 2.0, "b": 5.0}
    assert rates([1.0, 2.0, 4.0], work=8) == Spread(median=4.0, low=2.0, high=8.0)  # tokens/s: 8, 4, 2


def test_noise_band_is_the_widest_median_ratio_of_identical_work_either_side_of_one():
    times = {
        "x": [1.0, 1.0, 1.0],
        "x again": [1.1, 1.2, 1.1],  # median ratio 1.1
        "x copy": [0.8, 0.8, 0.9],  # median ratio 0.8: 1.25 below 1, the wider one
    }
    band = noise_band(times, [("x again", "x"), ("x copy", "x")])
    assert band.factor == pytest.approx(1.25)
    assert (band.low, band.high) == (pytest.approx(0.8), pytest.approx(1.25))
    assert math.isclose(noise_band(times, [("x again", "x")]).factor, 1.1)


def test_noise_band_needs_a_pair():
    with pytest.raises(ValueError, match="identical work"):
        noise_band({"a": [1.0]}, [])


def test_verdict_says_within_noise_inside_the_band_and_names_the_side_outside():
    band = NoiseBand(1.25)
    assert band.verdict(1.2) == "1.20x (within noise)" and band.contains(1.2) and band.contains(0.8)
    assert band.verdict(1.3) == "1.30x (slower)" and not band.contains(1.3)
    assert band.verdict(0.7) == "0.70x (faster)"
    assert band.verdict(1.3, above="faster", below="slower") == "1.30x (faster)"
    assert str(band) == "0.80x .. 1.25x"


def test_stopwatch_times_its_block_and_reads_the_time_so_far_inside_it():
    from palmbook.book import Stopwatch

    ticks = iter([10.0, 12.5, 13.0, 99.0])
    with Stopwatch(clock=lambda: next(ticks)) as sw:
        assert sw.seconds == 2.5  # inside the block: the time so far
    assert sw.seconds == 3.0 and str(sw) == "3 s"  # after it: fixed at the block's end
    with pytest.raises(RuntimeError, match="never entered"):
        _ = Stopwatch().seconds
