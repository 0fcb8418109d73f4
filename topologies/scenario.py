"""The reference scenario: network and controller up, hosts reachable, an ISP failure.

One place for the steps the demo, the integration tests and the benchmarks share.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import control_ns
from .controller import Controller, controller_address, wait_for
from .faults import inner_icmp_counts, isp_blackhole, watch_inner_icmp
from .leak_guard import LeakGuard
from .measure import H1_4, SERVER4, StreamResult, TcpResult, TcpTransfer, UdpStream, after, ping
from .network import ReferenceNetwork
from .reference import DEFAULT_ISP_RATE_MBIT

REPO = pathlib.Path(__file__).resolve().parent.parent
REFERENCE_CONFIG = REPO / "etc" / "reference.toml"
LOG = logging.getLogger("msp.scenario")


@contextlib.contextmanager
def running(run_dir: str, config: str | os.PathLike[str] = REFERENCE_CONFIG,
            isp_rate_mbit: int = DEFAULT_ISP_RATE_MBIT,
            guard: LeakGuard | None = None) -> Iterator[tuple[ReferenceNetwork, Controller]]:
    """The controller, then the reference network, under a leak guard (`guard`, or a new one:
    its final_count tells the caller afterwards).

    The controller runs in its own namespace (no route off the machine); on the way out it is
    stopped first (by PID), then the network, then the namespace; the guard then checks that
    no packet tried to leave the machine (LeakError names what did) and is removed."""
    with guard or LeakGuard() as guard:
        created = control_ns.ensure(controller_address(config))
        try:
            controller = Controller(config, os.path.join(run_dir, "controller.log"))
            network = ReferenceNetwork(str(config), run_dir=run_dir, isp_rate_mbit=isp_rate_mbit)
            try:
                controller.start()
                network.start()
                for isp in network.isps:
                    watch_inner_icmp(network[isp])  # carries_traffic() counts pings only
                yield network, controller
            finally:
                try:
                    controller.stop()
                finally:
                    network.stop()
        finally:
            if created:
                control_ns.remove()
        LOG.info("leak guard: %d packets tried to leave the machine", guard.count())


def carries_traffic(net: ReferenceNetwork, isp: str) -> bool:
    """Does a ping from h1 to the server cross this ISP, both ways, inside a tunnel?

    Only tunnelled pings are counted: BFD and the controller's probes cross every ISP.
    """
    before = inner_icmp_counts(net[isp])
    if ping(net["h1"], SERVER4, timeout_s=0.5) is None:
        return False
    after_ = inner_icmp_counts(net[isp])
    return all(after_[d] > before[d] for d in ("up", "down"))


def wait_path(net: ReferenceNetwork, isp: str, timeout: float = 30.0) -> None:
    wait_for(lambda: carries_traffic(net, isp), timeout, interval=0.2, what=f"traffic to take {isp}")


@dataclass(frozen=True)
class FailoverResult:
    up: StreamResult  # h1 -> server
    down: StreamResult  # server -> h1
    tcp: TcpResult
    failed_isp: str


def isp_failure(net: ReferenceNetwork, isp: str = "ispA", seconds: float = 6.0, fail_at: float = 2.5,
                tcp_bitrate: str = "20M", port_base: int = 5001) -> FailoverResult:
    """1000 packet/s each way plus a TCP transfer; the ISP silently drops all at fail_at."""
    h1, server = net["h1"], net["server"]
    up = UdpStream(h1, server, SERVER4, port_base, seconds)
    down = UdpStream(server, h1, H1_4, port_base + 1, seconds)
    tcp = TcpTransfer(h1, server, SERVER4, seconds, bitrate=tcp_bitrate, port=port_base + 200)
    try:
        up.start()
        down.start()
        tcp.start()
        after(fail_at, lambda: isp_blackhole(net[isp], True)).join()
        return FailoverResult(up.result(), down.result(), tcp.result(), isp)
    finally:
        up.stop()
        down.stop()
        tcp.stop()


def _bfd_status(net: ReferenceNetwork, key: str) -> dict[str, str]:
    """One bfd_status key of every tunnel end that runs BFD, from each box's database."""
    found = {}
    boxes = [("mspmb", "br-home")] + [(edge.name, edge.bridge) for edge in net.config.edges]
    for box, bridge in boxes:
        node: Any = net[box]
        for port in node.vsctl("list-ports", bridge).split():
            status = node.vsctl("--if-exists", "get", "interface", port, f"bfd_status:{key}").strip()
            if status:
                found[f"{box}/{port}"] = status.strip('"')
    return found


def bfd_forwarding(net: ReferenceNetwork) -> dict[str, bool]:
    """Whether each tunnel end's BFD says forwarding."""
    return {end: value == "true" for end, value in _bfd_status(net, "forwarding").items()}


def wait_all_bfd_up(net: ReferenceNetwork, timeout: float = 30.0) -> None:
    """Every tunnel end forwarding: a failure's last state changes are behind us."""
    wait_for(lambda: all(bfd_forwarding(net).values()), timeout, interval=0.2, what="every BFD session up")


def bfd_flap_counts(net: ReferenceNetwork) -> dict[str, int]:
    """BFD state changes so far on every tunnel end (OVS's bfd_status:flap_count)."""
    return {end: int(value) for end, value in _bfd_status(net, "flap_count").items()}
