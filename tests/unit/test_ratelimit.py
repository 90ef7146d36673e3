"""The fixed-window limiter behind RATE_LIMIT_PER_IP_PER_MINUTE and RATE_LIMIT_PER_HOTKEY_PER_MINUTE."""

from __future__ import annotations

from quasar.limits import FixedWindowLimiter, retry_after_header


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_allows_the_limit_then_says_how_long_to_wait() -> None:
    clock = Clock(1200.0 + 15.0)
    limiter = FixedWindowLimiter(3, clock=clock)
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
    wait = limiter.hit("a")
    assert wait == 45.0 and retry_after_header(wait) == "45"
    assert limiter.hit("b") is None  # keys are counted apart


def test_window_turn_resets_and_forgets_old_keys() -> None:
    clock = Clock(60.0)
    limiter = FixedWindowLimiter(1, clock=clock)
    assert limiter.hit("a") is None and limiter.hit("a") is not None
    clock.now = 120.0
    assert limiter.hit("a") is None
    assert list(limiter._counts) == ["a"]  # only this window's keys are held


def test_zero_is_unlimited() -> None:
    limiter = FixedWindowLimiter(0)
    assert not limiter.enabled and all(limiter.hit("a") is None for _ in range(1000))


def test_retry_after_is_at_least_one_second() -> None:
    assert retry_after_header(0.01) == "1"
