"""The wire format of the controller's path probes: pure functions over frame bytes.

A probe is an Ethernet/IPv4/UDP frame to PROBE_UDP_PORT whose 64-byte payload is

    offset  size  field
         0     8  magic b"MSPPROBE"
         8     1  version (1)
         9     3  zero
        12     4  path_id     (u32, big endian: which tunnel path the probe was sent into)
        16     8  sequence    (u64, per path)
        24     8  sent_at_ns  (u64, the controller's monotonic clock when it sent the probe)
        32    32  zero padding

The controller sends it by packet-out into one tunnel at the MSP edge. The middlebox at the
far end reflects UDP to PROBE_UDP_PORT that arrives on a tunnel back out of the same tunnel,
swapping nothing: the frame returns exactly as it went (addresses included), which is fine
because it never leaves the tunnel and the controller reads only the payload. The edge then
sends it to the controller as a packet-in, and parse_probe recovers path, sequence and time.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ryu.lib.packet import ether_types, ethernet, in_proto, ipv4, packet, udp

# Reserved for MSP probes: the middlebox reflects UDP to this port arriving on a tunnel, so
# nothing else may use it inside the tunnels. Chosen from the dynamic range, away from
# BFD (3784/3785) and the tunnel encapsulations' own ports (4789, 6081).
PROBE_UDP_PORT = 47000
PROBE_MAGIC = b"MSPPROBE"
PROBE_VERSION = 1
PROBE_PAYLOAD_LENGTH = 64
PROBE_TTL = 64

_HEADER = struct.Struct("!8sB3xIQQ")
_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_IP_DONT_FRAGMENT = 0b010
_IP_MORE_FRAGMENTS = 0b001


@dataclass(frozen=True)
class Probe:
    path_id: int
    sequence: int
    sent_at_ns: int


def encode_payload(path_id: int, sequence: int, sent_at_ns: int) -> bytes:
    _check_range("path_id", path_id, _U32_MAX)
    _check_range("sequence", sequence, _U64_MAX)
    _check_range("sent_at_ns", sent_at_ns, _U64_MAX)
    header = _HEADER.pack(PROBE_MAGIC, PROBE_VERSION, path_id, sequence, sent_at_ns)
    return header.ljust(PROBE_PAYLOAD_LENGTH, b"\0")


def decode_payload(payload: bytes) -> Probe | None:
    if len(payload) != PROBE_PAYLOAD_LENGTH:
        return None
    magic, version, path_id, sequence, sent_at_ns = _HEADER.unpack_from(payload)
    if magic != PROBE_MAGIC or version != PROBE_VERSION:
        return None
    return Probe(path_id=path_id, sequence=sequence, sent_at_ns=sent_at_ns)


def build_probe(path_id: int, sequence: int, sent_at_ns: int,
                src_mac: str, dst_mac: str, src_ip: str, dst_ip: str) -> bytes:
    """The probe frame; raises ValueError on out-of-range fields or malformed addresses."""
    payload = encode_payload(path_id, sequence, sent_at_ns)
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=_mac(dst_mac), src=_mac(src_mac),
                                       ethertype=ether_types.ETH_TYPE_IP))
    # Don't-fragment: a probe that can't cross the tunnel whole should be lost, not split.
    pkt.add_protocol(ipv4.ipv4(src=_ipv4(src_ip), dst=_ipv4(dst_ip), proto=in_proto.IPPROTO_UDP,
                               ttl=PROBE_TTL, flags=_IP_DONT_FRAGMENT))
    pkt.add_protocol(udp.udp(src_port=PROBE_UDP_PORT, dst_port=PROBE_UDP_PORT))
    pkt.add_protocol(payload)
    pkt.serialize()
    return bytes(pkt.data)


class ProbeTemplate:
    """One path's probe frame, built once: each probe only patches sequence and time.

    The UDP checksum is left zero ("none", allowed for UDP over IPv4), so the payload can
    change without touching the headers: a probe then costs a copy and two integer packs
    instead of a Ryu packet serialization (the controller sends thousands a second)."""

    _PAYLOAD_AT = 14 + 20 + 8  # Ethernet, IPv4 without options, UDP
    _FIELDS = struct.Struct("!QQ")  # sequence, sent_at_ns: 16 bytes into the payload

    def __init__(self, path_id: int, src_mac: str, dst_mac: str, src_ip: str, dst_ip: str) -> None:
        frame = bytearray(build_probe(path_id, 0, 0, src_mac, dst_mac, src_ip, dst_ip))
        frame[self._PAYLOAD_AT - 2:self._PAYLOAD_AT] = b"\0\0"  # the UDP checksum
        self._frame = bytes(frame)

    def frame(self, sequence: int, sent_at_ns: int) -> bytes:
        _check_range("sequence", sequence, _U64_MAX)
        _check_range("sent_at_ns", sent_at_ns, _U64_MAX)
        frame = bytearray(self._frame)
        self._FIELDS.pack_into(frame, self._PAYLOAD_AT + 16, sequence, sent_at_ns)
        return bytes(frame)


def parse_probe(data: bytes | bytearray) -> Probe | None:
    """The probe a frame carries, or None for anything else; never raises."""
    try:
        return _parse(data)
    except Exception:
        return None


_ETH_IPV4 = struct.Struct("!12xH")
_IPV4_HEAD = struct.Struct("!BxHxxHxB")  # version/IHL, total length, flags/offset, protocol
_UDP_HEAD = struct.Struct("!xxHH")  # destination port, length


def _parse(data: bytes | bytearray) -> Probe | None:
    """By hand with struct, not Ryu's parser: probe replies arrive by the thousand a second."""
    if len(data) < 14 + 20 + 8 + PROBE_PAYLOAD_LENGTH or _ETH_IPV4.unpack_from(data)[0] != ether_types.ETH_TYPE_IP:
        return None
    version_ihl, total_length, fragment, protocol = _IPV4_HEAD.unpack_from(data, 14)
    header = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or header < 20 or protocol != in_proto.IPPROTO_UDP:
        return None
    if fragment & 0x3FFF:  # more fragments, or not the first: no UDP header here
        return None
    udp_at = 14 + header
    if len(data) < udp_at + 8 or total_length < header + 8:
        return None
    dst_port, length = _UDP_HEAD.unpack_from(data, udp_at)
    if dst_port != PROBE_UDP_PORT or length != 8 + PROBE_PAYLOAD_LENGTH:
        return None
    payload = bytes(data[udp_at + 8:udp_at + 8 + PROBE_PAYLOAD_LENGTH])
    return decode_payload(payload)


def _check_range(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} {value} is outside 0..{maximum}")


def _mac(address: str) -> str:
    octets = address.split(":")
    if len(octets) != 6 or not all(len(o) == 2 and _is_hex(o) for o in octets):
        raise ValueError(f"not a MAC address: {address!r}")
    return address.lower()


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _ipv4(address: str) -> str:
    try:
        return str(ipaddress.IPv4Address(address))
    except ValueError as err:
        raise ValueError(f"not an IPv4 address: {address!r}") from err
