"""Measurements on a running reference network: reachability, outages, TCP survival.

Shared by the demo, the integration tests and the benchmarks, so all three report the
same quantities the same way.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .controller import wait_for

PYTHON = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER4, SERVER6 = "203.0.113.10", "2001:db8:200::10"
H1_4, H1_6 = "198.51.100.10", "2001:db8:100::10"
H2_4, H2_6 = "198.51.100.20", "2001:db8:100::20"


def nearest_rank(ranked: Sequence[float], p: float, empty: float = math.nan) -> float:
    """The p-th percentile of sorted values by nearest rank (`empty` when there are none)."""
    if not ranked:
        return empty
    return ranked[min(len(ranked) - 1, max(0, math.ceil(p / 100 * len(ranked)) - 1))]


def ping(host: Any, destination: str, count: int = 1, timeout_s: float = 1.0) -> float | None:
    """Round-trip time in ms of a successful ping, or None."""
    out = host.cmd(f"ping -n -c {count} -W {timeout_s} -i 0.2 {destination}")
    match = re.search(r"= [\d.]+/([\d.]+)/", out)
    return float(match.group(1)) if match else None


def wait_reachable(host: Any, destination: str, timeout: float = 30.0) -> float:
    """Wait until destination answers pings; return the RTT of the first answer."""
    return wait_for(lambda: ping(host, destination, timeout_s=0.5), timeout, interval=0.2,
                    what=f"{host.name} to reach {destination}")


@dataclass(frozen=True)
class StreamResult:
    sent: int
    received: int
    max_gap_ms: float
    # Every gap of 10 ms or more: (seconds after the first arrival, gap in ms), in time order.
    gaps: tuple[tuple[float, float], ...] = ()
    first_arrival_at: float | None = None  # time.monotonic() (one clock in every namespace)

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.received)

    def outages(self, min_ms: float, after_s: float = 0.0) -> list[float]:
        """The gaps of at least min_ms (ms) that began after_s seconds or later into the stream."""
        return [gap for at, gap in self.gaps if gap >= min_ms and at >= after_s]

    def gaps_between(self, start: float, end: float) -> list[tuple[float, float]]:
        """(when it began, in time.monotonic(); ms) of each gap that began within [start, end)."""
        if self.first_arrival_at is None:
            return []
        return [(self.first_arrival_at + at, gap) for at, gap in self.gaps
                if start <= self.first_arrival_at + at < end]


class UdpStream:
    """A 1000 packets/s stream from one host to another, measured at the receiver."""

    def __init__(self, sender: Any, receiver: Any, destination: str, port: int,
                 seconds: float, rate: int = 1000, src_port: int = 0) -> None:
        self.sender, self.receiver = sender, receiver
        self.src_port = src_port
        self.destination, self.port, self.seconds, self.rate = destination, port, seconds, rate
        self.dir = tempfile.mkdtemp(prefix="msp-udp-")
        self.processes: list[subprocess.Popen[bytes]] = []

    def _run(self, host: Any, *args: str) -> subprocess.Popen[bytes]:
        process = host.popen([PYTHON, "-m", "bench.udpflow", *args], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.processes.append(process)
        return process

    def start(self) -> None:
        ready = os.path.join(self.dir, "ready")
        self._run(self.receiver, "recv", "--port", str(self.port), "--seconds", str(self.seconds + 2),
                  "--out", os.path.join(self.dir, "recv.json"), "--ready", ready)
        wait_for(lambda: os.path.exists(ready), 10, what="the UDP receiver")
        self._run(self.sender, "send", "--to", self.destination, "--port", str(self.port), "--rate",
                  str(self.rate), "--seconds", str(self.seconds), "--src-port", str(self.src_port),
                  "--out", os.path.join(self.dir, "send.json"))

    def result(self) -> StreamResult:
        for process in self.processes:
            _, err = process.communicate(timeout=self.seconds + 20)
            if process.returncode != 0:
                raise RuntimeError(f"udpflow failed: {err.decode(errors='replace')}")
        with open(os.path.join(self.dir, "send.json")) as handle:
            sent = json.load(handle)
        with open(os.path.join(self.dir, "recv.json")) as handle:
            received = json.load(handle)
        return StreamResult(sent["sent"], received["received"], received["max_gap_ms"],
                            tuple((at, gap) for at, gap in received.get("gaps_ms", [])),
                            received.get("first_arrival_at"))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class TcpResult:
    survived: bool
    bytes_sent: int
    seconds: float
    error: str
    bytes_reverse: int = 0  # server to client, in a bidirectional transfer
    # iperf3's intervals: (start, end) in seconds from the test's start, bytes sent and received
    intervals: tuple[tuple[float, float, int, int], ...] = ()

    def mbps(self, reverse: bool = False) -> float:
        sent = self.bytes_reverse if reverse else self.bytes_sent
        return round(sent * 8 / max(self.seconds, 1e-9) / 1e6, 1)

    def mbps_between(self, start: float, end: float, reverse: bool = False) -> float:
        """The rate over the whole intervals inside [start, end] (seconds from the test's
        start): a steady state, without slow start or the last partial second."""
        inside = [i for i in self.intervals if i[0] >= start - 0.01 and i[1] <= end + 0.01]
        seconds = sum(i[1] - i[0] for i in inside)
        carried = sum(i[3] if reverse else i[2] for i in inside)
        return round(carried * 8 / seconds / 1e6, 2) if seconds > 0 else 0.0


class TcpTransfer:
    """An iperf3 transfer from a client host to a server host; did the connection survive?"""

    def __init__(self, client: Any, server: Any, destination: str, seconds: float,
                 bitrate: str = "0", port: int = 5201, bidir: bool = False, udp: bool = False) -> None:
        self.client, self.server = client, server
        self.bidir = bidir
        # UDP at `bitrate` (a flood that TCP's backing off would not make): 1400-byte datagrams
        # fit the 1450-byte overlay.
        self.udp = udp
        self.destination, self.seconds, self.bitrate, self.port = destination, seconds, bitrate, port
        self.server_process: subprocess.Popen[bytes] | None = None
        self.client_process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.server_process = self.server.popen(["iperf3", "-s", "-1", "-p", str(self.port)],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # iperf3 has no "ready" signal: retry the client until the server accepts.
        deadline = time.monotonic() + 10
        while True:
            self.client_process = self.client.popen(
                ["iperf3", "-c", self.destination, "-p", str(self.port), "-t", str(self.seconds),
                 "-b", self.bitrate, "-J", "--connect-timeout", "1000",
                 *(["--bidir"] if self.bidir else []), *(["-u", "-l", "1400"] if self.udp else [])],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                self.client_process.wait(timeout=0.3)
            except subprocess.TimeoutExpired:
                return  # running: connected
            if time.monotonic() > deadline:
                return

    def result(self) -> TcpResult:
        assert self.client_process is not None
        out, err = self.client_process.communicate(timeout=self.seconds + 60)
        try:
            report = json.loads(out.decode() or "{}")
        except json.JSONDecodeError:
            report = {}
        error = report.get("error", "") or (err.decode(errors="replace") if self.client_process.returncode else "")
        end = report.get("end", {}).get("sum_sent", {})
        reverse = report.get("end", {}).get("sum_received_bidir_reverse", {})
        intervals = report.get("intervals", [])
        # Survived: iperf3 finished without error and the last second still carried data.
        last_bytes = intervals[-1]["sum"]["bytes"] if intervals else 0
        survived = self.client_process.returncode == 0 and not error and last_bytes > 0
        self.stop()
        steps = tuple((float(i["sum"]["start"]), float(i["sum"]["end"]), int(i["sum"]["bytes"]),
                       int(i.get("sum_bidir_reverse", {}).get("bytes", 0))) for i in intervals)
        return TcpResult(survived, int(end.get("bytes", 0)), float(end.get("seconds", 0.0)), error,
                         int(reverse.get("bytes", 0)), steps)

    def stop(self) -> None:
        for process in (self.client_process, self.server_process):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def after(delay: float, action: Callable[[], None]) -> threading.Thread:
    """Run action once, delay seconds from now, in the background (a scheduled fault)."""
    def run() -> None:
        time.sleep(delay)  # a schedule, not a wait on a condition
        action()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
