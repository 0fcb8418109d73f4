"""Homenets created, changed and deleted at run time, on fake switches: each change and each
event touches its own homenet's boxes and parts only; a restart from the store rebuilds the
same programs."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from msp_controller.api.service import CoreService
from msp_controller.core import Effects, load_core
from msp_controller.core.switches import union
from msp_controller.dataplane import ofmsg
from msp_controller.dataplane.flows.classes import PATH_GROUP_SHIFT
from msp_controller.model.config import MspConfig, parse_homenet
from msp_controller.model.errors import FieldError
from msp_controller.model.policy import policy_to_json
from msp_controller.store import SqliteStore
from tests.fakeoftable import FakeSwitch
from tests.harness import EDGE, EDGE2, HOME, PORTS, UNDERLAY_A, UNDERLAY_B, Harness, link_tunnels, udp4

HOME2, UNDERLAY2_A, UNDERLAY2_B = 0x201, 0x211, 0x212
HOME1_BOXES = {HOME, UNDERLAY_A, UNDERLAY_B}
HOME2_BOXES = {HOME2, UNDERLAY2_A, UNDERLAY2_B}
H2_HOST, SERVER4 = "203.0.113.130", "198.18.99.10"


def home2_body(reference_data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(reference_data["homenets"][0])
    body.update(name="home2", id=2, datapath_id=HOME2, prefixes=["203.0.113.128/25"], lan_ipv4="203.0.113.129/25")
    del body["lan_ipv6"]
    for index, uplink in enumerate(body["uplinks"]):
        uplink["underlay_datapath_id"] = UNDERLAY2_A + index
        uplink["address"] = f"198.18.{index + 1}.3"  # its box, on the same ISPs as home1's
    body.update(changes)
    return body


def two_homenet_ports() -> dict[int, dict[str, int]]:
    ports = copy.deepcopy(PORTS)
    ports[HOME2] = dict(PORTS[HOME])
    ports[UNDERLAY2_A] = {"mspmb-ispA": 1}
    ports[UNDERLAY2_B] = {"mspmb-ispB": 1}
    return ports


@pytest.fixture
def two(config: MspConfig, reference_data: dict[str, Any]) -> Harness:
    """home1 served and connected; home2's switches exist but it is not configured yet."""
    harness = Harness(config, ports=two_homenet_ports())
    for dpid in (HOME2, UNDERLAY2_A, UNDERLAY2_B):
        harness.network.switches.pop(dpid, None)
    for dpid, names in harness.ports.items():
        if dpid not in harness.network.switches:
            harness.network.add_switch(FakeSwitch(dpid, {n: True for n in names.values()}))
    link_tunnels(harness.network, config, HOME2, parse_homenet(home2_body(reference_data), config))
    for dpid in PORTS:
        harness.connect(dpid)
    harness.learn_hosts_and_upstream()
    return harness


def _touched(effects: Effects) -> set[int]:
    return {dpid for dpid, messages in effects.items() if messages}


def _owner(group_id: int) -> int:
    """The homenet id in a group id (flows/classes.py: id << 8, below the per-path bits)."""
    return (group_id & ((1 << PATH_GROUP_SHIFT) - 1)) >> 8


def _group_ids(messages: list[Any]) -> set[int]:
    return {m.group_id for m in messages if isinstance(m, ofmsg.parser.OFPGroupMod)}


def _create(two: Harness, reference_data: dict[str, Any], **changes: Any) -> Effects:
    homenet = parse_homenet(home2_body(reference_data, **changes), two.config)
    return Effects(two.apply(two.core.add_homenet(homenet, two.now)))


def test_creating_a_homenet_sends_nothing_to_the_other_homenets_boxes(two, reference_data):
    before = {dpid: sorted(f.cookie for f in two.switch(dpid).flows()) for dpid in HOME1_BOXES}
    effects = _create(two, reference_data)
    assert _touched(effects) == {EDGE, EDGE2}  # its parts at the edges; its own boxes are not connected yet
    for dpid in HOME1_BOXES:
        assert sorted(f.cookie for f in two.switch(dpid).flows()) == before[dpid]
    for dpid in HOME2_BOXES:
        two.connect(dpid)
    # Its MSPMB now sends its hosts' traffic into its own tunnels, and edge1 delivers inbound.
    gw = two.core.homenets["home2"].spec.gateway_mac
    out = two.switch(HOME2).process(1, udp4(H2_HOST, SERVER4, "00:00:00:00:02:10", gw))
    assert [o.port for o in out] == [11]


def test_an_event_on_one_homenet_sends_nothing_to_another(two, reference_data):
    _create(two, reference_data)
    for dpid in HOME2_BOXES:
        two.connect(dpid)
    home2_groups = {g for dpid in (EDGE, EDGE2) for g in two.switch(dpid).groups if _owner(g) == 2}
    assert home2_groups
    effects = Effects(two.set_live(HOME, "edge1-ispA", False))
    assert _touched(effects) <= HOME1_BOXES | {EDGE, EDGE2}
    assert not _touched(effects) & HOME2_BOXES
    for dpid in (EDGE, EDGE2):
        assert not _group_ids(effects.get(dpid, [])) & home2_groups
    effects = Effects(two.set_live(HOME2, "edge1-ispA", False))
    assert not _touched(effects) & HOME1_BOXES


def test_deleting_a_homenet_clears_its_flows_and_withdraws_its_prefixes(two, reference_data):
    _create(two, reference_data)
    for dpid in HOME2_BOXES:
        two.connect(dpid)
    home1_edge_flows = {dpid: {f.cookie for f in two.switch(dpid).flows()} for dpid in (EDGE, EDGE2)}
    effects = Effects(two.apply(two.core.remove_homenet("home2", two.now)))
    assert not _touched(effects) & HOME1_BOXES
    assert effects.bgp == {"203.0.113.128/25": {}}
    assert two.switch(HOME2).flows() == [] and two.switch(HOME2).groups == {}
    for dpid in (EDGE, EDGE2):
        left = {f.cookie for f in two.switch(dpid).flows()}
        assert left and left < home1_edge_flows[dpid]
        assert not any(_owner(g) == 2 for g in two.switch(dpid).groups)
    assert "home2" not in two.core.homenets and two.core.role(HOME2) is None


def test_a_clash_names_the_field_and_changes_nothing(two, reference_data):
    sent = len(two.sent)
    with pytest.raises(FieldError) as caught:
        _create(two, reference_data, prefixes=["198.51.100.128/25"], lan_ipv4="198.51.100.129/25")
    assert caught.value.where == "homenet.prefixes[0]" and "of homenet 'home1'" in caught.value.problem
    with pytest.raises(FieldError) as caught:
        _create(two, reference_data, datapath_id=HOME)
    assert caught.value.where == "homenet.datapath_id"
    assert len(two.sent) == sent and set(two.core.homenets) == {"home1"}


def test_replacing_a_homenet_touches_only_it(two, reference_data):
    _create(two, reference_data)
    for dpid in HOME2_BOXES:
        two.connect(dpid)
    changed = parse_homenet(home2_body(reference_data, egress_order=["ispB", "ispA"]), two.config)
    effects = Effects(two.apply(two.core.replace_homenet(changed, two.now)))
    assert not _touched(effects) & HOME1_BOXES
    assert two.core.homenets["home2"].spec.egress_order == ("ispB", "ispA")


def test_a_restart_from_the_store_rebuilds_the_same_programs(two, reference_data, tmp_path):
    store = SqliteStore(str(tmp_path / "state.sqlite"))
    def confirm(effects: Effects) -> list[int]:  # the switches take it at once
        two.apply(effects)
        return []

    service = CoreService(two.core, confirm=confirm, clock=lambda: two.now, store=store)
    created = service.create_homenet(home2_body(reference_data))
    assert created["applied"]
    policy = {"classes": [{"name": "voice", "match": {"protocol": "udp", "dst_ports": ["16384-32767"]},
                           "egress": {"mode": "failover", "order": ["ispB", "ispA"]},
                           "ingress": {"mode": "failover", "order": ["ispB", "ispA"]}}],
              "default": policy_to_json(two.core.homenets["home1"].policy)["default"]}
    service.put_policy("home1", policy)
    for dpid in HOME2_BOXES:
        two.connect(dpid)
    store.close()

    reopened = SqliteStore(str(tmp_path / "state.sqlite"))
    restarted = Harness(two.config, core=load_core(two.config, reopened.load()), ports=two.ports,
                        network=two.network)
    # Edges first: a box that reconciles while an edge is away plans without that edge.
    for dpid in sorted(two.ports, key=lambda d: d not in (EDGE, EDGE2)):
        restarted.connect(dpid)
    for dpid in two.ports:
        assert union(restarted.core.switches[dpid].parts) == union(two.core.switches[dpid].parts), hex(dpid)
    assert [c.name for c in restarted.core.homenets["home1"].policy.classes] == ["voice"]
    # The switches already hold exactly that: reconnecting changes no flow and no group.
    changes = [m for _, m in restarted.sent if isinstance(m, (ofmsg.parser.OFPFlowMod, ofmsg.parser.OFPGroupMod))]
    assert changes == []


def test_deleting_survives_a_restart_even_for_a_homenet_of_the_config(config, tmp_path):
    store = SqliteStore(str(tmp_path / "state.sqlite"))
    service = CoreService(load_core(config, store.load()), confirm=lambda effects: [], store=store)
    service.delete_homenet("home1")
    assert set(load_core(config, store.load()).homenets) == set()


def test_a_box_that_connected_before_its_homenet_existed_is_programmed_when_it_is_created(two, reference_data):
    for dpid in HOME2_BOXES:
        two.connect(dpid)  # nobody's yet: the core keeps its ports and programs nothing
    assert two.switch(HOME2).flows() == []
    effects = _create(two, reference_data)
    requests = [m for m in effects.get(HOME2, []) if isinstance(m, ofmsg.parser.OFPMultipartRequest)]
    assert len(requests) == 3  # it reads the box's flows, groups and meters, then reconciles it
    for dpid in HOME2_BOXES:  # the stats replies the (empty) boxes send back: no reconnect
        two.apply(two.core.flow_stats(dpid, [], False, two.now))
        two.apply(two.core.group_desc(dpid, {}, False, two.now))
        two.apply(two.core.meter_config(dpid, {}, False, two.now))
    assert two.switch(HOME2).flows() and two.core.switches[HOME2].reconciled
