"""A lost BGP session is tried again within a second, not after Ryu's 30 s.

First on a stand-in for Ryu's Peer with a simulated clock: the connect loop's timing, next to
Ryu's own loop on the same stand-in. Then with Ryu's real speaker in a child process, inside
a network namespace made for the test (loopback only, 127.0.0.x): a plain TCP listener
plays the neighbour, completes the BGP handshake on each connection (the session is
Established), holds it a moment and closes it; the time from each close to the next
connection is the reconnect time.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from ryu.services.protocols.bgp.constants import BGP_FSM_ACTIVE, BGP_FSM_ESTABLISHED, BGP_FSM_IDLE

from msp_controller.bgp import speaker
from msp_controller.bgp.speaker import CONNECT_DELAY_S, CONNECT_RETRY_S, BgpAnnouncer, Neighbor

ROOT = pathlib.Path(__file__).resolve().parents[2]


# --- the loop, on a stand-in peer ----------------------------------------------------------------

class Waits(Exception):
    """The loop would block on the connect-retry event: nothing is wanted."""


class RetryEvent:
    def __init__(self) -> None:
        self.flag = False

    def set(self) -> None:
        self.flag = True

    def clear(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def wait(self) -> None:
        if not self.flag:
            raise Waits


@dataclass
class StandInPeer:
    """What the connect loops use of Ryu's Peer; the neighbour refuses `refusals` times, then
    the session comes up (Ryu then clears the retry event, as Peer._set_protocol does)."""

    refusals: int
    now: float = 0.0
    attempts: list[float] = field(default_factory=list)
    ip_address: str = "198.19.0.11"
    _connect_retry_event: RetryEvent = field(default_factory=RetryEvent)
    state: Any = field(default_factory=lambda: SimpleNamespace(bgp_state=BGP_FSM_IDLE))
    _neigh_conf: Any = field(default_factory=lambda: SimpleNamespace(
        enabled=True, ip_address="198.19.0.11", port=179, host_bind_ip=None, host_bind_port=None, password=None))
    _common_conf: Any = field(default_factory=lambda: SimpleNamespace(tcp_conn_timeout=30, bgp_conn_retry_time=30))

    def pause(self, seconds: float) -> None:
        self.now += seconds

    def _connect_tcp(self, address: tuple[str, int], factory: Any, time_out: float | None = None,
                     bind_address: Any = None, password: Any = None) -> None:
        self.attempts.append(self.now)
        if len(self.attempts) <= self.refusals:
            raise ConnectionRefusedError(111, "Connection refused")
        self.state.bgp_state = BGP_FSM_ESTABLISHED
        self._connect_retry_event.clear()

    def lose_session(self) -> None:
        """Peer.connection_lost: Idle, and the retry event set."""
        self.state.bgp_state = BGP_FSM_IDLE
        self._connect_retry_event.set()


def run_loop(loop: Any, peer: StandInPeer) -> None:
    with pytest.raises(Waits):
        loop(peer, None)


def gaps(times: list[float]) -> list[float]:
    return [round(later - earlier, 6) for earlier, later in zip(times, times[1:], strict=False)]


def test_our_loop_tries_at_once_then_every_second_until_the_neighbour_answers() -> None:
    peer = StandInPeer(refusals=3)
    run_loop(speaker.connect_promptly, peer)
    assert peer.attempts[0] == pytest.approx(CONNECT_DELAY_S)
    assert gaps(peer.attempts) == [CONNECT_RETRY_S] * 3
    assert peer.state.bgp_state == BGP_FSM_ESTABLISHED


def test_a_lost_session_is_tried_again_within_a_second() -> None:
    peer = StandInPeer(refusals=0)
    run_loop(speaker.connect_promptly, peer)
    peer.now += 120  # up for two minutes, then lost
    lost_at = peer.now
    peer.lose_session()
    run_loop(speaker.connect_promptly, peer)
    assert peer.attempts[-1] - lost_at == pytest.approx(CONNECT_DELAY_S)
    assert peer.state.bgp_state == BGP_FSM_ESTABLISHED


def test_ryus_own_loop_waits_31_seconds_between_attempts() -> None:
    """The stand-in follows Ryu's contract: Ryu's loop on it shows the delay we replace."""
    peer = StandInPeer(refusals=2)
    run_loop(speaker._ORIGINAL_CONNECT_LOOP, peer)
    assert gaps(peer.attempts) == [31.0, 31.0]


def test_a_failed_attempt_leaves_the_peer_active_and_keeps_trying(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(speaker._connect_retry, "198.19.0.11", 0.5)
    peer = StandInPeer(refusals=2)
    states: list[str] = []
    original = peer._connect_tcp

    def connect(*args: Any, **kwargs: Any) -> None:
        states.append(peer.state.bgp_state)
        original(*args, **kwargs)

    monkeypatch.setattr(peer, "_connect_tcp", connect)
    run_loop(speaker.connect_promptly, peer)
    assert gaps(peer.attempts) == [0.5, 0.5]  # the configured interval reaches this peer's loop
    assert states == ["Connect"] * 3  # each attempt is made in Connect, after Idle or Active
    assert speaker.connect_retry_s(peer) == 0.5  # type: ignore[arg-type]


def test_a_refused_attempt_leaves_the_peer_active() -> None:
    peer = StandInPeer(refusals=1)
    seen: list[str] = []
    pause = peer.pause

    def recording_pause(seconds: float) -> None:
        seen.append(peer.state.bgp_state)
        pause(seconds)

    peer.pause = recording_pause  # type: ignore[method-assign]
    run_loop(speaker.connect_promptly, peer)
    assert seen == [BGP_FSM_IDLE, BGP_FSM_ACTIVE, BGP_FSM_ACTIVE, BGP_FSM_ESTABLISHED]


@pytest.mark.parametrize("seconds", [0, -1, 61, float("nan")])
def test_the_retry_interval_is_checked(seconds: float) -> None:
    with pytest.raises(ValueError, match="connect_retry_s"):
        BgpAnnouncer(65000, "198.19.0.1", [Neighbor("198.19.0.11", 64501)], connect_retry_s=seconds)


# --- Ryu's speaker against a listener that drops every session -----------------------------------

CHILD = r"""
import json, socket, sys, time
from ryu.lib import hub
hub.patch(thread=False)  # as ryu-manager does
from ryu.lib.packet import bgp
from ryu.services.protocols.bgp.core_manager import CORE_MANAGER
from ryu.services.protocols.bgp.peer import Peer
from msp_controller.bgp import speaker

NEIGHBOUR, NEIGHBOUR_AS = "127.0.0.2", 64501
retry_s, hold_s, wanted, deadline_s = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((NEIGHBOUR, 179))
listener.listen(8)
listener.settimeout(0.1)
announcer = speaker.BgpAnnouncer(65000, "127.0.0.1", [speaker.Neighbor(NEIGHBOUR, NEIGHBOUR_AS)],
                                 source_address="127.0.0.1", connect_retry_s=retry_s)
announcer.start()
peer = CORE_MANAGER.get_core_service().peer_manager.get_by_addr(NEIGHBOUR)
report = {"our_loop": Peer._connect_loop is speaker.connect_promptly, "retry_s": speaker.connect_retry_s(peer),
          "first_s": None, "reconnect_s": [], "established": 0}


def establish(connection):
    # The neighbour's half of the handshake: Ryu's OPEN in, ours and a KEEPALIVE out.
    connection.settimeout(2)
    connection.recv(4096)
    capabilities = [bgp.BGPOptParamCapabilityMultiprotocol(afi=1, safi=1),
                    bgp.BGPOptParamCapabilityFourOctetAsNumber(as_number=NEIGHBOUR_AS)]
    connection.sendall(bgp.BGPOpen(my_as=NEIGHBOUR_AS, bgp_identifier=NEIGHBOUR, hold_time=90,
                                   opt_param=capabilities).serialize())
    connection.sendall(bgp.BGPKeepAlive().serialize())
    until = time.monotonic() + 3
    while announcer.sessions()[NEIGHBOUR] != "established" and time.monotonic() < until:
        hub.sleep(0.01)
    return announcer.sessions()[NEIGHBOUR] == "established"


started, closed = time.monotonic(), None
while len(report["reconnect_s"]) < wanted and time.monotonic() - started < deadline_s:
    try:
        connection, _ = listener.accept()
    except socket.timeout:
        continue
    if closed is None:
        report["first_s"] = time.monotonic() - started
    else:
        report["reconnect_s"].append(time.monotonic() - closed)
    report["established"] += establish(connection)
    hub.sleep(hold_s)  # up a while (Ryu's loop is waiting now), then lost
    connection.close()
    closed = time.monotonic()
announcer.shutdown(withdraw=False)
print(json.dumps(report), flush=True)
"""

RECONNECTS = 2
RECONNECT_DEADLINE_S = 2.0  # the goal; the loop's own figure is CONNECT_DELAY_S to CONNECT_RETRY_S
HOLD_S = 1.0  # each session stays up this long: by then the loop waits for a loss


@pytest.fixture
def loopback_namespace() -> Any:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    name = f"msp-bgprc-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def test_ryus_speaker_reconnects_to_a_dropping_neighbour_within_two_seconds(loopback_namespace: str) -> None:
    deadline_s = 1.0 + RECONNECTS * (RECONNECT_DEADLINE_S + HOLD_S) + 2.0
    result = subprocess.run(
        ["ip", "netns", "exec", loopback_namespace, sys.executable, "-c", CHILD,
         str(CONNECT_RETRY_S), str(HOLD_S), str(RECONNECTS), str(deadline_s)],
        cwd=ROOT, capture_output=True, text=True, timeout=deadline_s + 30, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["our_loop"] and report["retry_s"] == CONNECT_RETRY_S  # the setting reached Ryu's peer
    assert report["first_s"] is not None and report["first_s"] < RECONNECT_DEADLINE_S, report
    assert len(report["reconnect_s"]) == RECONNECTS, report
    assert max(report["reconnect_s"]) < RECONNECT_DEADLINE_S, report
    assert report["established"] == RECONNECTS + 1, report  # each was a real session, then lost
