"""An edge's underlay port in a namespace of its own (a veth pair, no OVS), for the tests of
the edge's shaping in the real kernel: run commands there, send it VXLAN frames as the edge's
switch would, and read tc's per-class counters to say where each went."""
from __future__ import annotations

import re
import socket
import struct
import subprocess

from msp_controller.dataplane.checksum import internet_checksum

SENDER = """
import socket, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((sys.argv[1], 0))
data = sys.stdin.buffer.read()
for n in range(0, len(data), int(sys.argv[2])):
    sock.send(data[n:n + int(sys.argv[2])])
"""


def in_namespace(namespace: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(["ip", "netns", "exec", namespace, *argv], input=stdin, capture_output=True,
                          text=True, timeout=300, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{argv}: {done.stderr.strip()}")
    return done.stdout


def make_port(namespace: str, port: str) -> None:
    """The port and its peer, up (the peer takes what the port sends)."""
    in_namespace(namespace, "ip", "link", "add", port, "type", "veth", "peer", "name", f"{port}p")
    in_namespace(namespace, "ip", "link", "set", port, "up")
    in_namespace(namespace, "ip", "link", "set", f"{port}p", "up")


def vxlan_frame(src: str, vni: int, dscp: int) -> bytes:
    """An edge's downstream tunnel packet: outer IPv4/UDP 4789 from the slot's address, the key."""
    inner = bytes(1000)  # not a small packet (those have a queue of their own)
    udp_len = 8 + 8 + len(inner)
    udp = struct.pack("!HHHH", 40000, 4789, udp_len, 0) + struct.pack("!II", 0x08000000, vni << 8) + inner
    header = struct.pack("!BBHHHBBH4s4s", 0x45, dscp << 2, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton("198.18.41.100"))
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return bytes.fromhex("020000000002" "020000000001" "0800") + header + udp


def send_frames(namespace: str, port: str, frames: list[bytes]) -> None:
    size = len(frames[0])
    assert all(len(f) == size for f in frames)
    subprocess.run(["ip", "netns", "exec", namespace, "python3", "-c", SENDER, port, str(size)],
                   input=b"".join(frames), check=True, timeout=60)


def sent_by_class(namespace: str, port: str) -> dict[str, int]:
    """Packets each HTB class on the port has sent, by class id."""
    out = in_namespace(namespace, "tc", "-s", "class", "show", "dev", port)
    found = {}
    for block in out.split("\nclass "):
        match = re.search(r"htb (\S+) .*?Sent \d+ bytes (\d+) pkt", block, re.S)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found
