"""Where does a voice packet wait? Kernel timestamps of every voice packet at every hop of the
reference network (tcpdump on each interface it crosses), and the delay of each hop.

A hop's delay is the time between two capture points on the path, so each one names a place:
- host out -> MSPMB uplink out: the MSPMB's switch and its upstream shaper;
- ISP in -> ISP out: the ISP's own buffer (the queue the MSP's shaping means to keep empty);
- edge underlay in -> edge Internet out: the edge's switch;
- and the same back, with the edge's downstream shaper before the ISP.
tcpdump stamps a received packet as it arrives and a sent one as it leaves its qdisc, so a
shaper's queue counts in the hop that ends at its port. A packet seen at one point and not
the next was lost in between.

Pure parts (read_voice_stamps, hop_delays) are unit-tested; VoiceHops runs the captures.
"""
from __future__ import annotations

import math
import os
import select
import struct
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from .measure import nearest_rank
from .ovsbox import kill_pid

VOICE_MAGIC = struct.pack("!Q", 0x4D5350564F494345)  # bench/voiceping.py's header starts with it
SNAP_BYTES = 160  # outer headers (50), inner Ethernet, IP and UDP (42), then magic and sequence
VXLAN_PORT = 4789
# Offsets from the outer UDP header: VXLAN (8), inner Ethernet (14), inner IPv4 (20): then the
# inner UDP ports. A voice packet's inner IP header has no options.
INNER_SPORT_AT, INNER_DPORT_AT = 8 + 8 + 14 + 20, 8 + 8 + 14 + 20 + 2
PCAP_NANO = (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAP_MICRO = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")


def voice_filter(port: int, request: bool) -> str:
    """tcpdump's filter for the voice packets one way, plain or inside a VXLAN tunnel."""
    plain, inner_at = ("dst", INNER_DPORT_AT) if request else ("src", INNER_SPORT_AT)
    return f"(udp {plain} port {port}) or (udp port {VXLAN_PORT} and udp[{inner_at}:2] = {port})"


def read_voice_stamps(data: bytes) -> dict[int, float]:
    """{sequence number: first capture time (s)} of the voice packets in a pcap file's bytes."""
    if len(data) < 24 or data[:4] not in PCAP_NANO + PCAP_MICRO:
        raise ValueError("not a pcap file")
    endian = "<" if data[:4] in (PCAP_NANO[0], PCAP_MICRO[0]) else ">"
    scale = 1e9 if data[:4] in PCAP_NANO else 1e6
    record = struct.Struct(endian + "IIII")
    found: dict[int, float] = {}
    offset = 24
    while offset + record.size <= len(data):
        seconds, fraction, length, _ = record.unpack_from(data, offset)
        packet = data[offset + record.size:offset + record.size + length]
        offset += record.size + length
        at = packet.find(VOICE_MAGIC)
        if at >= 0 and at + 16 <= len(packet):
            found.setdefault(struct.unpack_from("!Q", packet, at + 8)[0], seconds + fraction / scale)
    return found


@dataclass(frozen=True)
class HopDelay:
    start: str
    end: str
    packets: int  # seen at both points
    lost: int  # seen at start, never at end
    p50_ms: float
    p99_ms: float
    max_ms: float

    def describe(self) -> str:
        return (f"{self.start:>14} -> {self.end:<14} p50 {self.p50_ms:7.3f}  p99 {self.p99_ms:7.3f}  "
                f"max {self.max_ms:7.3f} ms  ({self.packets} packets, {self.lost} lost)")


def hop_delays(points: Sequence[tuple[str, Mapping[int, float]]]) -> list[HopDelay]:
    """The delay of each hop between consecutive points that saw packets (points that saw
    none are not on this packet's path: another ISP or edge)."""
    seen = [(name, stamps) for name, stamps in points if stamps]
    hops = []
    for (start, first), (end, then) in pairwise(seen):
        delays = sorted((then[seq] - first[seq]) * 1000 for seq in first if seq in then)
        hops.append(HopDelay(start, end, len(delays), sum(1 for seq in first if seq not in then),
                             round(nearest_rank(delays, 50), 3), round(nearest_rank(delays, 99), 3),
                             round(delays[-1], 3) if delays else math.nan))
    return hops


@dataclass(frozen=True)
class CapturePoint:
    name: str
    node: Any  # the Mininet node whose namespace holds the interface
    intf: str
    direction: str  # tcpdump -Q: "in" or "out"


def at_the_isps(net: Any) -> Callable[[CapturePoint], bool]:
    """VoiceHops' keep for the ISPs' own buffers only: each ISP's in and out, both ways."""
    routers = {net[isp.name] for isp in net.plan.isps}
    return lambda point: point.node in routers


def voice_points(net: Any) -> tuple[list[CapturePoint], list[CapturePoint]]:
    """(request path, reply path) of a voice flow from h1 to the server, in path order, over
    every ISP and edge (the ones the flow does not take see nothing and drop out)."""
    h1, server = net["h1"], net["server"]
    homenet = net.plan.homenet
    edges = [e for e in net.config.edges if e.name in homenet.edges]
    up = [CapturePoint("h1 out", h1, h1.defaultIntf().name, "out")]
    down: list[CapturePoint] = []
    for isp in net.plan.isps:
        up += [CapturePoint(f"mspmb {isp.name} out", net["mspmb"], isp.box_port, "out"),
               CapturePoint(f"{isp.name} in", net[isp.name], isp.customer_intf, "in"),
               CapturePoint(f"{isp.name} out", net[isp.name], isp.inet_intf, "out")]
        down += [CapturePoint(f"{isp.name} in", net[isp.name], isp.inet_intf, "in"),
                 CapturePoint(f"{isp.name} out", net[isp.name], isp.customer_intf, "out"),
                 CapturePoint(f"mspmb {isp.name} in", net["mspmb"], isp.box_port, "in")]
    server_side: list[CapturePoint] = [CapturePoint("server in", server, server.defaultIntf().name, "in")]
    for edge in edges:
        up += [CapturePoint(f"{edge.name} tunnel in", net[edge.name], edge.underlay_port, "in"),
               CapturePoint(f"{edge.name} out", net[edge.name], edge.internet_port, "out")]
    reply_start = [CapturePoint("server out", server, server.defaultIntf().name, "out")]
    for edge in edges:
        reply_start += [CapturePoint(f"{edge.name} in", net[edge.name], edge.internet_port, "in"),
                        CapturePoint(f"{edge.name} tunnel out", net[edge.name], edge.underlay_port, "out")]
    return up + server_side, reply_start + down + [CapturePoint("h1 in", h1, h1.defaultIntf().name, "in")]


class VoiceHops:
    """tcpdump at every point of both paths while a voice flow runs; stamps per point after."""

    def __init__(self, net: Any, port: int, directory: str,
                 keep: Callable[[CapturePoint], bool] | None = None) -> None:
        """keep: the capture points to use (all by default; fewer captures cost less CPU)."""
        self.request, self.reply = voice_points(net)
        if keep is not None:
            self.request, self.reply = [p for p in self.request if keep(p)], [p for p in self.reply if keep(p)]
        self.port, self.directory = port, directory
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def _path(self, kind: str, index: int) -> str:
        return os.path.join(self.directory, f"{kind}-{index}.pcap")

    def start(self, timeout: float = 20.0) -> None:
        for kind, points in (("request", self.request), ("reply", self.reply)):
            for index, point in enumerate(points):
                process = point.node.popen(
                    ["tcpdump", "-i", point.intf, "-Q", point.direction, "-s", str(SNAP_BYTES), "-n", "-U",
                     "--time-stamp-precision=nano", "-w", self._path(kind, index),
                     voice_filter(self.port, kind == "request")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                self.running.append((f"{point.name} ({point.intf})", process))
        deadline = time.monotonic() + timeout
        for name, process in self.running:  # each says "listening on" once its filter is in place
            ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))
            line = process.stderr.readline().decode(errors="replace") if ready and process.stderr else ""
            if "listening on" not in line:
                self.stop()
                raise RuntimeError(f"tcpdump at {name} did not start: {line.strip() or 'no answer'}")

    def stop(self) -> None:
        for _, process in self.running:
            kill_pid(process.pid, "tcpdump")
            process.wait()
        self.running = []

    def delays(self) -> tuple[list[HopDelay], list[HopDelay]]:
        """(request hops, reply hops), after stop()."""
        return self._delays("request", self.request), self._delays("reply", self.reply)

    def _delays(self, kind: str, points: Iterable[CapturePoint]) -> list[HopDelay]:
        stamps = []
        for index, point in enumerate(points):
            path = self._path(kind, index)
            with open(path, "rb") as handle:
                data = handle.read()
            stamps.append((point.name, read_voice_stamps(data) if data else {}))
        return hop_delays(stamps)
