"""What bench-qos measures with: the voice echo's round trips and iperf3's steady-state rates."""
from __future__ import annotations

import socket
import threading

from bench import voiceping
from msp_controller.dataplane import shaping
from topologies.measure import TcpResult
from topologies.shaping import PING_PAYLOAD_BYTES, ping_rtts


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_voice_echo_reports_every_packet_with_the_network_round_trip_within_the_applications(tmp_path):
    port = free_udp_port()
    ready = tmp_path / "ready"
    echo = threading.Thread(target=voiceping.echo, args=(port, 3.0, str(ready)), daemon=True)
    echo.start()
    while not ready.exists() and echo.is_alive():
        echo.join(0.01)
    found = voiceping.ping("127.0.0.1", port, rate=100, seconds=0.5)
    echo.join()
    assert found["sent"] == 50 and found["received"] == 50
    network, application = found["rtt_ms"], found["app_rtt_ms"]
    assert len(network) == len(application) == 50
    # Kernel arrival stamps, less the echo's hold: never later than the process read the reply.
    pairs = list(zip(network, application, strict=True))
    assert all(0 <= n <= a for n, a in pairs), pairs


def test_steady_rates_count_only_whole_intervals_inside_the_window():
    result = TcpResult(True, 0, 4.0, "", 0, intervals=(
        (0.0, 1.0, 125_000, 1_250_000),    # slow start, left out
        (1.0, 2.0, 2_500_000, 12_500_000),
        (2.0, 3.0, 2_500_000, 12_500_000),
        (3.0, 3.4, 1, 1)))                 # the last partial interval, left out
    assert result.mbps_between(1.0, 3.0) == 20.0
    assert result.mbps_between(1.0, 3.0, reverse=True) == 100.0
    assert result.mbps_between(5.0, 6.0) == 0.0


def test_ping_series_reads_each_reply_once_and_the_probe_is_not_a_small_packet():
    text = ("PING 203.0.113.10 (203.0.113.10) 200(228) bytes of data.\n"
            "208 bytes from 203.0.113.10: icmp_seq=1 ttl=61 time=0.912 ms\n"
            "208 bytes from 203.0.113.10: icmp_seq=3 ttl=61 time=24.5 ms\n"
            "208 bytes from 203.0.113.10: icmp_seq=3 ttl=61 time=25.1 ms (DUP!)\n"
            "\n--- 203.0.113.10 ping statistics ---\n"
            "3 packets transmitted, 2 received, 33% packet loss, time 101ms\n"
            "rtt min/avg/max/mdev = 0.912/12.706/24.500/11.794 ms\n")
    assert ping_rtts(text) == {1: 0.912, 3: 24.5}
    # Outer IP length in the tunnel: ICMP (8) + inner IP (20) + Ethernet (14) + VXLAN (8) + UDP (8)
    # + outer IP (20) around the payload; the shapers put packets under 128 bytes in the ACK queue.
    assert PING_PAYLOAD_BYTES + 8 + 20 + 14 + 8 + 8 + 20 >= shaping.SMALL_PACKET_BYTES
