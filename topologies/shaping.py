"""QoS in the emulation: realistic ISP access links, the MSP's shaping at the boxes, and a
voice-like probe to see what a call would feel.

- isp_access(): an ISP as homes know it: a rate each way and a deep FIFO in front of it
  (250 ms is common on real access links), HTB + bfifo in the ISP router's namespace.
- apply_shaping() / clear_shaping(): the tc commands of msp_controller/dataplane/shaping.py
  for a policy, run in the MSPMB's namespace (a box agent's job in production), and a wait
  for the edges' shapers (topologies/edge_shapers.py), which take it from REST.
- VoicePing: bench/voiceping.py between two hosts (50 packets/s, echoed), RTTs and loss.
- PingSeries: plain pings alongside, in whatever class the policy leaves ICMP (the default):
  what a web page's packets feel while bulk fills the link.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from msp_controller.dataplane.shaping import (
    SHAPE_FRACTION,
    clear_commands,
    edge_pair_class,
    edge_pair_ids,
    leaf_minors,
    mspmb_shaping,
    priority_minors,
)
from msp_controller.model.policy import Policy

from .controller import wait_for
from .measure import PYTHON, REPO, nearest_rank
from .ovsbox import run


def isp_access(node: Any, intf: str, rate_mbit: float, buffer_ms: float) -> None:
    """The egress of one ISP interface: rate_mbit, with a FIFO of buffer_ms at that rate."""
    limit = int(rate_mbit * 1e6 / 8 * buffer_ms / 1000)
    run(["tc", "qdisc", "replace", "dev", intf, "root", "handle", "1:", "htb", "default", "10"], node)
    run(["tc", "class", "replace", "dev", intf, "parent", "1:", "classid", "1:10", "htb",
         "rate", f"{rate_mbit}mbit", "ceil", f"{rate_mbit}mbit", "quantum", "1514"], node)
    run(["tc", "qdisc", "replace", "dev", intf, "parent", "1:10", "handle", "10:", "bfifo",
         "limit", str(limit)], node)


def isp_links(net: Any, down_mbit: float, up_mbit: float, buffer_ms: float) -> None:
    """Every ISP of the reference network: down towards the MSPMB, up towards the Internet."""
    for isp in net.plan.isps:
        isp_access(net[isp.name], isp.customer_intf, down_mbit, buffer_ms)
        isp_access(net[isp.name], isp.inet_intf, up_mbit, buffer_ms)


def _apply(node: Any, dev: str, commands: list[list[str]]) -> None:
    run(["tc", *clear_commands(dev)[0]], node, check=False)  # none yet is fine
    for command in commands:
        run(["tc", *command], node)


def _edge_pairs(net: Any) -> list[tuple[Any, Any]]:
    """(edge, uplink): each edge serving the homenet, with each of the homenet's ISPs."""
    homenet = net.plan.homenet
    return [(edge, uplink) for edge in net.config.edges if edge.name in homenet.edges for uplink in homenet.uplinks]


def _edge_ceilings(net: Any) -> dict[tuple[str, int], int | None]:
    """Each (edge, slot) of the homenet: its class's ceiling at that edge, None when unshaped."""
    homenet_id = net.plan.homenet.id
    return {(edge.name, uplink.slot): class_ceil_bits(net[edge.name], edge.underlay_port,
                                                      edge_pair_class(homenet_id, uplink.slot))
            for edge, uplink in _edge_pairs(net)}


def apply_shaping(net: Any, policy: Policy, timeout: float = 15.0) -> None:
    """The MSP's shaping for this policy, which the caller has just put over REST: upstream at
    the MSPMB's uplinks (the box agent's job in production; this MSPMB has none), downstream
    at every edge, where the edges' shapers (topologies/edge_shapers.py) take it from REST:
    this waits until each edge has each ISP's class at its rate."""
    for uplink in net.plan.homenet.uplinks:
        _apply(net["mspmb"], uplink.port, mspmb_shaping(policy, uplink))
    wanted = {(edge.name, uplink.slot): None if (down := policy.isp_rates(uplink.name).down_kbps) is None
              else int(down * SHAPE_FRACTION) * 1000 for edge, uplink in _edge_pairs(net)}
    wait_for(lambda: _edge_ceilings(net) == wanted, timeout, what="the edges' shapers to apply the policy")


def clear_shaping(net: Any, timeout: float = 15.0) -> None:
    """No shaping: the MSPMB's cleared, and the edges' shapers have removed the homenet's
    classes (the caller has just put a policy without rates over REST)."""
    for uplink in net.plan.homenet.uplinks:
        run(["tc", *clear_commands(uplink.port)[0]], net["mspmb"], check=False)
    wait_for(lambda: not any(_edge_ceilings(net).values()), timeout, what="the edges' shapers to unshape")


def class_sent(node: Any, dev: str) -> dict[str, tuple[int, int]]:
    """(bytes, packets) sent so far by each HTB class on a port, by class id ("4:12"): from
    tc's text (its JSON has no HTB classes here)."""
    found: dict[str, tuple[int, int]] = {}
    classid = ""
    for line in run(["tc", "-s", "class", "show", "dev", dev], node).splitlines():
        words = line.split()
        if words[:2] == ["class", "htb"]:
            classid = words[2]
        elif words[:1] == ["Sent"] and classid:
            found[classid] = (int(words[1]), int(words[3]))
    return found


TC_UNITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}


def class_ceil_bits(node: Any, dev: str, classid: str) -> int | None:
    """An HTB class's ceiling in bit/s, or None when the port has no such class."""
    out = run(["tc", "class", "show", "dev", dev, "classid", classid], node, check=False)
    match = re.search(r"ceil (\d+(?:\.\d+)?)([KMG]?bit)", out)
    return None if match is None else int(float(match.group(1)) * TC_UNITS[match.group(2).lower()])


def class_bytes(node: Any, dev: str) -> dict[str, int]:
    """Bytes sent so far by each HTB class on a port, by class id."""
    return {classid: sent[0] for classid, sent in class_sent(node, dev).items()}


def _bulk_bytes(found: dict[str, int], major: int, block: int, policy: Policy) -> int:
    skip = priority_minors(policy)
    return sum(found.get(f"{major:x}:{block | minor:x}", 0) for minor in leaf_minors() if minor not in skip)


def bulk_wire_bytes(net: Any, policy: Policy, isp: str) -> tuple[int, int]:
    """(down, up): bytes of bulk frames, tunnel headers included, that the MSP's shapers have
    sent towards one ISP so far: every leaf but the control and real-time queues, upstream at
    the MSPMB's uplink, downstream at each edge's pair for this homenet and ISP."""
    homenet = net.plan.homenet
    uplink = next(u for u in homenet.uplinks if u.name == isp)
    up = _bulk_bytes(class_bytes(net["mspmb"], uplink.port), 1, 0, policy)
    down = 0
    for edge in net.config.edges:
        if edge.name in homenet.edges:
            down += _bulk_bytes(class_bytes(net[edge.name], edge.underlay_port),
                                *edge_pair_ids(homenet.id, uplink.slot), policy)
    return down, up


@dataclass(frozen=True)
class VoiceResult:
    sent: int
    received: int
    rtt_ms: tuple[float, ...]  # the network's round trips (kernel-stamped, the echo's hold taken off)
    app_rtt_ms: tuple[float, ...] = ()  # the same replies, as the pinging process read them

    @property
    def loss_pct(self) -> float:
        return 100.0 * (self.sent - self.received) / max(self.sent, 1)

    def percentile(self, p: float, app: bool = False) -> float:
        """The p-th percentile RTT (nearest rank); a lost packet counts as infinitely late."""
        ranked = sorted(self.app_rtt_ms if app else self.rtt_ms) + [math.inf] * (self.sent - self.received)
        return nearest_rank(ranked, p, empty=math.inf)


class VoicePing:
    """bench/voiceping.py: `pinger` sends 50 packets/s to `echoer` at destination:port."""

    def __init__(self, pinger: Any, echoer: Any, destination: str, port: int, seconds: float,
                 rate: int = 50) -> None:
        self.pinger, self.echoer = pinger, echoer
        self.destination, self.port, self.seconds, self.rate = destination, port, seconds, rate
        self.dir = tempfile.mkdtemp(prefix="msp-voice-")
        self.processes: list[subprocess.Popen[bytes]] = []

    def _run(self, host: Any, *args: str) -> subprocess.Popen[bytes]:
        process = host.popen([PYTHON, "-m", "bench.voiceping", *args], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.processes.append(process)
        return process

    def start(self) -> None:
        ready = os.path.join(self.dir, "ready")
        self._run(self.echoer, "echo", "--port", str(self.port), "--seconds", str(self.seconds + 5),
                  "--ready", ready)
        wait_for(lambda: os.path.exists(ready), 10, what="the voice echo")
        self._run(self.pinger, "ping", "--to", self.destination, "--port", str(self.port),
                  "--rate", str(self.rate), "--seconds", str(self.seconds),
                  "--out", os.path.join(self.dir, "ping.json"))

    def result(self) -> VoiceResult:
        pinger = self.processes[-1]
        _, err = pinger.communicate(timeout=self.seconds + 20)
        if pinger.returncode != 0:
            raise RuntimeError(f"voiceping failed: {err.decode(errors='replace')}")
        self.stop()
        with open(os.path.join(self.dir, "ping.json")) as handle:
            found = json.load(handle)
        return VoiceResult(found["sent"], found["received"], tuple(found["rtt_ms"]),
                           tuple(found.get("app_rtt_ms", ())))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


PING_RTT = re.compile(r"icmp_seq=(\d+) .*time=([0-9.]+) ms")


def ping_rtts(text: str) -> dict[int, float]:
    """{icmp_seq: RTT in ms} of the replies in ping's output (late duplicates ignored)."""
    found: dict[int, float] = {}
    for sequence, rtt in PING_RTT.findall(text):
        found.setdefault(int(sequence), float(rtt))
    return found


PING_PAYLOAD_BYTES = 200  # above the shapers' small-packet threshold: the pings queue with the bulk


class PingSeries:
    """ping from one host, `rate` a second for `seconds`; the RTTs as VoiceResult (loss too)."""

    def __init__(self, host: Any, destination: str, seconds: float, rate: int = 20) -> None:
        self.host, self.destination = host, destination
        self.count, self.interval = max(1, int(seconds * rate)), 1.0 / rate
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        argv = ["ping", "-n", "-s", str(PING_PAYLOAD_BYTES), "-i", f"{self.interval:g}", "-W", "2",
                "-c", str(self.count), self.destination]
        self.process = self.host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def result(self) -> VoiceResult:
        assert self.process is not None, "start() first"
        out, _ = self.process.communicate(timeout=self.count * self.interval + 30)
        rtts = ping_rtts(out)
        return VoiceResult(self.count, len(rtts), tuple(rtts[s] for s in sorted(rtts)))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
