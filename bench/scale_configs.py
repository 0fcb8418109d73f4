"""Synthetic MSP configs for the scale benchmark: N homenets shaped like etc/reference.toml's
home1 (two ISPs, two edges, edge1 primary), each with its own name, id, datapath ids and
prefixes, on the reference config's two edges.

Homenet i (1-based) gets
  name "hn<i>", id i, MSPMB datapath id DPID_BASE + 4i, underlays DPID_BASE + 4i + 1, + 2,
  the i-th IPv4 /28 of a pool and the i-th IPv6 /56 of 2001:db8::/32 (lan: first /64),
and every SLA_EVERY-th homenet carries an sla-class policy (so probes have sla paths).
"""
from __future__ import annotations

import copy
import ipaddress
import json
import pathlib
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

REFERENCE = pathlib.Path(__file__).resolve().parent.parent / "etc" / "reference.toml"
DPID_BASE = 0x5C << 32  # far from the reference's 0xe1..0x112
# The in-memory benchmark may use any distinct prefixes; the real one (Part 2) keeps to the
# project's benchmarking range, like every emulated network here.
CORE_V4_POOL = ipaddress.IPv4Network("100.64.0.0/10")  # 262,144 /28s
REAL_V4_POOL = ipaddress.IPv4Network("198.18.128.0/17")  # 2,048 /28s, clear of 198.18.10-21.x
V6_POOL = ipaddress.IPv6Network("2001:db8::/32")
UPLINK_POOL = (ipaddress.IPv4Network("172.16.0.0/16"), ipaddress.IPv4Network("172.17.0.0/16"))  # boxes' ISP ends
V4_LENGTH, V6_LENGTH = 28, 56
ISPS = ("ispA", "ispB")
SLA_EVERY = 10  # 1 homenet in 10 has an sla class

FAILOVER_AB = {"mode": "failover", "order": ["ispA", "ispB"]}
FAILOVER_BA = {"mode": "failover", "order": ["ispB", "ispA"]}
SLA_RULE = {"mode": "sla", "order": ["ispA", "ispB"], "max_rtt_ms": 150, "max_loss_pct": 5}
SLA_POLICY: dict[str, Any] = {
    "classes": [{"name": "gaming", "match": {"protocol": "udp", "dst_ports": ["27000-27100"]},
                 "egress": SLA_RULE, "ingress": SLA_RULE}],
    "default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB},
}
# Two valid policies that differ everywhere, applied alternately by the policy-change measure.
POLICY_A: dict[str, Any] = {
    "classes": [{"name": "voice", "match": {"protocol": "udp", "dscp": 46},
                 "egress": FAILOVER_BA, "ingress": FAILOVER_BA}],
    "default": {"egress": FAILOVER_AB, "ingress": FAILOVER_AB},
}
POLICY_B: dict[str, Any] = {
    "classes": [{"name": "bulk", "match": {"protocol": "tcp", "dst_ports": [80, 443, "8000-8080"]},
                 "egress": {"mode": "balance", "weights": {"ispA": 3, "ispB": 1}}, "ingress": FAILOVER_AB}],
    "default": {"egress": FAILOVER_BA, "ingress": FAILOVER_BA},
}


def reference() -> dict[str, Any]:
    with open(REFERENCE, "rb") as handle:
        return tomllib.load(handle)


def mspmb_dpid(index: int) -> int:
    return DPID_BASE + 4 * index


def uplink_address(index: int, slot: int) -> ipaddress.IPv4Address:
    """What ISP `slot` leased to homenet `index`'s box: one /16 per ISP (up to 65,534 homes)."""
    return UPLINK_POOL[slot].network_address + index + 1


def homenet_table(index: int, v4_pool: ipaddress.IPv4Network = CORE_V4_POOL) -> dict[str, Any]:
    """Homenet `index` as a [[homenets]] table (also the body of POST /api/v1/homenets)."""
    v4 = _nth_subnet(v4_pool, V4_LENGTH, index)
    v6 = _nth_subnet(V6_POOL, V6_LENGTH, index)
    dpid = mspmb_dpid(index)
    return {
        "name": f"hn{index}",
        "id": index,
        "datapath_id": dpid,
        "prefixes": [str(v4), str(v6)],
        "lan_ports": ["lan1", "lan2"],
        "lan_ipv4": f"{v4.network_address + 1}/{V4_LENGTH}",
        "lan_ipv6": f"{v6.network_address + 1}/64",
        "edges": ["edge1", "edge2"],
        "backup_prepend": 2,
        "egress_order": list(ISPS),
        "ingress_order": list(ISPS),
        "uplinks": [{"name": isp, "port": f"up-{isp}", "underlay_datapath_id": dpid + 1 + slot,
                     "address": str(uplink_address(index, slot))}
                    for slot, isp in enumerate(ISPS)],
    }


def _nth_subnet(pool: ipaddress.IPv4Network | ipaddress.IPv6Network, length: int, index: int) -> Any:
    size = 1 << (pool.max_prefixlen - length)
    if index * size >= pool.num_addresses:
        raise ValueError(f"{pool} holds fewer than {index + 1} /{length} prefixes")
    return ipaddress.ip_network((int(pool.network_address) + index * size, length))


def config_dict(homenets: int, v4_pool: ipaddress.IPv4Network = CORE_V4_POOL, bgp: bool = True,
                first: int = 1) -> dict[str, Any]:
    """A decoded config: the reference [msp] and edges, and homenets first..first+homenets-1.

    bgp=False drops [bgp] and the edges' neighbours (nobody to peer with in Part 2)."""
    ref = reference()
    data: dict[str, Any] = {"msp": dict(ref["msp"]), "edges": copy.deepcopy(ref["edges"])}
    if bgp:
        data["bgp"] = dict(ref["bgp"])
    else:
        for edge in data["edges"]:
            edge.pop("bgp_neighbors", None)
    data["homenets"] = [homenet_table(i, v4_pool) for i in range(first, first + homenets)]
    return data


def sla_homenets(names: Iterable[str]) -> list[str]:
    """The homenets that carry SLA_POLICY: every SLA_EVERY-th (hn10, hn20, ...)."""
    return [name for name in names if int(name[2:]) % SLA_EVERY == 0]


# --- TOML (only the shapes above: strings, integers, lists, inline tables) ------------------


def to_toml(data: Mapping[str, Any]) -> str:
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]", *_pairs(value)]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for table in value:
                lines += ["", f"[[{key}]]", *_pairs(table)]
        else:
            lines.insert(0, f"{key} = {_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _pairs(table: Mapping[str, Any]) -> list[str]:
    return [f"{key} = {_value(value)}" for key, value in table.items()]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, for the ASCII used here
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")
