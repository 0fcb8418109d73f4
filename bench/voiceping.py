"""A voice-like UDP echo: small packets at a steady rate (50/s, like a 20 ms codec), each
echoed back, so every packet crosses both directions; reports round-trip times and loss.

    python -m bench.voiceping echo --port 20000 --seconds 30 --ready /tmp/r
    python -m bench.voiceping ping --to 203.0.113.10 --port 20000 --rate 50 --seconds 15 --out ping.json

`ping` writes one JSON object: sent, received, rtt_ms (every reply's RTT, in send order).
"""
from __future__ import annotations

import argparse
import json
import socket
import struct
import time

HEADER = struct.Struct("!QQd")  # magic, sequence number, send time (monotonic)
MAGIC = 0x4D5350564F494345
PAYLOAD_BYTES = 160  # a 20 ms G.711 frame
LATE_S = 2.0  # a reply later than this counts as lost


def echo(port: int, seconds: float, ready: str | None) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    sock.settimeout(0.1)
    if ready:
        open(ready, "w").close()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, peer = sock.recvfrom(2048)
        except TimeoutError:
            continue
        if len(data) >= HEADER.size and HEADER.unpack_from(data)[0] == MAGIC:
            sock.sendto(data, peer)


def ping(to: str, port: int, rate: int, seconds: float) -> dict[str, object]:
    family = socket.AF_INET6 if ":" in to else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    padding = b"\0" * (PAYLOAD_BYTES - HEADER.size)
    interval = 1.0 / rate
    start = time.monotonic()
    count = int(seconds * rate)
    rtts: dict[int, float] = {}
    sent = 0
    while True:
        now = time.monotonic()
        if sent < count and now >= start + sent * interval:
            try:
                sock.sendto(HEADER.pack(MAGIC, sent, now) + padding, (to, port))
            except OSError:
                pass  # no route right now: the packet counts as lost
            sent += 1
            continue
        if sent >= count and now > start + seconds + LATE_S:
            break
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            time.sleep(0.0005)
            continue
        magic, sequence, sent_at = HEADER.unpack_from(data)
        arrived = time.monotonic()
        if magic == MAGIC and arrived - sent_at <= LATE_S:
            rtts[sequence] = round((arrived - sent_at) * 1000, 3)
    return {"sent": sent, "received": len(rtts), "rtt_ms": [rtts[s] for s in sorted(rtts)]}


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
