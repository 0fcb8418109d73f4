"""bench-qos-hops' parts: tcpdump's voice filter, reading voice stamps from a capture, and
the delay and losses of each hop."""
from __future__ import annotations

import math
import shutil
import struct
import subprocess

import pytest

from bench.voiceping import HEADER, MAGIC
from topologies.hops import hop_delays, read_voice_stamps, voice_filter

VOICE_PORT = 20000


def ipv4(protocol: int, source: str, destination: str, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, protocol, 0,
                         bytes(int(x) for x in source.split(".")), bytes(int(x) for x in destination.split(".")))
    return header + payload


def udp(source_port: int, destination_port: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", source_port, destination_port, 8 + len(payload), 0) + payload


def ethernet(payload: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + payload


def voice(sequence: int, request: bool) -> bytes:
    """A voice packet as the host sends it (request: to the echo's port; else its reply)."""
    ports = (40000, VOICE_PORT) if request else (VOICE_PORT, 40000)
    return ethernet(ipv4(17, "198.51.100.10", "203.0.113.10", udp(*ports, HEADER.pack(MAGIC, sequence, 0.0, 0))))


def tunnelled(inner: bytes) -> bytes:
    vxlan = struct.pack("!II", 0x08000000, 1 << 8)
    return ethernet(ipv4(17, "198.18.1.2", "198.18.10.11", udp(51000, 4789, vxlan + inner)))


def pcap(packets: list[tuple[float, bytes]], nano: bool = True, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    scale = 1e9 if nano else 1e6
    out = struct.pack(order + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for at, data in packets:
        seconds = int(at)
        out += struct.pack(order + "IIII", seconds, round((at - seconds) * scale), len(data), len(data)) + data
    return out


def test_stamps_are_read_by_sequence_number_first_sighting_wins_and_other_packets_are_skipped():
    data = pcap([(10.000_000_125, tunnelled(voice(7, True))),
                 (10.5, ethernet(ipv4(6, "198.51.100.10", "203.0.113.10", b"\0" * 40))),  # not voice
                 (11.25, voice(8, True)),
                 (12.0, voice(7, True))])  # seen again: the first time counts
    assert read_voice_stamps(data) == {7: pytest.approx(10.000_000_125, abs=1e-9), 8: pytest.approx(11.25)}


def test_microsecond_and_big_endian_captures_read_the_same():
    packets = [(3.5, voice(1, False)), (4.000_001, voice(2, False))]
    assert read_voice_stamps(pcap(packets, nano=False, big_endian=True)) == {
        1: pytest.approx(3.5), 2: pytest.approx(4.000_001)}


def test_a_file_that_is_not_a_capture_is_refused():
    with pytest.raises(ValueError, match="not a pcap"):
        read_voice_stamps(b"GET / HTTP/1.1\r\n\r\n" * 2)


def test_each_hop_gets_its_delay_percentiles_and_the_packets_lost_on_it():
    sent = {seq: float(seq) for seq in range(201)}
    shaped = {seq: at + (0.010 if seq == 99 else 0.001) for seq, at in sent.items() if seq != 50}
    hops = hop_delays([("host out", sent), ("other ISP", {}), ("ISP out", shaped),
                       ("edge in", {seq: at + 0.0001 for seq, at in shaped.items()})])
    assert [(h.start, h.end) for h in hops] == [("host out", "ISP out"), ("ISP out", "edge in")]
    first, second = hops
    assert (first.packets, first.lost) == (200, 1)  # one slow packet in 200 is past the p99
    assert first.p50_ms == pytest.approx(1.0) and first.p99_ms == pytest.approx(1.0)
    assert first.max_ms == pytest.approx(10.0)
    assert (second.packets, second.lost) == (200, 0) and second.p99_ms == pytest.approx(0.1)


def test_a_hop_where_everything_was_lost_has_no_delay_but_counts_the_loss():
    (hop,) = hop_delays([("a", {1: 1.0, 2: 2.0}), ("b", {3: 3.0})])
    assert (hop.packets, hop.lost) == (0, 2) and math.isnan(hop.p99_ms)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is installed by `make install`")
@pytest.mark.parametrize("request_way", [True, False])
def test_the_capture_filter_takes_one_way_of_the_voice_plain_and_tunnelled_and_nothing_else(tmp_path, request_way):
    capture = tmp_path / "mixed.pcap"
    capture.write_bytes(pcap([
        (1.0, voice(1, True)), (2.0, voice(2, False)),
        (3.0, tunnelled(voice(3, True))), (4.0, tunnelled(voice(4, False))),
        (5.0, tunnelled(ethernet(ipv4(17, "198.51.100.10", "203.0.113.10", udp(40000, 5301, b"\0" * 32))))),
    ], nano=False))
    kept = tmp_path / "kept.pcap"
    subprocess.run(["tcpdump", "-r", str(capture), "-w", str(kept), voice_filter(VOICE_PORT, request_way)],
                   check=True, capture_output=True)
    assert sorted(read_voice_stamps(kept.read_bytes())) == ([1, 3] if request_way else [2, 4])
