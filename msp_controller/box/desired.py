"""What a box's OVSDB must hold for one homenet, as values (no OVSDB, no sockets).

The same state msp_controller.dataplane.provision describes as ovs-vsctl lists, here as
bridge and port specs that ovsdb_ops turns into one OVSDB transaction. The MSPMB's tunnels
do not depend on its leases (they end at the edge's per-slot address, and the box routes
that address over the uplink: see agent.py); the edge's tunnel to an uplink ends at the
address that uplink leased, so only the edge's side follows a renumbering.
Every port carries external_ids msp-owner=<homenet>: a diff only ever touches that
homenet's ports, so the work per event does not grow with the homenets at an edge.
"""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from msp_controller.dataplane.provision import CONTROLLER_INACTIVITY_PROBE_MS, CONTROLLER_MAX_BACKOFF_MS, bfd_options
from msp_controller.dataplane.shaping import mspmb_shaping
from msp_controller.model.config import Edge, Homenet, MspConfig, mspmb_tunnel_port
from msp_controller.model.policy import Policy, default_policy

OWNER = "msp-owner"  # external_ids key naming the homenet a port belongs to
UPLINK = "msp-uplink"  # external_ids key: the underlay bridge a box tunnel must leave by
LEASE_PREFIX = "msp-lease-"  # Open_vSwitch external_ids msp-lease-<bridge> = "<ip>/<len> via <gw>"
# br-home's external_ids: the upstream shaping the box agent applies, as JSON
# {uplink port: [tc arguments, ...]} (dataplane/shaping.py); [] means none on that port.
SHAPING = "msp-shaping"


@dataclass(frozen=True)
class Lease:
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address


def parse_lease(text: str) -> Lease:
    """'198.18.1.100/24 via 198.18.1.1' -> Lease; ValueError naming the problem."""
    parts = text.split()
    if len(parts) != 3 or parts[1] != "via":
        raise ValueError(f"lease {text!r}: expected '<address>/<length> via <gateway>'")
    return Lease(ipaddress.IPv4Interface(parts[0]), ipaddress.IPv4Address(parts[2]))


def leases_from_external_ids(external_ids: Mapping[str, str]) -> dict[str, Lease]:
    """Leases by underlay bridge from the box's Open_vSwitch external_ids; a malformed one is
    skipped (the box wrote it; the previous tunnel ends stay)."""
    leases = {}
    for key, value in external_ids.items():
        if key.startswith(LEASE_PREFIX):
            try:
                leases[key[len(LEASE_PREFIX):]] = parse_lease(value)
            except ValueError:
                continue
    return leases


@dataclass(frozen=True)
class PortSpec:
    name: str
    type: str = ""  # "" is a system port (a veth)
    options: Mapping[str, str] = field(default_factory=dict)
    bfd: Mapping[str, str] = field(default_factory=dict)
    external_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    owner: str  # the homenet whose ports these are
    other_config: Mapping[str, str]
    controller: str
    ports: tuple[PortSpec, ...]
    keep: tuple[str, ...] = ()  # the owner's ports left as they are if present (not pruned)
    external_ids: Mapping[str, str] = field(default_factory=dict)  # these keys kept in step, others left
    fail_mode: str = "secure"
    protocols: tuple[str, ...] = ("OpenFlow13",)
    controller_settings: Mapping[str, int] = field(default_factory=lambda: {
        "max_backoff": CONTROLLER_MAX_BACKOFF_MS, "inactivity_probe": CONTROLLER_INACTIVITY_PROBE_MS})


def controller_target(config: MspConfig) -> str:
    return f"ssl:{config.controller_address}:{config.controller_port}"


def shaping_text(homenet: Homenet, policy: Policy | None) -> str:
    """The SHAPING value for a policy (the homenet's default policy when None)."""
    policy = policy or default_policy(homenet)
    return json.dumps({u.port: mspmb_shaping(policy, u) for u in homenet.uplinks}, sort_keys=True,
                      separators=(",", ":"))


def mspmb_bridge(config: MspConfig, homenet: Homenet, policy: Policy | None = None) -> BridgeSpec:
    """br-home: LAN ports and a tunnel to each edge over each uplink (BFD on), and the
    upstream shaping of the policy in force (its rates and queues) for the box's agent."""
    ports = [PortSpec(p, external_ids={OWNER: homenet.name}) for p in homenet.lan_ports]
    for edge_name in homenet.edges:
        edge = config.edge(edge_name)
        for uplink in homenet.uplinks:
            ports.append(PortSpec(
                mspmb_tunnel_port(edge, uplink), "vxlan",
                {"remote_ip": str(edge.tunnel_ip(uplink.slot)), "key": str(homenet.id)},
                bfd_options(config.bfd_ms(edge)),
                {OWNER: homenet.name, UPLINK: uplink.bridge}))
    return BridgeSpec(homenet.bridge, homenet.name,
                      {"datapath-id": f"{homenet.dpid:016x}", "disable-in-band": "true"},
                      controller_target(config), tuple(ports),
                      external_ids={SHAPING: shaping_text(homenet, policy)})


def standin_edge_port(homenet: Homenet, uplink_name: str) -> str:
    return f"hn{homenet.id}-{uplink_name}"[:15]


def edge_bridge(config: MspConfig, edge: Edge, homenet: Homenet,
                leases: Mapping[str, Lease]) -> BridgeSpec:
    """The edge's per-homenet tunnel ports, one per uplink that holds a lease, ending there.

    For an edge without flow-based ports (blank-box topology's stand-in edge): it runs BFD
    itself. An uplink without a lease keeps whatever port it had (its last address)."""
    ports, keep = [], []
    for uplink in homenet.uplinks:
        lease = leases.get(uplink.bridge)
        if lease is None:
            keep.append(standin_edge_port(homenet, uplink.name))
            continue
        ports.append(PortSpec(
            standin_edge_port(homenet, uplink.name), "vxlan",
            {"remote_ip": str(lease.address.ip), "local_ip": str(edge.tunnel_ip(uplink.slot)),
             "key": str(homenet.id)},
            bfd_options(config.bfd_ms(edge)), {OWNER: homenet.name}))
    return BridgeSpec(edge.bridge, homenet.name,
                      {"datapath-id": f"{edge.dpid:016x}", "disable-in-band": "true"},
                      controller_target(config), tuple(ports), tuple(keep))
