"""The controller's OVSDB side and the box agent's choices, without OVS: what transaction
makes a blank box hold its bridges and tunnels, how a renumbering moves only the edge's
tunnel of that uplink, and which ISP carries the control channel."""
from __future__ import annotations

import os

from msp_controller.box.agent import Snapshot, Tunnel, choose_uplink
from msp_controller.box.desired import SHAPING, edge_bridge, leases_from_external_ids, mspmb_bridge, parse_lease
from msp_controller.box.ovsdb_ops import Replica, bridge_operations
from msp_controller.model.config import load_config
from msp_controller.model.policy import default_policy, parse_policy, policy_to_json

CONFIG = load_config(os.path.join(os.path.dirname(__file__), "..", "..", "etc", "blank_box.toml"))
HOME = CONFIG.homenet("home1")
EDGE = CONFIG.edge("edge1")


def _commit(replica: Replica, ops: list) -> None:
    """Apply a transaction to the replica the way ovsdb-server would report it back."""
    uuids: dict[str, str] = {}
    for n, op in enumerate(ops):
        if op["op"] == "insert":
            uuids[op["uuid-name"]] = f"u{len(replica.tables.get(op['table'], {}))}-{op['table']}-{n}"

    def resolve(value):
        if isinstance(value, list) and len(value) == 2 and value[0] == "named-uuid":
            return ["uuid", uuids[value[1]]]
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    update: dict = {}
    for op in ops:
        if op["op"] == "insert":
            row = {k: resolve(v) for k, v in op["row"].items()}
            update.setdefault(op["table"], {})[uuids[op["uuid-name"]]] = {"new": row}
        elif op["op"] == "update":
            uuid = op["where"][0][2][1]
            row = dict(replica.tables[op["table"]][uuid])
            encoded = {k: v for k, v in row.items()}
            replica.tables[op["table"]][uuid] = {**encoded, **{k: Replica_decode(v) for k, v in op["row"].items()}}
        elif op["op"] == "mutate" and op["table"] == "Bridge":
            uuid = op["where"][0][2][1]
            row = replica.tables["Bridge"][uuid]
            ports = list(row["ports"])
            external_ids = dict(row.get("external_ids") or {})
            for column, kind, value in op["mutations"]:
                if column == "external_ids":  # a map: delete takes keys, insert adds absent keys
                    if kind == "delete":
                        external_ids = {k: v for k, v in external_ids.items() if k not in value[1]}
                    else:
                        external_ids = {**dict(value[1]), **external_ids}
                    continue
                items = [resolve(v)[1] for v in value[1]]
                ports = ports + items if kind == "insert" else [p for p in ports if p not in items]
            row["ports"], row["external_ids"] = ports, external_ids
    replica.apply(update)


def Replica_decode(value):
    from msp_controller.box.ovsdb_ops import decode
    return decode(value)


def _blank_edge_replica() -> Replica:
    replica = Replica()
    replica.apply({"Open_vSwitch": {"root": {"new": {"bridges": ["set", []], "external_ids": ["map", []]}}}})
    return replica


LEASES = leases_from_external_ids({"msp-lease-br-ispA": "198.18.41.100/24 via 198.18.41.1",
                                   "msp-lease-br-ispB": "198.18.42.100/24 via 198.18.42.1",
                                   "unrelated": "x"})


def test_a_blank_box_gets_br_home_with_a_tunnel_and_bfd_per_uplink_in_one_transaction():
    replica = _blank_edge_replica()
    ops = bridge_operations(replica, mspmb_bridge(CONFIG, HOME))
    bridge = [op for op in ops if op["op"] == "insert" and op["table"] == "Bridge"][0]["row"]
    assert bridge["name"] == "br-home" and bridge["fail_mode"] == "secure"
    tunnels = {op["row"]["name"]: op["row"] for op in ops if op["table"] == "Interface" and op["row"].get("type")}
    assert set(tunnels) == {"edge1-ispA", "edge1-ispB"}
    assert ["remote_ip", "198.18.50.11"] in tunnels["edge1-ispA"]["options"][1]
    assert ["enable", "true"] in tunnels["edge1-ispB"]["bfd"][1]
    _commit(replica, ops)
    assert bridge_operations(replica, mspmb_bridge(CONFIG, HOME)) == []  # nothing left to do


def test_a_renumbered_uplink_moves_only_that_edge_tunnel():
    replica = _blank_edge_replica()
    _commit(replica, bridge_operations(replica, edge_bridge(CONFIG, EDGE, HOME, LEASES)))
    renumbered = dict(LEASES, **{"br-ispA": parse_lease("198.18.41.101/24 via 198.18.41.1")})
    ops = bridge_operations(replica, edge_bridge(CONFIG, EDGE, HOME, renumbered))
    assert [op["op"] for op in ops] == ["update"]
    assert ["remote_ip", "198.18.41.101"] in ops[0]["row"]["options"][1]
    uuid = ops[0]["where"][0][2][1]
    assert replica.tables["Interface"][uuid]["name"] == "hn1-ispA"


def test_an_uplink_that_lost_its_lease_keeps_its_edge_tunnel_and_other_homenets_ports_are_untouched():
    replica = _blank_edge_replica()
    _commit(replica, bridge_operations(replica, edge_bridge(CONFIG, EDGE, HOME, LEASES)))
    bridge_uuid = replica.bridge("br-msp")[0]
    replica.apply({"Port": {"other": {"new": {"name": "hn9-ispA", "interfaces": ["set", []],
                                               "external_ids": ["map", [["msp-owner", "home9"]]]}}}})
    replica.tables["Bridge"][bridge_uuid]["ports"].append("other")
    only_b = {"br-ispB": LEASES["br-ispB"]}
    assert bridge_operations(replica, edge_bridge(CONFIG, EDGE, HOME, only_b)) == []


def test_a_malformed_lease_is_refused_by_name():
    try:
        parse_lease("198.18.41.100/24 gw 198.18.41.1")
    except ValueError as err:
        assert "expected" in str(err)
    else:
        raise AssertionError("accepted a malformed lease")
    assert leases_from_external_ids({"msp-lease-br-ispA": "nonsense"}) == {}


def _snap(*tunnels: Tunnel, leased=("br-ispA", "br-ispB"), connected=True) -> Snapshot:
    return Snapshot({b: LEASES[b] for b in leased}, tuple(tunnels), connected)


ORDER = ["br-ispA", "br-ispB"]


def test_control_channel_stays_on_an_uplink_whose_tunnels_are_still_coming_up():
    snap = _snap(Tunnel("a", "x", "br-ispA", False, False), Tunnel("b", "y", "br-ispB", True, True))
    assert choose_uplink("br-ispA", snap, ORDER, stuck=False) == "br-ispA"


def test_control_channel_leaves_an_uplink_whose_tunnels_failed_for_one_that_works():
    snap = _snap(Tunnel("a", "x", "br-ispA", False, True), Tunnel("b", "y", "br-ispB", True, True))
    assert choose_uplink("br-ispA", snap, ORDER, stuck=False) == "br-ispB"


def test_control_channel_rotates_when_the_manager_is_unreachable_and_starts_on_a_leased_uplink():
    assert choose_uplink("br-ispA", _snap(), ORDER, stuck=True) == "br-ispB"
    assert choose_uplink(None, _snap(leased=("br-ispB",)), ORDER, stuck=False) == "br-ispB"
    assert choose_uplink("br-ispA", _snap(leased=()), ORDER, stuck=False) is None


def test_a_homenet_created_by_rest_is_known_to_the_manager_by_its_boxs_datapath_id(tmp_path):
    from msp_controller.box.manager import Manager
    from msp_controller.store.sqlite import SqliteStore

    path = str(tmp_path / "state.sqlite")
    manager = Manager(CONFIG, state_path=path)
    assert 0x102 not in manager.owner_by_dpid
    store = SqliteStore(path)
    store.put_homenet("home2", {
        "name": "home2", "id": 2, "datapath_id": 0x102, "prefixes": ["198.51.102.0/24"],
        "lan_ports": ["lan1"], "lan_ipv4": "198.51.102.1/24", "edges": ["edge1"],
        "egress_order": ["ispA"], "ingress_order": ["ispA"],
        "uplinks": [{"name": "ispA", "port": "up-ispA", "underlay_datapath_id": 0x121,
                     "address": "198.18.41.7"}]}, None)
    store.close()
    from msp_controller.box.manager import stored_homenets
    assert stored_homenets(CONFIG, path)["home2"].dpid == 0x102


class _FakeSession:
    """What Manager.on_change uses of an OvsdbSession: a replica, and transactions recorded."""

    def __init__(self, owner: str) -> None:
        import threading
        self.owner, self.replica, self.lock = owner, _blank_edge_replica(), threading.RLock()
        self.synced, self.pending, self.sent = threading.Event(), set(), []
        self.synced.set()

    def transact(self, ops: list) -> None:
        self.sent.append(ops)

    def lease(self, bridge: str, text: str | None) -> None:
        ext = dict(self.replica.root_external_ids())
        if text is None:
            ext.pop(f"msp-lease-{bridge}", None)
        else:
            ext[f"msp-lease-{bridge}"] = text
        uuid = next(iter(self.replica.tables["Open_vSwitch"]))
        self.replica.tables["Open_vSwitch"][uuid]["external_ids"] = ext


def test_the_controller_hears_each_new_lease_once_and_not_a_lost_one(tmp_path):
    from msp_controller.box.manager import Manager

    told = []
    manager = Manager(CONFIG, on_lease=lambda *a: told.append(a), edges_by_ovsdb=False,
                      state_path=str(tmp_path / "none.sqlite"))
    box = _FakeSession("homenet:home1")
    box.lease("br-ispA", "198.18.41.100/24 via 198.18.41.1")
    manager.on_change(box)
    assert told == [("home1", "ispA", "198.18.41.100")]
    assert box.sent and box.sent[0][-1]["op"] == "mutate"  # br-home created meanwhile
    box.lease("br-ispB", "198.18.42.100/24 via 198.18.42.1")
    box.lease("br-ispA", None)  # renumbering: the old lease is gone first
    manager.on_change(box)
    box.lease("br-ispA", "198.18.41.101/24 via 198.18.41.1")
    manager.on_change(box)
    assert told[1:] == [("home1", "ispB", "198.18.42.100"), ("home1", "ispA", "198.18.41.101")]


def _with_rates(**up_kbps: int):
    data = policy_to_json(default_policy(HOME))
    data["rates"] = {isp: {"up_kbps": kbps} for isp, kbps in up_kbps.items()}
    return parse_policy(data, HOME)


def _shaping(replica: Replica) -> dict:
    import json
    return json.loads(replica.bridge("br-home")[1]["external_ids"][SHAPING])


def test_br_home_carries_the_policys_upstream_shaping_and_a_rate_change_rewrites_only_that():
    replica = _blank_edge_replica()
    _commit(replica, bridge_operations(replica, mspmb_bridge(CONFIG, HOME)))
    assert _shaping(replica) == {"bbmb-ispA": [], "bbmb-ispB": []}  # no rates known: unshaped
    replica.tables["Bridge"][replica.bridge("br-home")[0]]["external_ids"]["theirs"] = "kept"
    ops = bridge_operations(replica, mspmb_bridge(CONFIG, HOME, _with_rates(ispA=20000)))
    assert [op["op"] for op in ops] == ["mutate"]  # no port changes, one bridge mutation
    _commit(replica, ops)
    shaping = _shaping(replica)
    assert shaping["bbmb-ispB"] == []
    top = [c for c in shaping["bbmb-ispA"] if "classid" in c and c[c.index("classid") + 1] == "1:1"][0]
    assert top[top.index("rate") + 1] == "19400kbit"  # 97 % of the ISP's 20 Mbit/s
    assert all(c[c.index("dev") + 1] == "bbmb-ispA" for c in shaping["bbmb-ispA"])
    assert replica.bridge("br-home")[1]["external_ids"]["theirs"] == "kept"
    assert bridge_operations(replica, mspmb_bridge(CONFIG, HOME, _with_rates(ispA=20000))) == []
