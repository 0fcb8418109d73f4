"""A BGP session that BIRD drops comes back within 2 s (Ryu's own loop: up to 31 s).

The routers, namespaces and announcer driver of test_bgp_speaker.py (the same names, held
under its names lock; the announcer with its default retry of 1 s). BIRD takes a session
down (`disable` then `enable`, or `restart` of the protocol), and the time until birdc
shows it Established again is measured. Run under `flock /tmp/msp-integration.lock`;
-s prints the timings.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest

from tests.integration.test_bgp_speaker import (  # noqa: F401  (fixtures, used by name)
    SESSION_DEADLINE_S,
    SITES,
    Bird,
    Driver,
    birds,
    driver,
    names_of_our_own,
    wait_until,
)

RECONNECT_DEADLINE_S = 2.0
REPEATS = 3
TIMINGS: dict[str, list[float]] = {}


def _downs(driver: Driver, address: str) -> int:  # noqa: F811
    """How many times the announcer has reported the session with `address` down."""
    return sum(1 for _, event in driver.events
               if event == {"event": "session", "address": address, "state": "down"})


def _more_downs(driver: Driver, address: str, seen: int) -> Callable[[], bool]:  # noqa: F811
    return lambda: _downs(driver, address) > seen


def test_sessions_establish(driver: Driver, birds: dict[str, Bird]) -> None:  # noqa: F811
    wait_until(lambda: driver.event_time(event="started") is not None, 30, "driver started")
    for bird in birds.values():
        wait_until(bird.session_established, SESSION_DEADLINE_S, f"session {bird.site.name}")
    # BIRD may count a session Established a moment before the speaker has read its
    # KEEPALIVE (the speaker still in OpenConfirm): both ends must get there.
    expected = {s.address: "established" for s in SITES}
    wait_until(lambda: driver.request("sessions") == expected, SESSION_DEADLINE_S, "the announcer's sessions")
    assert driver.request("sessions") == expected


def test_a_disabled_then_enabled_session_is_back_within_2_s(
        driver: Driver, birds: dict[str, Bird]) -> None:  # noqa: F811
    bird, other = birds["a"], birds["b"]
    for _ in range(REPEATS):
        downs = _downs(driver, bird.site.address)
        bird.birdc("disable controller")
        # The controller has seen the loss (and keeps trying; BIRD turns it away) ...
        wait_until(_more_downs(driver, bird.site.address, downs), 10, "the announcer to see the loss")
        assert not bird.session_established()
        bird.birdc("enable controller")
        enabled = time.monotonic()
        # ... and is back as soon as BIRD takes connections again.
        wait_until(bird.session_established, 60, f"{bird.site.name}'s session back")
        seconds = time.monotonic() - enabled
        TIMINGS.setdefault("enable -> established", []).append(seconds)
        assert seconds <= RECONNECT_DEADLINE_S, f"{seconds:.2f} s to re-establish after enable"
    assert other.session_established()  # the other session never noticed


def test_a_session_bird_restarts_is_back_within_2_s(driver: Driver, birds: dict[str, Bird]) -> None:  # noqa: F811
    bird = birds["b"]
    for _ in range(REPEATS):
        downs = _downs(driver, bird.site.address)
        bird.birdc("restart controller")
        restarted = time.monotonic()
        wait_until(_more_downs(driver, bird.site.address, downs), 10, "the announcer to see the loss")
        wait_until(bird.session_established, 60, f"{bird.site.name}'s session back")
        seconds = time.monotonic() - restarted
        TIMINGS.setdefault("restart -> established", []).append(seconds)
        assert seconds <= RECONNECT_DEADLINE_S, f"{seconds:.2f} s to re-establish after a restart"


def test_report_timings(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\nBGP reconnect timings (seconds):")
        for what, values in TIMINGS.items():
            print(f"  {what}: median {statistics.median(values):.3f}, max {max(values):.3f}, n={len(values)}")
