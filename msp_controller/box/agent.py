"""The blank MSPMB's bootstrap: knows the MSP's address and the box's identity, nothing else.

  1. Makes one standalone underlay bridge per ISP port (br-<isp>), its internal port the
     uplink, and runs a DHCPv4 client (busybox udhcpc) on it; the lease hook puts the address
     on the port and writes it into the box's own OVSDB (Open_vSwitch external_ids
     msp-lease-<bridge> = "<address>/<length> via <gateway>"), where the controller reads it.
  2. Points its ovsdb-server at the MSP's OVSDB manager (ssl:<msp>:6640, the box's key and
     certificate from msp-pki): the controller creates br-home, the tunnels and BFD.
  3. Keeps the kernel routes that the controller cannot set over OVSDB: each tunnel's remote
     address (/32) via the gateway of the uplink the tunnel names (external_ids
     msp-uplink), and the MSP's address via one leased uplink, moved to another when the
     tunnels on that uplink are all down (BFD) or the manager stays unreachable over it;
     after a move it closes the box's TCP connections to the MSP (`ss -K`), so that OVSDB and
     OpenFlow reconnect at once, over the new uplink.

Plain Python (no Ryu); runs in the box's namespace with OVS_RUNDIR naming its OVS.

    python -m msp_controller.box.agent --msp 198.19.64.10 --identity /etc/msp/box \
        --uplink br-ispA=mspmb-ispA --uplink br-ispB=mspmb-ispB --lan mspmb-lan1 --state-dir /run/msp-box
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from msp_controller.box.desired import LEASE_PREFIX, SHAPING, UPLINK, Lease, leases_from_external_ids
from msp_controller.box.shaping_apply import apply_shaping, parse_shaping
from msp_controller.box.slaac import LEASE6_PREFIX, read_global_addresses

LOG = logging.getLogger("msp.box.agent")
POLL_S = 0.1
CONNECT_GRACE_S = 3.0  # no manager connection this long over one uplink: try the next
MANAGER_BACKOFF_MS = 1000
MANAGER_PROBE_MS = 5000
UNDERLAY_MTU = 1500

LEASE_HOOK = """#!/bin/sh
# udhcpc lease hook, written by the msp box agent: address on the port, lease into OVSDB.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ovs-vsctl --no-wait remove Open_vSwitch . external_ids "{prefix}$interface" ;;
  bound|renew)
    new="$ip/$mask"
    ip addr replace "$new" dev "$interface"
    for old in $(ip -4 -o addr show dev "$interface" | awk '{{print $4}}'); do
      [ "$old" = "$new" ] || ip addr del "$old" dev "$interface"
    done
    set -- $router
    ovs-vsctl --no-wait set Open_vSwitch . "external_ids:{prefix}$interface=\\"$new via $1\\"" ;;
esac
exit 0
"""


def sh(*argv: str, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, input=input, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class Tunnel:
    name: str
    remote_ip: str
    uplink: str  # underlay bridge
    forwarding: bool
    was_up: bool  # BFD has been up at least once (a tunnel still coming up is no failure)


@dataclass(frozen=True)
class Snapshot:
    leases: dict[str, Lease]
    tunnels: tuple[Tunnel, ...]
    connected: bool  # the manager connection
    shaping: str | None = None  # br-home's msp-shaping, as the manager wrote it


def _rows(text: str) -> list[list[dict[str, Any]]]:
    """The tables of `ovs-vsctl --format=json` output, one per command, as lists of dicts."""
    decoder, text = json.JSONDecoder(), text.strip()
    tables: list[list[dict[str, Any]]] = []
    while text:
        table, end = decoder.raw_decode(text)
        text = text[end:].strip()
        tables.append([dict(zip(table["headings"], row, strict=True)) for row in table["data"]])
    return tables


def _map(value: list) -> dict[str, str]:
    return dict(value[1]) if isinstance(value, list) and value and value[0] == "map" else {}


def read_snapshot(msp: str, port: int) -> Snapshot:
    out = sh("ovs-vsctl", "--format=json", "--timeout=5",
             "--", "--columns=name,options,bfd_status,external_ids", "find", "Interface", "type=vxlan",
             "--", "--columns=external_ids", "list", "Open_vSwitch",
             "--", "--columns=external_ids", "list", "Bridge")
    interfaces, root, bridges = _rows(out)
    tunnels = []
    for row in interfaces:
        ext, options = _map(row["external_ids"]), _map(row["options"])
        if UPLINK in ext and "remote_ip" in options:
            bfd = _map(row["bfd_status"])
            tunnels.append(Tunnel(row["name"], options["remote_ip"], ext[UPLINK],
                                  bfd.get("forwarding") == "true", int(bfd.get("flap_count", "0")) > 0))
    leases = leases_from_external_ids(_map(root[0]["external_ids"])) if root else {}
    shaping = next((ids[SHAPING] for ids in (_map(b["external_ids"]) for b in bridges) if SHAPING in ids), None)
    return Snapshot(leases, tuple(tunnels), connected_to(msp, port), shaping)


def connected_to(address: str, port: int) -> bool:
    """An established TCP connection to address:port in this namespace (the manager's
    is_connected column lags by seconds; the kernel's table does not)."""
    want = f"{int.from_bytes(ipaddress.IPv4Address(address).packed, 'little'):08X}:{port:04X}"
    with open("/proc/net/tcp") as handle:
        next(handle)
        return any(line.split()[2] == want and line.split()[3] == "01" for line in handle)


def choose_uplink(current: str | None, snapshot: Snapshot, order: Sequence[str],
                  stuck: bool) -> str | None:
    """The uplink that should carry the control channel (pure).

    Keep the current one while it is leased, has not failed (all its tunnels down after
    having been up: BFD) and is not stuck (no manager connection for CONNECT_GRACE_S); else
    the first other leased uplink with a working tunnel, else the next leased one in order."""
    leased = [b for b in order if b in snapshot.leases]
    if not leased:
        return None

    def failed(b: str) -> bool:
        mine = [t for t in snapshot.tunnels if t.uplink == b]
        return bool(mine) and not any(t.forwarding for t in mine) and any(t.was_up for t in mine)

    def working(b: str) -> bool:
        return any(t.uplink == b and t.forwarding for t in snapshot.tunnels)

    if current in leased and not stuck and not failed(current):
        return current
    others = [b for b in leased if b != current]
    for b in others:
        if working(b):
            return b
    if current in leased and not stuck:
        return current  # nothing better: stay
    if others:
        after = order.index(current) if current in order else -1
        rotated = [b for b in [*order[after + 1:], *order[:after + 1]] if b in others]
        return rotated[0]
    return current if current in leased else leased[0]


class Agent:
    def __init__(self, msp: str, port: int, identity: str, uplinks: Mapping[str, str],
                 lan: Sequence[str], state_dir: str) -> None:
        self.msp, self.port, self.identity = msp, port, identity
        self.uplinks = dict(uplinks)  # bridge -> ISP port
        self.lan = list(lan)
        self.state_dir = state_dir
        self.clients: dict[str, subprocess.Popen] = {}
        self.control: str | None = None
        self.control_since = time.monotonic()
        self.routes: set[tuple[str, str, str]] = set()
        self.leases: dict[str, Lease] = {}
        self.shaping: str | None = None  # the msp-shaping last acted on (applied or refused)
        self.addresses6: dict[str, str] = {}  # bridge -> "<address>/<length>" (SLAAC), as recorded

    # -- start

    def start(self) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        ports = [*self.uplinks.values(), *self.lan]
        sh("sysctl", "-qw", *[f"net.ipv6.conf.{p}.disable_ipv6=1" for p in ports])
        sh("ip", "-batch", "-", input="".join(f"link set {p} arp off\nlink set {p} up\n" for p in ports))
        for bridge, port in self.uplinks.items():
            # The uplink's own MAC on the bridge's internal port: what the ISP's DHCP server sees.
            with open(f"/sys/class/net/{port}/address") as handle:
                mac = handle.read().strip()
            sh("ovs-vsctl", "--may-exist", "add-br", bridge, "--", "set", "bridge", bridge,
               "datapath_type=netdev", "fail_mode=standalone", "other-config:disable-in-band=true",
               f"other-config:hwaddr={mac}", "--", "--may-exist", "add-port", bridge, port)
        # DHCP only once the datapath forwards (a discover sent earlier is lost, and the next
        # one comes a second later).
        ports_in = [*self.uplinks, *self.uplinks.values()]
        deadline = time.monotonic() + 10
        while not (all(os.path.exists(f"/sys/class/net/{b}") for b in self.uplinks)
                   and all(int(v or -1) > 0 for v in sh("ovs-vsctl", *sum(
                       (["--", "get", "interface", p, "ofport"] for p in ports_in), [])).split())):
            if time.monotonic() > deadline:
                raise RuntimeError(f"underlay bridges {list(self.uplinks)} did not come up")
            time.sleep(0.02)
        # IPv6 where an ISP offers it: SLAAC from its router advertisements (accept_ra=2: even
        # if this namespace forwards). The tunnels stay on the IPv4 leases.
        sh("sysctl", "-qw", *[f"net.ipv6.conf.{b}.{key}" for b in self.uplinks
                              for key in ("disable_ipv6=0", "accept_ra=2", "autoconf=1")])
        sh("ip", "-batch", "-", input="".join(f"link set {b} mtu {UNDERLAY_MTU}\nlink set {b} up\n"
                                               for b in self.uplinks))
        ident = self.identity
        sh("ovs-vsctl", "set-ssl", f"{ident}/key.pem", f"{ident}/cert.pem", f"{ident}/cacert.pem")
        target = f"ssl:{self.msp}:{self.port}"
        sh("ovs-vsctl", "set-manager", target, "--", "set", "manager", target,
           f"max_backoff={MANAGER_BACKOFF_MS}", f"inactivity_probe={MANAGER_PROBE_MS}")
        hook = os.path.join(self.state_dir, "lease-hook")
        with open(hook, "w") as handle:
            handle.write(LEASE_HOOK.replace("{prefix}", LEASE_PREFIX).replace("{{", "{").replace("}}", "}"))
        os.chmod(hook, 0o755)
        for bridge in self.uplinks:
            # -t 2 -T 1 -A 1: a dead DHCP server is asked again every few seconds, not every 20.
            self.clients[bridge] = subprocess.Popen(
                ["udhcpc", "-f", "-i", bridge, "-s", hook, "-t", "2", "-T", "1", "-A", "1",
                 "-p", os.path.join(self.state_dir, f"udhcpc-{bridge}.pid")],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.state_dir, f"udhcpc-{bridge}.log"), "w"))
        LOG.info("box agent: DHCP on %s, manager %s", ", ".join(self.uplinks), target)

    def stop(self) -> None:
        for proc in self.clients.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.clients.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- loop

    def step(self) -> None:
        snapshot = read_snapshot(self.msp, self.port)
        now = time.monotonic()
        lease_changed = snapshot.leases != self.leases
        self.leases = snapshot.leases
        wanted = {(f"{t.remote_ip}/32", str(snapshot.leases[t.uplink].gateway), t.uplink)
                  for t in snapshot.tunnels if t.uplink in snapshot.leases}
        if lease_changed:
            self.routes = set()  # a lost address took its routes with it: put them all back
        stuck = not snapshot.connected and now - self.control_since > CONNECT_GRACE_S
        control = choose_uplink(self.control, snapshot, list(self.uplinks), stuck)
        moved = control != self.control
        if moved:
            LOG.info("control channel: %s -> %s", self.control, control)
            self.control, self.control_since = control, now
        if control is not None:
            wanted.add((f"{self.msp}/32", str(snapshot.leases[control].gateway), control))
        new = wanted - self.routes
        if new:
            sh("ip", "-batch", "-", check=False,
               input="".join(f"route replace {dst} via {gw} dev {dev}\n" for dst, gw, dev in sorted(new)))
            self.routes = wanted
        if moved and control is not None:
            # The old connections' packets would leave by the new uplink with the old source
            # address and never be answered: close every TCP connection to the MSP now (OVSDB
            # and OpenFlow alike; both reconnect within their 1 s backoff) rather than wait
            # for their inactivity probes.
            try:
                sh("ss", "-K", "dst", self.msp)
            except RuntimeError:  # a kernel without socket destroy: OVSDB at least
                sh("ovs-appctl", "-t", "ovsdb-server", "ovsdb-server/reconnect", check=False)
        if snapshot.shaping is not None and snapshot.shaping != self.shaping:
            self.shape(snapshot.shaping)
        addresses6 = read_global_addresses(self.uplinks)
        changed6 = addresses6 != self.addresses6
        if changed6:
            self.record_addresses6(addresses6)  # raises: recorded again next time
            self.addresses6 = addresses6
        if moved or lease_changed or changed6:
            self.write_status(now)

    def record_addresses6(self, addresses6: Mapping[str, str]) -> None:
        """The uplinks' IPv6 addresses into the box's OVSDB, beside the IPv4 leases."""
        argv = ["ovs-vsctl", "--no-wait"]
        for bridge in self.uplinks:
            key = f"external_ids:{LEASE6_PREFIX}{bridge}"
            if bridge in addresses6:
                argv += ["--", "set", "Open_vSwitch", ".", f'{key}="{addresses6[bridge]}"']
            else:
                argv += ["--", "remove", "Open_vSwitch", ".", "external_ids", f"{LEASE6_PREFIX}{bridge}"]
        sh(*argv)
        LOG.info("IPv6 (SLAAC): %s", dict(addresses6) or "none")

    def shape(self, text: str) -> None:
        """The upstream shaping the MSP wrote: applied, or refused with the old one kept."""
        self.shaping = text  # acted on once: a refused one is not retried until it changes
        try:
            shaping = parse_shaping(text, self.uplinks.values())
        except ValueError as err:
            LOG.warning("shaping refused, the previous stays: %s", err)
            return
        errors = apply_shaping(shaping)
        for error in errors:
            LOG.warning("shaping: %s (that port is left unshaped)", error)
        LOG.info("shaping applied: %s", {d: len(c) for d, c in shaping.items()})

    def write_status(self, now: float) -> None:
        status = {"control_uplink": self.control, "time": time.time(),
                  "leases": {b: f"{lease.address} via {lease.gateway}" for b, lease in self.leases.items()},
                  "addresses6": self.addresses6}
        path = os.path.join(self.state_dir, "status.json")
        with open(path + ".new", "w") as handle:
            json.dump(status, handle)
        os.replace(path + ".new", path)

    def run(self, stop: list[bool]) -> None:
        while not stop:
            try:
                self.step()
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as err:
                LOG.warning("box agent: %s", err)
            time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msp-box-agent", description="A blank MSPMB's bootstrap.")
    parser.add_argument("--msp", required=True, help="the MSP's address")
    parser.add_argument("--ovsdb-port", type=int, default=6640)
    parser.add_argument("--identity", required=True, help="directory with key.pem, cert.pem, cacert.pem (msp-pki box)")
    parser.add_argument("--uplink", action="append", default=[], help="BRIDGE=PORT, one per ISP")
    parser.add_argument("--lan", action="append", default=[], help="a LAN port")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uplinks = {}
    for item in args.uplink:
        bridge, sep, port = item.partition("=")
        if not sep or not bridge or not port:
            print(f"msp-box-agent: --uplink {item!r}: expected BRIDGE=PORT", file=sys.stderr)
            return 2
        uplinks[bridge] = port
    if not uplinks:
        print("msp-box-agent: give at least one --uplink", file=sys.stderr)
        return 2
    for name in ("key.pem", "cert.pem", "cacert.pem"):
        if not os.path.exists(os.path.join(args.identity, name)):
            print(f"msp-box-agent: --identity {args.identity}: no {name}", file=sys.stderr)
            return 2
    agent = Agent(args.msp, args.ovsdb_port, args.identity, uplinks, args.lan, args.state_dir)
    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    try:
        agent.start()
        agent.run(stop)
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
