"""What bench-qos measures with: the voice echo's round trips and iperf3's steady-state rates."""
from __future__ import annotations

import socket
import threading

from bench import voiceping
from topologies.measure import TcpResult


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
