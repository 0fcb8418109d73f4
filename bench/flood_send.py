"""Paced floods for the flood benchmark, run inside a host's namespace. Each prints one JSON
object (packets sent, errors, seconds).

    python -m bench.flood_send scan --v4 198.51.100.0/24 --v6 2001:db8:100::/48 \
        --skip 198.51.100.1,198.51.100.10 --rate 10000 --seconds 20
        UDP to unassigned addresses of a homenet's prefixes (half IPv4, half IPv6),
        as an Internet scanner would send them.
    python -m bench.flood_send storm --intf h2-eth0 --v4 198.51.100.0/24 --v6 2001:db8:100::/64 \
        --rate 4000 --seconds 20
        ARP requests and neighbour solicitations from made-up hosts (a fresh address and
        MAC each), on a LAN.

Packets are built once, before the clock starts; the loop only sends them, in batches every
BATCH_S, so that 10,000 packets/s cost one core a fraction of its time.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import struct
import time
from collections.abc import Callable

from msp_controller.dataplane.checksum import internet_checksum

BATCH_S = 0.005
DISTINCT = 4096  # different packets per family, sent in turn
ETH_P_ALL = 0x0003


def paced(send_one: Callable[[int], None], rate: int, seconds: float) -> dict[str, object]:
    """Call send_one(n) rate times a second for seconds, in batches; count errors."""
    start = time.monotonic()
    sent = errors = 0
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        due = int((now - start) * rate) - sent
        for _ in range(max(due, 0)):
            try:
                send_one(sent)
            except OSError:
                errors += 1
            sent += 1
        time.sleep(BATCH_S)
    return {"sent": sent, "errors": errors, "seconds": round(time.monotonic() - start, 2)}


def _unassigned(network: ipaddress.IPv4Network | ipaddress.IPv6Network, skip: set[str],
                rng: random.Random) -> list[str]:
    if network.num_addresses <= DISTINCT:
        hosts = [str(a) for a in network.hosts()]
    else:
        hosts = [str(network.network_address + rng.randrange(2, network.num_addresses - 1)) for _ in range(DISTINCT)]
    return [h for h in hosts if h not in skip]


def scan(v4: str, v6: str, skip: set[str], rate: int, seconds: float, port: int = 33434) -> dict[str, object]:
    rng = random.Random(7)
    targets = [(socket.AF_INET, a) for a in _unassigned(ipaddress.IPv4Network(v4), skip, rng)]
    targets6 = [(socket.AF_INET6, a) for a in _unassigned(ipaddress.IPv6Network(v6), skip, rng)]
    mixed = [t for pair in zip(targets * (len(targets6) // len(targets) + 1), targets6, strict=False) for t in pair]
    sockets = {family: socket.socket(family, socket.SOCK_DGRAM) for family in (socket.AF_INET, socket.AF_INET6)}
    for sock in sockets.values():
        sock.setblocking(False)
    payload = b"msp-flood-bench!" * 4

    def send_one(n: int) -> None:
        family, address = mixed[n % len(mixed)]
        sockets[family].sendto(payload, (address, port))

    return paced(send_one, rate, seconds)


def _mac(rng: random.Random) -> bytes:
    return bytes([0x02, *rng.randbytes(5)])  # locally administered, unicast


def _arp_request(src_mac: bytes, src_ip: str, target: str) -> bytes:
    eth = b"\xff" * 6 + src_mac + struct.pack("!H", 0x0806)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, socket.inet_aton(src_ip), b"\0" * 6,
                      socket.inet_aton(target))
    return eth + arp


def _neighbor_solicitation(src_mac: bytes, src_ip: str, target: str) -> bytes:
    target_packed = socket.inet_pton(socket.AF_INET6, target)
    group = bytes.fromhex("ff0200000000000000000001ff") + target_packed[-3:]
    src = socket.inet_pton(socket.AF_INET6, src_ip)
    body = struct.pack("!BBHI16sBB6s", 135, 0, 0, 0, target_packed, 1, 1, src_mac)
    pseudo = src + group + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", internet_checksum(pseudo + body)) + body[4:]
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(body), 58, 255, src, group)
    eth = b"\x33\x33" + group[-4:] + src_mac + struct.pack("!H", 0x86DD)
    return eth + ip6 + body


def storm(intf: str, v4: str, v6: str, rate: int, seconds: float) -> dict[str, object]:
    rng = random.Random(11)
    lan4, lan6 = ipaddress.IPv4Network(v4), ipaddress.IPv6Network(v6)
    frames = []
    for _ in range(DISTINCT):
        mac = _mac(rng)
        src4 = str(lan4.network_address + rng.randrange(2, lan4.num_addresses - 1))
        dst4 = str(lan4.network_address + rng.randrange(2, lan4.num_addresses - 1))
        frames.append(_arp_request(mac, src4, dst4))
        src6 = str(lan6.network_address + rng.randrange(2, 1 << 62))
        dst6 = str(lan6.network_address + rng.randrange(2, 1 << 62))
        frames.append(_neighbor_solicitation(mac, src6, dst6))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((intf, 0))
    sock.setblocking(False)
    return paced(lambda n: sock.send(frames[n % len(frames)]), rate, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("scan", "storm"))
    parser.add_argument("--v4", required=True)
    parser.add_argument("--v6", required=True)
    parser.add_argument("--skip", default="", help="addresses in use (scan): comma-separated")
    parser.add_argument("--intf", help="the LAN interface (storm)")
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    if args.mode == "scan":
        result = scan(args.v4, args.v6, set(filter(None, args.skip.split(","))), args.rate, args.seconds)
    else:
        result = storm(args.intf, args.v4, args.v6, args.rate, args.seconds)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
