"""A paced UDP stream with sequence numbers, to measure outages: longest gap and packets lost.

Run the receiver and the sender inside the hosts' namespaces:
    python -m bench.udpflow recv --port 5001 --seconds 8 --out recv.json
    python -m bench.udpflow send --to 198.51.100.10 --port 5001 --rate 1000 --seconds 6 --out send.json
Each writes one JSON object. The receiver's longest gap between two arrivals is the outage
as the application saw it; sent minus received is the loss. It also lists every gap of at
least GAP_LISTED_MS (when, how long), so that a run with several outages can count them.
"""
from __future__ import annotations

import argparse
import json
import socket
import struct
import time

HEADER = struct.Struct("!QQ")  # magic, sequence number
MAGIC = 0x4D53505544500001
PAYLOAD_BYTES = 64
GAP_LISTED_MS = 10.0  # 10 packet intervals at 1000/s: an outage, not scheduling jitter
MAX_GAPS_LISTED = 10000  # bounded, whatever the run's length


def send(to: str, port: int, rate: int, seconds: float, src_port: int = 0) -> dict[str, object]:
    family = socket.AF_INET6 if ":" in to else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if src_port:
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", src_port))
    padding = b"\0" * (PAYLOAD_BYTES - HEADER.size)
    interval = 1.0 / rate
    start = time.monotonic()
    sent = errors = 0
    while True:
        due = start + sent * interval
        now = time.monotonic()
        if now - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        try:
            sock.sendto(HEADER.pack(MAGIC, sent) + padding, (to, port))
        except OSError:
            errors += 1  # e.g. no route while a path is down: the packet counts as lost
        sent += 1
    return {"sent": sent, "send_errors": errors, "seconds": time.monotonic() - start}


def receive(port: int, seconds: float, ready_file: str | None = None) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    sock.settimeout(0.05)
    if ready_file:
        open(ready_file, "w").close()
    deadline = time.monotonic() + seconds
    seen: set[int] = set()
    last_arrival: float | None = None
    max_gap = 0.0
    max_gap_at = 0.0
    first_arrival: float | None = None
    gaps: list[tuple[float, float]] = []  # (seconds after the first arrival, gap in ms)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(2048)
        except TimeoutError:
            continue
        if len(data) < HEADER.size:
            continue
        magic, sequence = HEADER.unpack_from(data)
        if magic != MAGIC:
            continue
        now = time.monotonic()
        if first_arrival is None:
            first_arrival = now
        if last_arrival is not None and (now - last_arrival) * 1000 >= GAP_LISTED_MS and len(gaps) < MAX_GAPS_LISTED:
            gaps.append((round(last_arrival - first_arrival, 3), round((now - last_arrival) * 1000, 2)))
        if last_arrival is not None and now - last_arrival > max_gap:
            max_gap = now - last_arrival
            max_gap_at = last_arrival - first_arrival
        last_arrival = now
        seen.add(sequence)
    return {"received": len(seen), "max_gap_ms": round(max_gap * 1000, 2),
            "max_gap_at_s": round(max_gap_at, 3), "highest_sequence": max(seen) if seen else -1,
            "gaps_ms": gaps, "first_arrival_at": first_arrival}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sender = sub.add_parser("send")
    sender.add_argument("--to", required=True)
    sender.add_argument("--port", type=int, default=5001)
    sender.add_argument("--rate", type=int, default=1000, help="packets per second")
    sender.add_argument("--seconds", type=float, default=5.0)
    sender.add_argument("--src-port", type=int, default=0, help="source port (0: any)")
    sender.add_argument("--out", required=True)
    receiver = sub.add_parser("recv")
    receiver.add_argument("--port", type=int, default=5001)
    receiver.add_argument("--seconds", type=float, default=7.0)
    receiver.add_argument("--out", required=True)
    receiver.add_argument("--ready", help="file created once the socket is bound")
    args = parser.parse_args()
    if args.mode == "send":
        result = send(args.to, args.port, args.rate, args.seconds, args.src_port)
    else:
        result = receive(args.port, args.seconds, args.ready)
    with open(args.out, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
