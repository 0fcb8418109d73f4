"""A policy changed by REST reaches the box's tc, without OVS or tc: the store says which
homenets changed since a version, the OVSDB manager follows them, and the box agent runs
only the shaping commands it expects, keeping the old shaping when refusing new ones."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from msp_controller.box.desired import shaping_text
from msp_controller.box.manager import Manager
from msp_controller.box.shaping_apply import apply_shaping, parse_shaping
from msp_controller.model.config import load_config
from msp_controller.model.policy import default_policy, policy_to_json
from msp_controller.store.sqlite import SqliteStore

CONFIG = load_config(os.path.join(os.path.dirname(__file__), "..", "..", "etc", "blank_box.toml"))
HOME = CONFIG.homenet("home1")
PORTS = ("bbmb-ispA", "bbmb-ispB")


def _policy_json(**up_kbps: int) -> dict:
    data = policy_to_json(default_policy(HOME))
    data["rates"] = {isp: {"up_kbps": kbps} for isp, kbps in up_kbps.items()}
    return data


# -- the store: what changed since a version


def test_the_store_names_only_the_homenets_changed_since_a_version(tmp_path):
    store = SqliteStore(str(tmp_path / "state.sqlite"))
    version, names = store.changed_since(0)
    assert (version, names) == (0, [])
    store.put_policy("home1", _policy_json(ispA=20000))
    store.put_homenet("home2", {"name": "home2"}, None)
    version, names = store.changed_since(0)
    assert names == ["home1", "home2"] and version == 2
    store.put_policy("home1", _policy_json(ispA=10000))
    later, names = store.changed_since(version)
    assert names == ["home1"] and later == 3  # home2 did not change again
    assert store.changed_since(later) == (later, [])
    store.delete_homenet("home1")
    assert store.changed_since(later)[1] == ["home1"]
    assert store.homenet_record("home1") == (None, None)


# -- the manager: follows the store


def test_the_manager_follows_a_stored_policy_and_keeps_the_last_good_one(tmp_path):
    path = str(tmp_path / "state.sqlite")
    store = SqliteStore(path)
    manager = Manager(CONFIG, state_path=path)
    assert "home1" not in manager.policies  # the config's default until one is stored
    store.put_policy("home1", _policy_json(ispA=20000))
    assert manager.follow_policies() == ["home1"]
    assert manager.policies["home1"].isp_rates("ispA").up_kbps == 20000
    assert manager.follow_policies() == []  # nothing new: nothing read again
    store.put_policy("home1", {"rates": {"ispZ": {"up_kbps": 1}}})  # no such ISP: does not parse
    assert manager.follow_policies() == ["home1"]
    assert manager.policies["home1"].isp_rates("ispA").up_kbps == 20000  # the previous stays
    store.close()


# -- the agent: checks, then applies


def test_the_agent_accepts_the_shaping_the_manager_writes():
    text = shaping_text(HOME, None)
    assert parse_shaping(text, PORTS) == {"bbmb-ispA": [], "bbmb-ispB": []}
    from msp_controller.model.policy import parse_policy
    shaped = parse_shaping(shaping_text(HOME, parse_policy(_policy_json(ispB=5000), HOME)), PORTS)
    assert shaped["bbmb-ispA"] == [] and len(shaped["bbmb-ispB"]) > 5


@pytest.mark.parametrize("data, named", [
    ("not json", "not JSON"),
    ({"eth0": []}, "'eth0' is not one of this box's uplink ports"),
    ({"bbmb-ispA": [["qdisc", "del", "dev", "bbmb-ispB", "root"]]}, "does not name dev bbmb-ispA"),
    ({"bbmb-ispA": [["qdisc", "add", "dev", "bbmb-ispA", "root", "handle", "1: ; reboot"]]}, "not a plain word"),
    ({"bbmb-ispA": [["link", "set", "dev", "bbmb-ispA", "down"]]}, "'link' is not one of"),
    ({"bbmb-ispA": "qdisc"}, "expected a list"),
    ({"bbmb-ispA": [[]]}, "expected a list of strings"),
])
def test_the_agent_refuses_shaping_it_does_not_expect_naming_the_problem(data, named):
    text = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(ValueError, match=named):
        parse_shaping(text, PORTS)


def test_applying_clears_each_port_first_and_leaves_a_failed_port_unshaped_not_half_shaped():
    calls: list[tuple[list[str], str | None]] = []

    def fake_tc(argv: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
        calls.append((argv, stdin))
        failed = argv[1] == "-batch" and "bbmb-ispB" in (stdin or "")
        return subprocess.CompletedProcess(argv, 2 if failed else 0, "", "RTNETLINK answers: Invalid argument")

    shaping = {"bbmb-ispA": [["qdisc", "replace", "dev", "bbmb-ispA", "root", "handle", "1:", "htb"]],
               "bbmb-ispB": [["qdisc", "replace", "dev", "bbmb-ispB", "root", "handle", "1:", "htb"]]}
    errors = apply_shaping(shaping, fake_tc)
    assert errors == ["bbmb-ispB: tc: RTNETLINK answers: Invalid argument"]
    assert [c[0] for c in calls] == [
        ["tc", "qdisc", "del", "dev", "bbmb-ispA", "root"], ["tc", "-batch", "-"],
        ["tc", "qdisc", "del", "dev", "bbmb-ispB", "root"], ["tc", "-batch", "-"],
        ["tc", "qdisc", "del", "dev", "bbmb-ispB", "root"]]
    assert calls[1][1] == "qdisc replace dev bbmb-ispA root handle 1: htb\n"


# -- the edge's shaper: everything once, then what changed


def _edge_answers(config):
    """The controller's answers for a fresh shaper, a policy change, then the homenet's removal."""
    from msp_controller.api.service import CoreService
    from tests.harness import Harness
    from tests.unit.test_qos_policy import POLICY
    harness = Harness(config)
    harness.connect_all()
    service = CoreService(harness.core, harness.apply, clock=lambda: harness.now)
    first = service.edge_shaping("edge1", None)
    service.put_policy("home1", POLICY)
    second = service.edge_shaping("edge1", str(first["version"]))
    return first, second


def test_the_edge_shaper_applies_everything_once_then_one_homenets_change(config):
    from msp_controller.box.edge_shaper import EdgeShaper
    first, second = _edge_answers(config)
    answers = iter([first, second, {"version": second["version"] + 1, "full": False, "homenets": {"home1": None}}])
    asked, ran = [], []

    def fetch(since, after):
        asked.append(since)
        return next(answers)

    def tc(commands, force):
        ran.append((commands, force))
        return True, ""

    shaper = EdgeShaper(fetch, "edge1-up", tc, incarnation=lambda: "boot/7")
    assert shaper.step() == len(first["homenets"])
    assert ran[0] == ([["qdisc", "del", "dev", "edge1-up", "root"]], True) and ran[1] == (first["base"], False)
    ran.clear()
    assert shaper.step() == 1
    home1 = second["homenets"]["home1"]
    assert ran == [(home1["remove"], True), (home1["apply"], False)]
    ran.clear()
    assert shaper.step() == 1  # home1 no longer served here: what it had applied is removed
    assert ran == [(home1["remove"], True)]
    assert asked == [None, first["version"], second["version"]]


def test_the_edge_shaper_refuses_another_ports_commands_and_keeps_the_previous(config):
    from msp_controller.box.edge_shaper import EdgeShaper
    first, second = _edge_answers(config)
    bad = json.loads(json.dumps(second))
    bad["homenets"]["home1"]["apply"].append(["qdisc", "del", "dev", "eth0", "root"])
    answers = iter([first, bad])
    ran = []
    shaper = EdgeShaper(lambda since, after: next(answers), "edge1-up", lambda c, f: (ran.append(c), (True, ""))[1],
                        incarnation=lambda: "boot/7")
    shaper.step()
    ran.clear()
    assert shaper.step() == 0 and ran == []  # nothing run for home1
    assert shaper.version == bad["version"]  # and not asked again and again


def test_the_edge_shaper_reads_everything_page_by_page():
    """A full answer comes in pages by name (here 7 homenets, 3 a page); the cleared port and
    the base come once, first; every homenet is applied once."""
    from bench.scale_configs import config_dict
    from msp_controller.api.service import CoreService
    from msp_controller.box.edge_shaper import EdgeShaper
    from msp_controller.core import MspCore
    from msp_controller.model.config import parse_config
    config = parse_config(config_dict(7, bgp=False))
    service = CoreService(MspCore(config), lambda effects: [])
    edge = config.edges[0]
    served = sorted(h.name for h in config.homenets if edge.name in h.edges)
    assert len(served) == 7
    pages = []

    def fetch(since, after):
        pages.append(after)
        return service.edge_shaping(edge.name, None if since is None else str(since), after, page=3)

    ran = []
    shaper = EdgeShaper(fetch, edge.underlay_port, lambda c, f: (ran.append(c), (True, ""))[1],
                        incarnation=lambda: "boot/7")
    assert shaper.step() == 7
    assert pages == [None, served[2], served[5]]  # each page after the last name of the one before
    assert ran[0] == [["qdisc", "del", "dev", edge.underlay_port, "root"]]
    assert sum(1 for c in ran for cmd in c if cmd[:2] == ["qdisc", "replace"] and "root" in cmd) == 1
    assert set(shaper.applied) == set(served)


def test_the_edge_shaper_stops_asking_for_head_drop_fifos_when_the_ports_handles_are_spent(monkeypatch):
    """Past the kernel's 32,767 FIFO handles every refused FIFO costs a search of them all: the
    shaper keeps count, and a homenet beyond the budget is shaped with HTB's own FIFOs."""
    from msp_controller.box import edge_shaper
    monkeypatch.setattr(edge_shaper, "KERNEL_FIFO_BUDGET", 10)
    port = "edge1-up"

    def homenet(major: int) -> dict:
        leaves = [f"{major}:{minor}" for minor in range(11, 19)]
        apply = [["class", "replace", "dev", port, "parent", f"{major}:1", "classid", leaf, "htb", "rate", "1mbit"]
                 for leaf in leaves]
        apply += [["qdisc", "replace", "dev", port, "parent", leaf, "pfifo_head_drop", "limit", "16"]
                  for leaf in leaves]
        return {"remove": [["class", "del", "dev", port, "classid", f"1:{major}"]], "apply": apply}

    answers = iter([
        {"version": 1, "full": True, "base": [], "homenets": {"a": homenet(2), "b": homenet(3)}},
        {"version": 2, "full": False, "homenets": {"a": None, "c": homenet(4)}},
    ])
    ran: list[list[list[str]]] = []
    shaper = edge_shaper.EdgeShaper(lambda since, after: next(answers), port,
                                    lambda c, f: (ran.append(c), (True, ""))[1], incarnation=lambda: "boot/7")
    shaper.step()
    applied = [c for batch in ran for c in batch]
    fifos = [c[c.index("parent") + 1] for c in applied if c[0] == "qdisc" and "pfifo_head_drop" in c]
    assert fifos == [f"2:{minor}" for minor in range(11, 19)]  # a's 8 fit, b's would not
    assert sum(c[0] == "class" and c[c.index("classid") + 1].startswith("3:") for c in applied) == 8  # b still shaped
    ran.clear()
    shaper.step()  # a gone: its 8 handles are free again, and c's 8 fit
    assert sum(c[0] == "qdisc" and "pfifo_head_drop" in c for batch in ran for c in batch) == 8
    assert shaper.fifo_total == 8
