"""Flap damping as a pure rule (decide/damping.py) and as a policy setting (model/policy.py)."""
from __future__ import annotations

import math
import random

import pytest

from msp_controller.core.loading import load_core
from msp_controller.decide.damping import FlapDamper, Flaps, ceiling, hold_s
from msp_controller.model.errors import FieldError
from msp_controller.model.policy import Damping, parse_policy, policy_to_json
from msp_controller.store import SqliteStore

RULE = Damping(recover_s=2.0, half_life_s=15.0, max_hold_s=30.0)
FAILOVER_AB = {"mode": "failover", "order": ["ispA", "ispB"]}


def flapped(times: list[tuple[float, bool]], rule: Damping = RULE) -> Flaps:
    """A path that came up at 0, then went down (False) or up (True) at each time."""
    flaps = Flaps().came_up(0.0)
    for when, up in times:
        flaps = flaps.came_up(when) if up else flaps.failed(rule, when)
    return flaps


def test_a_path_that_never_failed_is_never_damped():
    assert not Flaps().damped(RULE, 0.0)
    assert not Flaps().came_up(5.0).damped(RULE, 5.0)


def test_a_path_that_never_came_up_collects_no_penalty():
    """A box still starting reports its tunnels down: that is no failure."""
    flaps = Flaps().failed(RULE, 1.0).came_up(3.0)
    assert flaps.penalty == 0 and not flaps.damped(RULE, 3.0)


def test_after_one_failure_a_path_waits_recover_s_once_it_is_up_again():
    flaps = flapped([(10.0, False)])
    assert flaps.damped(RULE, 11.0)  # down: behind the others when it returns
    flaps = flaps.came_up(70.0)  # a long outage does not shorten the wait: it counts from up
    assert flaps.damped(RULE, 71.9)
    assert not flaps.damped(RULE, 72.0)
    assert flaps.trusted_at(RULE) == 72.0


def test_each_failure_adds_to_the_wait_and_the_wait_is_capped():
    waits = []
    flaps = Flaps().came_up(0.0)
    for cycle in range(20):
        flaps = flaps.failed(RULE, cycle + 0.5).came_up(cycle + 1.0)
        trusted = flaps.trusted_at(RULE)
        assert trusted is not None
        waits.append(trusted - (cycle + 1.0))
    assert waits[0] == pytest.approx(2.0)  # penalty 1: recover_s
    assert waits[1] == pytest.approx(2.0 + 15 * math.log2(1 + 2 ** (-0.5 / 15)))
    assert all(later >= earlier for earlier, later in zip(waits, waits[1:], strict=False))
    assert max(waits) == pytest.approx(30.0)  # max_hold_s
    assert flaps.penalty == pytest.approx(ceiling(RULE))


def test_the_penalty_decays_only_while_the_path_is_up():
    flaps = flapped([(1.0, False), (2.0, True), (3.0, False)])
    down_for_an_hour = flaps.penalty_at(RULE, 3600.0)
    assert down_for_an_hour == flaps.penalty
    up = flaps.came_up(3600.0)
    assert up.penalty_at(RULE, 3615.0) == pytest.approx(flaps.penalty / 2)  # one half-life


def test_hold_s_is_recover_s_plus_a_half_life_per_doubling():
    assert hold_s(RULE, 0.0) == 0.0
    assert hold_s(RULE, 1.0) == pytest.approx(2.0)
    assert hold_s(RULE, 2.0) == pytest.approx(17.0)
    assert hold_s(RULE, 1000.0) == pytest.approx(30.0)


def test_max_hold_s_zero_turns_damping_off():
    off = Damping(max_hold_s=0.0)
    flaps = flapped([(1.0, False), (2.0, True), (2.5, False), (3.0, True)], off)
    assert not flaps.damped(off, 3.0)
    assert not off.enabled


def test_a_storm_is_held_back_until_the_path_is_stable_for_max_hold_s():
    """ISP A down and up 50 times in about 60 s (0.6 +- 0.2 s each half): never trusted
    during the storm, trusted max_hold_s after its last restore."""
    rng = random.Random(7)
    damper: FlapDamper[str] = FlapDamper()
    now = 0.0
    damper.observe("ispA", True, RULE, now)
    for _ in range(50):
        now += rng.uniform(0.4, 0.8)
        damper.observe("ispA", False, RULE, now)
        assert damper.damped("ispA", RULE, now)
        now += rng.uniform(0.4, 0.8)
        damper.observe("ispA", True, RULE, now)
        assert damper.damped("ispA", RULE, now)
    assert 40 <= now <= 80
    assert damper.next_trusted(["ispA"], RULE, now) == pytest.approx(now + RULE.max_hold_s)
    assert damper.damped("ispA", RULE, now + RULE.max_hold_s - 0.01)
    assert not damper.damped("ispA", RULE, now + RULE.max_hold_s)
    assert len(damper) == 1  # one entry per path, whatever the number of events


def test_the_damper_ignores_unknown_liveness_and_forgets_paths():
    damper: FlapDamper[str] = FlapDamper()
    damper.observe("a", True, RULE, 0.0)
    damper.observe("a", None, RULE, 1.0)  # a switch reconnecting: no news
    assert damper.state("a") == Flaps(0.0, 0.0)
    damper.observe("a", False, RULE, 2.0)
    damper.observe("b", True, RULE, 2.0)
    assert damper.next_trusted(["a", "b"], RULE, 2.0) is None  # a is down, b is not damped
    damper.observe("a", True, RULE, 3.0)
    assert damper.next_trusted(["a", "b"], RULE, 3.0) == pytest.approx(5.0)
    damper.forget("a")
    assert len(damper) == 1 and not damper.damped("a", RULE, 3.0)


# --- the policy setting -------------------------------------------------------------------


def body(damping: object = None) -> dict[str, object]:
    document: dict[str, object] = {"classes": [], "default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB}}
    if damping is not None:
        document["damping"] = damping
    return document


def test_the_default_policy_damps_with_the_documented_defaults(config):
    policy = parse_policy(body(), config.homenet("home1"))
    assert policy.damping == Damping(recover_s=2.0, half_life_s=15.0, max_hold_s=30.0)
    assert policy_to_json(policy)["damping"] == {"recover_s": 2.0, "half_life_s": 15.0, "max_hold_s": 30.0}


def test_damping_fields_are_optional_and_round_trip(config):
    home = config.homenet("home1")
    policy = parse_policy(body({"max_hold_s": 120, "half_life_s": 60}), home)
    assert policy.damping == Damping(recover_s=2.0, half_life_s=60.0, max_hold_s=120.0)
    assert parse_policy(policy_to_json(policy), home) == policy


@pytest.mark.parametrize(("damping", "field", "words"), [
    ([], "damping", "must be an object"),
    ({"recover": 2}, "damping.recover", "unknown field"),
    ({"recover_s": -1}, "damping.recover_s", "out of range"),
    ({"recover_s": True}, "damping.recover_s", "must be a number"),
    ({"half_life_s": 0}, "damping.half_life_s", "out of range 1..3600"),
    ({"max_hold_s": 3601}, "damping.max_hold_s", "out of range"),
    ({"recover_s": 10, "max_hold_s": 5}, "damping.max_hold_s", "below recover_s"),
])
def test_bad_damping_is_refused_naming_the_field(config, damping, field, words):
    with pytest.raises(FieldError) as error:
        parse_policy(body(damping), config.homenet("home1"))
    assert error.value.where == field and words in str(error.value)


def test_damping_survives_the_store_and_a_restart(config, tmp_path):
    home = config.homenet("home1")
    policy = parse_policy(body({"recover_s": 5, "half_life_s": 30, "max_hold_s": 300}), home)
    store = SqliteStore(str(tmp_path / "state.sqlite"))
    store.put_policy("home1", policy_to_json(policy))
    store.close()
    core = load_core(config, SqliteStore(str(tmp_path / "state.sqlite")).load())
    assert core.homenets["home1"].policy.damping == Damping(recover_s=5.0, half_life_s=30.0, max_hold_s=300.0)
