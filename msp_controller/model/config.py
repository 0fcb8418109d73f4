"""Parse and validate the MSP configuration (TOML) into frozen, typed objects.

Everything the controller knows about edges and homenets comes from here. A config is
validated once; any problem raises FieldError naming the offending field, and the caller
keeps whatever config it had before.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from msp_controller.model.access import ApiToken, Role
from msp_controller.model.autoconf import Autoconf, parse_autoconf
from msp_controller.model.errors import FieldError
from msp_controller.model.flood import MAX_PUNT_PPS, PROBE_BUDGET_PPS, REASONS, PuntRates
from msp_controller.model.qos import RATE_FIELDS, IspRates, parse_rates

IPv4Interface = ipaddress.IPv4Interface
IPv6Interface = ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# OpenFlow port names carry 15 characters; tunnel port names are built from these names.
SHORT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,5}$")
HOMENET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
PORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DEFAULT_CONTROLLER_ADDRESS = "198.19.0.1"
DEFAULT_STATE_PATH = "/var/lib/msp/state.sqlite"
MAX_HOMENET_ID = 65535  # also the VXLAN key and part of group ids


@dataclass(frozen=True)
class Uplink:
    """One ISP connection of a homenet's MSPMB."""

    name: str  # ISP name, short: it is part of tunnel port and bridge names
    port: str  # the MSPMB's interface towards this ISP
    underlay_dpid: int  # datapath id of the bridge that carries this uplink's tunnel packets
    slot: int  # index among the homenet's uplinks: selects the edge tunnel address
    # The address the ISP gave this uplink, where the edge's tunnel ends: static here, or
    # reported at run time by the box (a DHCP lease); None until it is known.
    address: ipaddress.IPv4Address | None = None
    rates: IspRates = IspRates()  # the ISP's access rates (down_kbps, up_kbps); a policy may override them

    @property
    def bridge(self) -> str:
        return f"br-{self.name}"


@dataclass(frozen=True)
class BgpNeighbor:
    """An upstream router that learns, from the controller, the prefixes served by one edge."""

    address: ipaddress.IPv4Address
    asn: int


@dataclass(frozen=True)
class BgpConfig:
    asn: int
    router_id: ipaddress.IPv4Address
    hold_down_s: float  # an edge must stay healthy this long before it announces again
    listen_port: int  # 0: only connect out, never listen
    source_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None  # None: msp.controller_address


@dataclass(frozen=True)
class Edge:
    """An MSP edge switch: tunnels to homenets on one side, the Internet on the other."""

    name: str
    dpid: int  # bridge br-msp: tunnels and the Internet port
    underlay_dpid: int  # bridge br-up: carries the tunnel packets
    underlay_port: str
    underlay_gateway: ipaddress.IPv4Address
    tunnel_addresses: tuple[IPv4Interface, ...]  # one per homenet uplink slot
    internet_port: str
    internet_mac: str
    internet_ipv4: IPv4Interface
    internet_gateway_ipv4: ipaddress.IPv4Address
    internet_ipv6: IPv6Interface | None
    internet_gateway_ipv6: ipaddress.IPv6Address | None
    bgp_neighbors: tuple[BgpNeighbor, ...] = ()
    bfd_interval_ms: int | None = None  # overrides msp.bfd_interval_ms for this edge's tunnels

    bridge = "br-msp"
    underlay_bridge = "br-up"

    def tunnel_ip(self, slot: int) -> ipaddress.IPv4Address:
        return self.tunnel_addresses[slot].ip


@dataclass(frozen=True)
class Homenet:
    """A customer network: its MSPMB, PI prefixes, uplinks and egress/ingress order."""

    name: str
    id: int
    dpid: int  # the MSPMB's bridge br-home
    prefixes: tuple[IPNetwork, ...]
    lan_ports: tuple[str, ...]
    lan_ipv4: IPv4Interface  # gateway address the hosts use, and the on-link subnet
    lan_ipv6: IPv6Interface | None
    gateway_mac: str
    edges: tuple[str, ...]  # in order of preference: the first is the primary
    uplinks: tuple[Uplink, ...]
    egress_order: tuple[str, ...]
    ingress_order: tuple[str, ...]
    backup_prepend: int = 2  # AS-path prepends on the announcements of every edge but the first
    autoconf: Autoconf | None = None  # DHCPv4 and router advertisements for its hosts (model/autoconf.py)

    bridge = "br-home"

    @property
    def edge(self) -> str:
        """The primary edge."""
        return self.edges[0]

    def uplink(self, name: str) -> Uplink:
        for uplink in self.uplinks:
            if uplink.name == name:
                return uplink
        raise KeyError(name)

    @property
    def prefixes_v4(self) -> tuple[ipaddress.IPv4Network, ...]:
        return tuple(p for p in self.prefixes if isinstance(p, ipaddress.IPv4Network))

    @property
    def prefixes_v6(self) -> tuple[ipaddress.IPv6Network, ...]:
        return tuple(p for p in self.prefixes if isinstance(p, ipaddress.IPv6Network))


@dataclass(frozen=True)
class ApiTls:
    """The REST API over HTTPS: PEM files readable by the controller."""

    cert: str
    key: str


@dataclass(frozen=True)
class MspConfig:
    bfd_interval_ms: int
    edges: tuple[Edge, ...]
    homenets: tuple[Homenet, ...]
    controller_address: str = DEFAULT_CONTROLLER_ADDRESS
    controller_port: int = 6653
    vxlan_port: int = 4789
    bgp: BgpConfig | None = None
    state_path: str = DEFAULT_STATE_PATH  # the SQLite store of runtime homenets and policies
    api_tokens: tuple[ApiToken, ...] = ()  # none: the REST API is open (loopback only)
    api_tls: ApiTls | None = None  # the REST API's certificate and key; none: plain HTTP
    flood: PuntRates = PuntRates()  # packet-in rate caps per switch and reason ([flood])
    extra: Mapping[str, Any] = field(default_factory=dict)

    def edge(self, name: str) -> Edge:
        for edge in self.edges:
            if edge.name == name:
                return edge
        raise KeyError(name)

    def bfd_ms(self, edge: Edge) -> int:
        return edge.bfd_interval_ms or self.bfd_interval_ms

    def homenet(self, name: str) -> Homenet:
        for homenet in self.homenets:
            if homenet.name == name:
                return homenet
        raise KeyError(name)


def edge_tunnel_port(uplink: Uplink) -> str:
    """Name of the edge's tunnel port for one uplink slot: one flow-based VXLAN port serves
    that slot of every homenet (the VXLAN key selects the homenet, the uplink's address
    its end), so an edge holds no port per homenet."""
    return edge_slot_port(uplink.slot)


def with_uplink_address(homenet: Homenet, uplink: str, address: ipaddress.IPv4Address | None) -> Homenet:
    """The homenet with one uplink's address changed (KeyError: no such uplink)."""
    homenet.uplink(uplink)
    return dataclasses.replace(homenet, uplinks=tuple(
        dataclasses.replace(u, address=address) if u.name == uplink else u for u in homenet.uplinks))


def edge_slot_port(slot: int) -> str:
    return f"vxlan-slot{slot}"


def mspmb_tunnel_port(edge: Edge, uplink: Uplink) -> str:
    """Name of the MSPMB's tunnel port to one edge over one uplink."""
    return f"{edge.name}-{uplink.name}"


# --- parsing helpers: each names the field it reads -------------------------------------


class _Table:
    """A TOML table plus its dotted path, so every error can say where it is."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise FieldError(where, f"must be a table, not {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.where = where
        self.read: set[str] = set()

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, default: Any = None, required: bool = True) -> Any:
        self.read.add(key)
        if key not in self.data:
            if required:
                raise FieldError(self.path(key), "is required")
            return default
        return self.data[key]

    def string(self, key: str, pattern: re.Pattern[str] | None = None, **kw: Any) -> str:
        """A string field; an optional one that is absent gives "" (callers supply defaults)."""
        value = self.get(key, **kw)
        if value is None and not kw.get("required", True):
            return ""
        if not isinstance(value, str):
            raise FieldError(self.path(key), f"must be a string, not {value!r}")
        if pattern is not None and not pattern.match(value):
            raise FieldError(self.path(key), f"{value!r} does not match {pattern.pattern}")
        return value

    def integer(self, key: str, low: int, high: int, **kw: Any) -> int:
        value = self.get(key, **kw)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(self.path(key), f"must be an integer, not {value!r}")
        if not low <= value <= high:
            raise FieldError(self.path(key), f"{value} is out of range {low}..{high}")
        return value

    def dpid(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                raise FieldError(self.path(key), f"{value!r} is not a datapath id") from None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**64:
            raise FieldError(self.path(key), f"{value!r} is not a datapath id (1..2^64-1)")
        return value

    def strings(self, key: str, pattern: re.Pattern[str] | None = None, **kw: Any) -> list[str]:
        value = self.get(key, **kw)
        if value is None and not kw.get("required", True):
            return []
        if not isinstance(value, list) or not value:
            raise FieldError(self.path(key), "must be a non-empty list of strings")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise FieldError(f"{self.path(key)}[{index}]", f"must be a string, not {item!r}")
            if pattern is not None and not pattern.match(item):
                raise FieldError(f"{self.path(key)}[{index}]", f"{item!r} does not match {pattern.pattern}")
        return value

    def tables(self, key: str) -> list[_Table]:
        value = self.get(key)
        if not isinstance(value, list) or not value:
            raise FieldError(self.path(key), "must be a non-empty list of tables ([[...]])")
        return [_Table(item, f"{self.path(key)}[{i}]") for i, item in enumerate(value)]

    def address(self, key: str, kind: Callable[[Any], Any], **kw: Any) -> Any:
        value = self.get(key, **kw)
        if value is None and not kw.get("required", True):
            return None
        try:
            return kind(value)
        except (ValueError, TypeError) as err:
            what = getattr(kind, "__name__", "address")
            raise FieldError(self.path(key), f"{value!r} is not a valid {what}: {err}") from None

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            raise FieldError(self.path(unknown[0]), "unknown field (misspelt?)")


def _unique(items: Sequence[Any], where: str, what: str) -> None:
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            raise FieldError(where, f"duplicate {what} {item!r}")
        seen.add(item)


def _mac(table: _Table, key: str, default: str) -> str:
    value = table.string(key, required=False) or default
    value = value.lower()
    if not MAC.match(value):
        raise FieldError(table.path(key), f"{value!r} is not a MAC address")
    if int(value[:2], 16) & 1:
        raise FieldError(table.path(key), f"{value!r} is a multicast MAC address")
    return value


def _parse_edge(table: _Table) -> Edge:
    name = table.string("name", SHORT_NAME)
    tunnel_addresses = tuple(
        _parse_interface(item, f"{table.path('tunnel_addresses')}[{i}]", IPv4Interface)
        for i, item in enumerate(table.strings("tunnel_addresses"))
    )
    _unique([a.ip for a in tunnel_addresses], table.path("tunnel_addresses"), "address")
    dpid = table.dpid("datapath_id")
    v6 = table.address("internet_ipv6", IPv6Interface, required=False)
    gw6 = table.address("internet_gateway_ipv6", ipaddress.IPv6Address, required=v6 is not None)
    edge = Edge(
        name=name,
        dpid=dpid,
        underlay_dpid=table.dpid("underlay_datapath_id"),
        underlay_port=table.string("underlay_port", PORT_NAME),
        underlay_gateway=table.address("underlay_gateway", ipaddress.IPv4Address),
        tunnel_addresses=tunnel_addresses,
        internet_port=table.string("internet_port", PORT_NAME),
        internet_mac=_mac(table, "internet_mac", _derived_mac(0x0E, dpid)),
        internet_ipv4=table.address("internet_ipv4", IPv4Interface),
        internet_gateway_ipv4=table.address("internet_gateway_ipv4", ipaddress.IPv4Address),
        internet_ipv6=v6,
        internet_gateway_ipv6=gw6,
        bgp_neighbors=_parse_neighbors(table),
        bfd_interval_ms=table.integer("bfd_interval_ms", 10, 10000, default=None, required=False)
        if "bfd_interval_ms" in table.data else None,
    )
    if edge.internet_gateway_ipv4 not in edge.internet_ipv4.network:
        raise FieldError(table.path("internet_gateway_ipv4"), f"not in {edge.internet_ipv4.network}")
    if v6 is not None and gw6 not in v6.network:
        raise FieldError(table.path("internet_gateway_ipv6"), f"not in {v6.network}")
    table.check_unknown()
    return edge


def _parse_neighbors(table: _Table) -> tuple[BgpNeighbor, ...]:
    raw = table.get("bgp_neighbors", default=[], required=False)
    if not isinstance(raw, list):
        raise FieldError(table.path("bgp_neighbors"), "must be a list of tables")
    neighbors = []
    for index, item in enumerate(raw):
        neighbor = _Table(item, f"{table.path('bgp_neighbors')}[{index}]")
        neighbors.append(BgpNeighbor(neighbor.address("address", ipaddress.IPv4Address),
                                     neighbor.integer("asn", 1, 2**32 - 1)))
        neighbor.check_unknown()
    _unique([n.address for n in neighbors], table.path("bgp_neighbors"), "neighbor")
    return tuple(neighbors)


def _parse_bgp(root: _Table) -> BgpConfig | None:
    raw = root.get("bgp", default=None, required=False)
    if raw is None:
        return None
    table = _Table(raw, "bgp")
    bgp = BgpConfig(
        asn=table.integer("asn", 1, 2**32 - 1),
        router_id=table.address("router_id", ipaddress.IPv4Address),
        hold_down_s=float(table.integer("hold_down_s", 0, 3600, default=5, required=False)),
        listen_port=table.integer("listen_port", 0, 65535, default=0, required=False),
        source_address=table.address("source_address", ipaddress.ip_address, required=False),
    )
    table.check_unknown()
    return bgp


def _parse_interface(value: str, where: str, kind: type) -> Any:
    try:
        return kind(value)
    except (ValueError, TypeError) as err:
        raise FieldError(where, f"{value!r} is not a valid {kind.__name__}: {err}") from None


def _derived_mac(role: int, dpid: int) -> str:
    # Locally administered unicast MAC derived from the datapath id: stable across restarts.
    raw = bytes([0x02 | (role << 2) & 0xFC]) + (dpid & (2**40 - 1)).to_bytes(5, "big")
    return ":".join(f"{b:02x}" for b in raw)


def _parse_order(table: _Table, key: str, uplinks: Sequence[Uplink]) -> tuple[str, ...]:
    names = [u.name for u in uplinks]
    order = table.strings(key, required=False) or names
    for index, isp in enumerate(order):
        if isp not in names:
            raise FieldError(f"{table.path(key)}[{index}]", f"unknown ISP {isp!r} (uplinks: {', '.join(names)})")
    _unique(order, table.path(key), "ISP")
    return tuple(order)


def _parse_homenet(table: _Table, edges: Mapping[str, Edge]) -> Homenet:
    name = table.string("name", HOMENET_NAME)
    prefixes: list[IPNetwork] = []
    for index, text in enumerate(table.strings("prefixes")):
        where = f"{table.path('prefixes')}[{index}]"
        try:
            prefixes.append(ipaddress.ip_network(text))
        except ValueError as err:
            raise FieldError(where, f"{text!r} is not a prefix: {err}") from None
    for i, a in enumerate(prefixes):
        for b in prefixes[i + 1:]:
            if a.version == b.version and a.overlaps(b):
                raise FieldError(table.path("prefixes"), f"{a} overlaps {b}")
    if not any(p.version == 4 for p in prefixes):
        raise FieldError(table.path("prefixes"), "needs at least one IPv4 prefix")

    uplinks = []
    for slot, uplink_table in enumerate(table.tables("uplinks")):
        uplinks.append(Uplink(
            name=uplink_table.string("name", SHORT_NAME),
            port=uplink_table.string("port", PORT_NAME),
            underlay_dpid=uplink_table.dpid("underlay_datapath_id"),
            slot=slot,
            address=uplink_table.address("address", ipaddress.IPv4Address, required=False),
            rates=parse_rates({key: uplink_table.get(key, required=False) for key in RATE_FIELDS
                               if key in uplink_table.data}, uplink_table.where),
        ))
        uplink_table.check_unknown()
    _unique([u.name for u in uplinks], table.path("uplinks"), "uplink name")
    _unique([u.port for u in uplinks], table.path("uplinks"), "uplink port")

    if "edge" in table.data and "edges" in table.data:
        raise FieldError(table.path("edges"), "give either edge or edges, not both")
    if "edges" in table.data:
        edge_names = table.strings("edges")
        key = "edges"
    else:
        edge_names = [table.string("edge")]
        key = "edge"
    for index, edge_name in enumerate(edge_names):
        where = table.path(key) if key == "edge" else f"{table.path(key)}[{index}]"
        if edge_name not in edges:
            raise FieldError(where, f"unknown edge {edge_name!r}")
        if len(uplinks) > len(edges[edge_name].tunnel_addresses):
            raise FieldError(
                table.path("uplinks"),
                f"{len(uplinks)} uplinks but edge {edge_name!r} has only "
                f"{len(edges[edge_name].tunnel_addresses)} tunnel_addresses",
            )
    _unique(edge_names, table.path(key), "edge")

    lan_ipv4 = table.address("lan_ipv4", IPv4Interface)
    lan_ipv6 = table.address("lan_ipv6", IPv6Interface, required=False)
    for key, lan in (("lan_ipv4", lan_ipv4), ("lan_ipv6", lan_ipv6)):
        if lan is not None and not any(
            p.version == lan.version and lan.network.subnet_of(p) for p in prefixes  # type: ignore[arg-type]
        ):
            raise FieldError(table.path(key), f"{lan.network} is not inside the homenet's prefixes")
    if lan_ipv6 is None and any(p.version == 6 for p in prefixes):
        raise FieldError(table.path("lan_ipv6"), "is required when the homenet has an IPv6 prefix")
    dpid = table.dpid("datapath_id")
    lan_ports = table.strings("lan_ports", PORT_NAME)
    _unique(lan_ports, table.path("lan_ports"), "port")
    homenet = Homenet(
        name=name,
        id=table.integer("id", 1, MAX_HOMENET_ID),
        dpid=dpid,
        prefixes=tuple(prefixes),
        lan_ports=tuple(lan_ports),
        lan_ipv4=lan_ipv4,
        lan_ipv6=lan_ipv6,
        gateway_mac=_mac(table, "gateway_mac", _derived_mac(0x01, dpid)),
        edges=tuple(edge_names),
        uplinks=tuple(uplinks),
        egress_order=_parse_order(table, "egress_order", uplinks),
        ingress_order=_parse_order(table, "ingress_order", uplinks),
        backup_prepend=table.integer("backup_prepend", 0, 10, default=2, required=False),
        autoconf=parse_autoconf(table.get("autoconf", required=False), table.path("autoconf"), lan_ipv4, lan_ipv6),
    )
    clash = set(lan_ports) & {u.port for u in uplinks}
    if clash:
        raise FieldError(table.path("lan_ports"), f"port {sorted(clash)[0]!r} is also an uplink")
    table.check_unknown()
    return homenet


def parse_config(data: Mapping[str, Any]) -> MspConfig:
    """Validate a decoded TOML document. Raises FieldError naming the first bad field."""
    root = _Table(dict(data), "")
    msp = _Table(root.get("msp", default={}, required=False), "msp")
    bfd = msp.integer("bfd_interval_ms", 10, 10000, default=30, required=False)
    controller_address = msp.string("controller_address", required=False) or DEFAULT_CONTROLLER_ADDRESS
    try:
        ipaddress.ip_address(controller_address)
    except ValueError:
        raise FieldError("msp.controller_address", f"{controller_address!r} is not an IP address") from None
    controller_port = msp.integer("controller_port", 1, 65535, default=6653, required=False)
    state_path = msp.string("state_path", required=False) or DEFAULT_STATE_PATH
    msp.check_unknown()

    edges = [_parse_edge(t) for t in root.tables("edges")]
    _unique([e.name for e in edges], "edges", "edge name")
    by_name = {e.name: e for e in edges}

    _unique([d for e in edges for d in (e.dpid, e.underlay_dpid)], "edges", "datapath id")
    from msp_controller.model.homenet_index import HomenetIndex  # it builds on this module's types

    # Clashes between homenets are checked as each is added, in time that does not grow
    # with their number (a config may list thousands).
    index = HomenetIndex(edges)
    homenets = []
    for position, table in enumerate(root.tables("homenets")):
        homenet = _parse_homenet(table, by_name)
        index.check(homenet, where=f"homenets[{position}]")
        index.add(homenet)
        homenets.append(homenet)
    bgp = _parse_bgp(root)
    api_tokens, api_tls = _parse_api(root)
    flood = _parse_flood(root)
    if bgp is None:
        for edge in edges:
            if edge.bgp_neighbors:
                raise FieldError(f"edges.{edge.name}.bgp_neighbors", "needs a [bgp] section (asn, router_id)")
    root.check_unknown()
    return MspConfig(
        bfd_interval_ms=bfd,
        edges=tuple(edges),
        homenets=tuple(homenets),
        controller_address=controller_address,
        controller_port=controller_port,
        bgp=bgp,
        state_path=state_path,
        api_tokens=api_tokens,
        api_tls=api_tls,
        flood=flood,
    )


def parse_homenet(data: Any, config: MspConfig, where: str = "homenet") -> Homenet:
    """One homenet (a REST body or a stored record), validated against the MSP's edges.
    Clashes with other homenets are the caller's to check (homenet_index.HomenetIndex)."""
    return _parse_homenet(_Table(data, where), {edge.name: edge for edge in config.edges})


SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _parse_flood(root: _Table) -> PuntRates:
    """[flood] <reason>_pps: packets per second a switch may send the controller for it."""
    raw = root.get("flood", default=None, required=False)
    if raw is None:
        return PuntRates()
    table = _Table(raw, "flood")
    defaults = PuntRates()
    rates = {f"{reason}_pps": table.integer(f"{reason}_pps", 1, MAX_PUNT_PPS, required=False,
                                            default=defaults.pps(reason)) for reason in REASONS}
    if rates["probe_pps"] < PROBE_BUDGET_PPS:
        raise FieldError(table.path("probe_pps"), f"{rates['probe_pps']} is below the controller's probe budget "
                                                  f"({PROBE_BUDGET_PPS}/s): probes would be lost")
    table.check_unknown()
    return PuntRates(**rates)


def _parse_api(root: _Table) -> tuple[tuple[ApiToken, ...], ApiTls | None]:
    raw = root.get("api", default=None, required=False)
    if raw is None:
        return (), None
    api = _Table(raw, "api")
    tls = _parse_api_tls(api)
    tokens = []
    for table in api.tables("tokens"):
        role_name = table.string("role")
        try:
            role = Role(role_name)
        except ValueError:
            raise FieldError(table.path("role"), f"{role_name!r} is not a role (operator, owner)") from None
        homenet = table.string("homenet", HOMENET_NAME, required=role is Role.OWNER) or None
        if role is Role.OPERATOR and homenet:
            raise FieldError(table.path("homenet"), "an operator token is for every homenet: leave it out")
        tokens.append(ApiToken(name=table.string("name", HOMENET_NAME), role=role,
                               sha256=table.string("sha256", SHA256_HEX), homenet=homenet))
        table.check_unknown()
    api.check_unknown()
    _unique([t.name for t in tokens], "api.tokens", "token name")
    _unique([t.sha256 for t in tokens], "api.tokens", "token digest")
    return tuple(tokens), tls


def _parse_api_tls(api: _Table) -> ApiTls | None:
    """tls_cert and tls_key: both or neither, each a readable file."""
    cert = api.string("tls_cert", required=False)
    key = api.string("tls_key", required=False)
    if not cert and not key:
        return None
    for name, value in (("tls_cert", cert), ("tls_key", key)):
        if not value:
            raise FieldError(api.path(name), "is required with " + ("tls_key" if name == "tls_cert" else "tls_cert"))
        if not os.path.isfile(value) or not os.access(value, os.R_OK):
            raise FieldError(api.path(name), f"{value} is not a readable file")
    return ApiTls(cert=cert, key=key)


def load_config(path: str) -> MspConfig:
    """Read and validate a TOML config file."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as err:
        raise FieldError(path, f"cannot read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise FieldError(path, f"not valid TOML: {err}") from None
    return parse_config(data)
