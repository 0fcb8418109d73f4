"""Stand-in for many home boxes' BFD, for the edge-scale benchmark: VXLAN-encapsulated BFD
control packets, one session per home and ISP, sent at the sessions' full rate from one
raw socket. The edge returns them like any home's (it keeps no BFD state), so its cost is
the real one; only the homes' side is cheaper than one Open vSwitch port per session.

Run inside the homes' namespace: python -m bench.bfd_replay IFACE SRC_MAC DST_MAC N SKIP...
(homes 0..N-1 except SKIP, which run real BFD). Stops on SIGTERM; prints packets sent.
"""
from __future__ import annotations

import ipaddress
import signal
import socket
import struct
import sys
import time

from bench.edge_ovs import EDGE_ADDRESSES, home_address
from msp_controller.dataplane.checksum import internet_checksum

SLOTS = 2
VXLAN_PORT, BFD_PORT = 4789, 3784
BFD_INTERVAL_US = 30_000
TICK_S = 0.005


def _ipv4(src: str, dst: str, ttl: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, ttl, socket.IPPROTO_UDP, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:] + payload


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def bfd_frame(src_mac: bytes, dst_mac: bytes, home: int, slot: int) -> bytes:
    discriminator = (home << 1 | slot) + 1
    bfd = struct.pack("!BBBBIIIII", 0x20, 3 << 6, 3, 24, discriminator, discriminator,
                      BFD_INTERVAL_US, BFD_INTERVAL_US, 0)
    inner_ip = _ipv4("169.254.1.1", "169.254.1.0", 255, _udp(49152 + slot, BFD_PORT, bfd))
    inner = bytes.fromhex("002320000001") + bytes.fromhex("02000000%04x" % (home & 0xFFFF)) + b"\x08\x00" + inner_ip
    vxlan = struct.pack("!II", 0x08000000, (home + 1) << 8) + inner
    outer = _ipv4(home_address(slot, home), EDGE_ADDRESSES[slot], 64,
                  _udp(49152 + (home % 16384), VXLAN_PORT, vxlan))
    return dst_mac + src_mac + b"\x08\x00" + outer


def main() -> int:
    iface, src, dst, count, *skip = sys.argv[1:]
    src_mac, dst_mac = bytes.fromhex(src.replace(":", "")), bytes.fromhex(dst.replace(":", ""))
    skipped = {int(s) for s in skip}
    frames = [bfd_frame(src_mac, dst_mac, home, slot)
              for home in range(int(count)) if home not in skipped for slot in range(SLOTS)]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    per_second = len(frames) * 1_000_000 / BFD_INTERVAL_US
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    sent, start, position = 0, time.monotonic(), 0
    while running:
        due = int((time.monotonic() - start) * per_second) - sent
        for _ in range(max(0, due)):
            try:
                sock.send(frames[position])
            except OSError:
                pass  # a full queue: the edge is behind; counted as not sent
            else:
                sent += 1
            position = (position + 1) % len(frames)
        time.sleep(TICK_S)  # pacing between bursts, not a wait on a condition
    elapsed = time.monotonic() - start
    print(f"{sent} {elapsed:.3f} {per_second:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
