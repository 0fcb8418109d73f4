"""The SQLite store (atomic, durable across reopening), the homenet clash index and the
probe budget."""
from __future__ import annotations

import dataclasses
import ipaddress
import sqlite3

import pytest

from msp_controller.core.probing import ProbeScheduler
from msp_controller.model.errors import FieldError
from msp_controller.model.homenet_index import HomenetIndex
from msp_controller.store import SqliteStore


def test_store_keeps_homenets_policies_and_deletions_across_reopening(tmp_path):
    path = str(tmp_path / "deep" / "state.sqlite")
    store = SqliteStore(path)
    store.put_homenet("home2", {"name": "home2", "id": 2}, {"default": {}})
    store.put_policy("home1", {"classes": []})
    store.delete_homenet("home3")
    store.close()
    state = SqliteStore(path).load()
    assert state.homenets == {"home2": {"name": "home2", "id": 2}}
    assert state.policies == {"home2": {"default": {}}, "home1": {"classes": []}}
    assert state.deleted == {"home3"}


def test_a_write_that_fails_half_way_leaves_the_previous_state(tmp_path):
    store = SqliteStore(str(tmp_path / "state.sqlite"))
    store.put_homenet("home2", {"v": 1}, {"p": 1})
    with pytest.raises(sqlite3.Error):
        store._write([("INSERT OR REPLACE INTO homenets (name, spec) VALUES (?, ?)", ("home2", '{"v": 2}')),
                      ("INSERT INTO no_such_table VALUES (1)", ())])
    assert store.load().homenets == {"home2": {"v": 1}}


def test_deleting_then_creating_again_clears_the_deletion(tmp_path):
    store = SqliteStore(str(tmp_path / "state.sqlite"))
    store.delete_homenet("home1")
    store.put_homenet("home1", {"v": 1}, None)
    assert store.load().deleted == frozenset()


@pytest.mark.parametrize(("existing", "new", "clash"), [
    ("10.0.0.0/24", "10.0.0.128/25", "10.0.0.0/24"),  # inside an existing one
    ("10.0.0.128/25", "10.0.0.0/16", "10.0.0.128/25"),  # containing an existing one
    ("10.0.0.0/24", "10.0.0.0/24", "10.0.0.0/24"),
    ("2001:db8:1::/48", "2001:db8::/32", "2001:db8:1::/48"),
])
def test_overlapping_prefixes_clash(config, existing, new, clash):
    home = config.homenets[0]
    index = HomenetIndex(config.edges)
    index.add(dataclasses.replace(home, prefixes=(ipaddress.ip_network(existing),)))
    other = dataclasses.replace(home, name="other", id=9, dpid=0x901, uplinks=(),
                                prefixes=(ipaddress.ip_network(new),))
    with pytest.raises(FieldError) as caught:
        index.check(other)
    assert caught.value.where == "homenet.prefixes[0]" and clash in caught.value.problem


def test_disjoint_prefixes_and_the_homenet_itself_do_not_clash(config):
    home = config.homenets[0]
    index = HomenetIndex(config.edges)
    index.add(home)
    index.check(home, replacing=home.name)  # its own keys
    other = dataclasses.replace(home, name="other", id=9, dpid=0x901, uplinks=(),
                                prefixes=(ipaddress.ip_network("198.51.101.0/24"),))
    index.check(other)
    index.remove(home)
    index.check(dataclasses.replace(home, name="again"))


def test_probes_never_exceed_the_budget_and_sla_paths_come_first():
    scheduler: ProbeScheduler[str] = ProbeScheduler(budget_pps=100, interval_s=0.05)
    for index in range(1000):
        scheduler.add(f"path{index}", sla=index < 2, now=0.0)
    sent = []
    for tick in range(1, 201):  # 10 s
        sent += scheduler.due(tick * 0.05)
    assert len(sent) <= 100 * 10 + 10  # the budget (plus one tick's burst)
    assert sent.count("path0") >= 190  # every tick: an sla path keeps its 20/s
    assert sent.count("path500") >= 1  # the rest share what is left
    assert scheduler.saturated


def test_a_small_deployment_probes_every_path_at_full_rate():
    scheduler: ProbeScheduler[str] = ProbeScheduler(budget_pps=2000, interval_s=0.05)
    for index in range(4):
        scheduler.add(f"path{index}", sla=False, now=0.0)
    sent = []
    for tick in range(1, 101):
        sent += scheduler.due(tick * 0.05)
    assert all(sent.count(f"path{i}") >= 99 for i in range(4))
    assert not scheduler.saturated
