"""A voice-like UDP echo: small packets at a steady rate (50/s, like a 20 ms codec), each
echoed back, so every packet crosses both directions; reports round-trip times and loss.

    python -m bench.voiceping echo --port 20000 --seconds 30 --ready /tmp/r
    python -m bench.voiceping ping --to 203.0.113.10 --port 20000 --rate 50 --seconds 15 --out ping.json

The round trip is the network's, measured as TWAMP does (RFC 5357): arrivals are stamped by
the kernel (SO_TIMESTAMPNS), not when a busy process gets round to reading them, and the
echo reports how long it held each packet, which is taken off. In the emulation every host
shares two cores with the switches and the bulk transfers, so a process's own wake-up delay
would otherwise be counted as queueing in the network. The round trip as the application saw
it is kept too.

`ping` writes one JSON object: sent, received, rtt_ms (each reply's network round trip, in
send order) and app_rtt_ms (the same replies, as the pinging process saw them).
"""
from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import time

HEADER = struct.Struct("!QQdQ")  # magic, sequence number, send time (CLOCK_REALTIME), echo hold (ns)
MAGIC = 0x4D5350564F494345
PAYLOAD_BYTES = 160  # a 20 ms G.711 frame
LATE_S = 2.0  # a reply later than this counts as lost
TIMESTAMP = struct.Struct("@qq")  # struct timespec, as SO_TIMESTAMPNS delivers it
# Python 3.11 does not name it; 35 on Linux (asm-generic/socket.h), also the control message type.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def _stamped(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def _receive(sock: socket.socket) -> tuple[bytes, object, float]:
    """One datagram, its sender and the kernel's arrival time (seconds, CLOCK_REALTIME)."""
    data, ancillary, _, peer = sock.recvmsg(2048, socket.CMSG_SPACE(TIMESTAMP.size))
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = TIMESTAMP.unpack(value[:TIMESTAMP.size])
            return data, peer, seconds + nanoseconds / 1e9
    return data, peer, time.time()  # no stamp: the process's own clock


def echo(port: int, seconds: float, ready: str | None) -> None:
    sock = _stamped(socket.AF_INET6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    sock.settimeout(0.1)
    if ready:
        open(ready, "w").close()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, peer, arrived = _receive(sock)
        except TimeoutError:
            continue
        if len(data) >= HEADER.size and HEADER.unpack_from(data)[0] == MAGIC:
            magic, sequence, sent_at, _ = HEADER.unpack_from(data)
            reply = bytearray(data)
            held_ns = max(0, int((time.time() - arrived) * 1e9))
            HEADER.pack_into(reply, 0, magic, sequence, sent_at, held_ns)
            sock.sendto(bytes(reply), peer)


def ping(to: str, port: int, rate: int, seconds: float) -> dict[str, object]:
    family = socket.AF_INET6 if ":" in to else socket.AF_INET
    sock = _stamped(family)
    sock.setblocking(False)
    padding = b"\0" * (PAYLOAD_BYTES - HEADER.size)
    interval = 1.0 / rate
    start = time.monotonic()
    count = int(seconds * rate)
    network: dict[int, float] = {}
    application: dict[int, float] = {}
    sent = 0
    while True:
        now = time.monotonic()
        if sent < count and now >= start + sent * interval:
            try:
                sock.sendto(HEADER.pack(MAGIC, sent, time.time(), 0) + padding, (to, port))
            except OSError:
                pass  # no route right now: the packet counts as lost
            sent += 1
            continue
        if sent >= count and now > start + seconds + LATE_S:
            break
        next_event = start + sent * interval if sent < count else start + seconds + LATE_S
        readable, _, _ = select.select([sock], [], [], max(0.0, next_event - time.monotonic()))
        if not readable:
            continue
        try:
            data, _, arrived = _receive(sock)
        except BlockingIOError:
            continue
        read_at = time.time()
        if len(data) < HEADER.size:
            continue
        magic, sequence, sent_at, held_ns = HEADER.unpack_from(data)
        if magic == MAGIC and read_at - sent_at <= LATE_S:
            network[sequence] = round((arrived - sent_at - held_ns / 1e9) * 1000, 3)
            application[sequence] = round((read_at - sent_at) * 1000, 3)
    return {"sent": sent, "received": len(network),
            "rtt_ms": [network[s] for s in sorted(network)],
            "app_rtt_ms": [application[s] for s in sorted(application)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("echo")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--seconds", type=float, required=True)
    e.add_argument("--ready")
    p = sub.add_parser("ping")
    p.add_argument("--to", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=int, default=50)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "echo":
        echo(args.port, args.seconds, args.ready)
    else:
        result = ping(args.to, args.port, args.rate, args.seconds)
        with open(args.out, "w") as handle:
            json.dump(result, handle)


if __name__ == "__main__":
    main()
