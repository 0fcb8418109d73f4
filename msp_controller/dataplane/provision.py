"""What each box's Open vSwitch must hold before the controller takes over.

Pure functions returning ovs-vsctl argument lists. Today the topology (or an operator)
runs them inside the box; with zero-touch provisioning the MSP pushes the same state over
OVSDB. Flows and groups are never set here: they belong to the controller.
"""
from __future__ import annotations

from collections.abc import Sequence

from msp_controller.model.config import Edge, Homenet, MspConfig, edge_slot_port, mspmb_tunnel_port

Command = list[str]

# Reconnect within a second of the controller coming back (OVS's default backoff is 8 s).
CONTROLLER_MAX_BACKOFF_MS = 1000
CONTROLLER_INACTIVITY_PROBE_MS = 5000


def _bridge(name: str, dpid: int, config: MspConfig) -> list[Command]:
    target = f"tcp:{config.controller_address}:{config.controller_port}"
    return [
        ["--may-exist", "add-br", name, "--", "set", "bridge", name,
         "datapath_type=netdev", f"other-config:datapath-id={dpid:016x}",
         "fail_mode=secure", "protocols=OpenFlow13",
         "other-config:disable-in-band=true"],
        ["set-controller", name, target],
        ["--", "set", "controller", name,
         f"max_backoff={CONTROLLER_MAX_BACKOFF_MS}",
         f"inactivity_probe={CONTROLLER_INACTIVITY_PROBE_MS}"],
    ]


def _port(bridge: str, port: str) -> Command:
    return ["--may-exist", "add-port", bridge, port]


# The inner Ethernet destination of Open vSwitch's BFD packets (its default, made explicit)
# and the only one it takes as BFD: otherwise it takes any UDP to port 3784 arriving on the
# tunnel, so the Internet's packets to a host's port 3784 never reached the host.
BFD_DST_MAC = "00:23:20:00:00:01"


def bfd_options(ms: int) -> dict[str, str]:
    """A tunnel port's BFD every ms (the edge returns the box's packets as they were sent,
    so both ends name the same destination)."""
    return {"enable": "true", "min_tx": str(ms), "min_rx": str(ms),
            "bfd_local_dst_mac": BFD_DST_MAC, "bfd_remote_dst_mac": BFD_DST_MAC}


def _tunnel(bridge: str, port: str, remote_ip: str, key: int | str, bfd_ms: int | None,
            local_ip: str | None = None) -> Command:
    """A VXLAN port; with BFD every bfd_ms, or (None) with BFD off, explicitly, so that
    provisioning an existing port turns it off."""
    # tos=inherit: the outer header carries the class's DSCP, which the shaping queues by.
    options = [f"options:remote_ip={remote_ip}", f"options:key={key}", "options:tos=inherit"]
    if local_ip is not None:
        options.append(f"options:local_ip={local_ip}")
    bfd = ["bfd:enable=false"] if bfd_ms is None else [f"bfd:{k}={v}" for k, v in bfd_options(bfd_ms).items()]
    return ["--may-exist", "add-port", bridge, port, "--", "set", "interface", port,
            "type=vxlan", *options, *bfd]


def mspmb_commands(config: MspConfig, homenet: Homenet) -> list[Command]:
    """Bridges and ports of a homenet's MSPMB: br-home plus one underlay bridge per uplink,
    and a tunnel to each of its edges over each uplink."""
    commands = _bridge(homenet.bridge, homenet.dpid, config)
    commands += [_port(homenet.bridge, port) for port in homenet.lan_ports]
    for uplink in homenet.uplinks:
        commands += _bridge(uplink.bridge, uplink.underlay_dpid, config)
        commands.append(_port(uplink.bridge, uplink.port))
        for edge_name in homenet.edges:
            edge = config.edge(edge_name)
            commands.append(_tunnel(homenet.bridge, mspmb_tunnel_port(edge, uplink),
                                    str(edge.tunnel_ip(uplink.slot)), homenet.id,
                                    config.bfd_ms(edge)))
    return commands


def edge_commands(config: MspConfig, edge: Edge) -> list[Command]:
    """Bridges and ports of an edge: br-msp (Internet port, tunnels) and br-up (underlay).

    One flow-based VXLAN port per uplink slot serves every homenet: the controller's flows
    pick a homenet by key and box address, so adding a homenet adds no port. The edge's
    tunnels run no BFD: they return the MSPMB's (docs/design.md).
    """
    commands = _bridge(edge.bridge, edge.dpid, config)
    commands.append(_port(edge.bridge, edge.internet_port))
    commands += _bridge(edge.underlay_bridge, edge.underlay_dpid, config)
    commands.append(_port(edge.underlay_bridge, edge.underlay_port))
    for slot in range(len(edge.tunnel_addresses)):
        commands.append(_tunnel(edge.bridge, edge_slot_port(slot), "flow", "flow", None,
                                local_ip=str(edge.tunnel_ip(slot))))
    return commands


def edge_routes(edge: Edge) -> list[Command]:
    """`ip` commands for the edge's underlay: tunnel addresses on br-up, default route."""
    commands = [["link", "set", edge.underlay_bridge, "up"]]
    commands += [["addr", "replace", str(a), "dev", edge.underlay_bridge] for a in edge.tunnel_addresses]
    commands.append(["route", "replace", "default", "via", str(edge.underlay_gateway),
                     "dev", edge.underlay_bridge])
    return commands


def mspmb_routes(config: MspConfig, homenet: Homenet,
                 uplink_gateways: dict[str, str]) -> list[Command]:
    """`ip` routes pinning each edge tunnel address to its uplink (ISP gateway by uplink name)."""
    return [["route", "replace", f"{config.edge(edge_name).tunnel_ip(uplink.slot)}/32",
             "via", uplink_gateways[uplink.name], "dev", uplink.bridge]
            for edge_name in homenet.edges for uplink in homenet.uplinks]


def as_shell(commands: Sequence[Command], program: str) -> str:
    import shlex
    return "\n".join(" ".join([program, *map(shlex.quote, c)]) for c in commands)
