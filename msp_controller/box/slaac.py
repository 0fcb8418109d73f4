"""The IPv6 addresses an ISP's router advertisements gave the box's uplinks (the kernel's
SLAAC), read from /proc/net/if_inet6: where an ISP offers IPv6, the box takes it too.

The tunnels stay on IPv4 leases; the box records these addresses in its OVSDB
(Open_vSwitch external_ids msp-lease6-<bridge> = "<address>/<length>") beside them.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Collection

LEASE6_PREFIX = "msp-lease6-"
IF_INET6 = "/proc/net/if_inet6"
SCOPE_GLOBAL = 0x00
NOT_USABLE = 0x40 | 0x08 | 0x20  # tentative (DAD running), DAD failed, deprecated


def global_addresses(text: str, devices: Collection[str]) -> dict[str, str]:
    """The first usable global address of each device that has one, as "<address>/<length>"
    (the lowest, so that the choice does not flap); text is /proc/net/if_inet6's."""
    found: dict[str, list[ipaddress.IPv6Interface]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[5] not in devices:
            continue
        try:
            address = ipaddress.IPv6Address(int(fields[0], 16))
            length, scope, flags = int(fields[2], 16), int(fields[3], 16), int(fields[4], 16)
        except ValueError:
            continue
        if scope == SCOPE_GLOBAL and not flags & NOT_USABLE:
            found.setdefault(fields[5], []).append(ipaddress.IPv6Interface(f"{address}/{length}"))
    return {device: str(min(addresses)) for device, addresses in found.items()}


def read_global_addresses(devices: Collection[str]) -> dict[str, str]:
    try:
        with open(IF_INET6) as handle:
            return global_addresses(handle.read(), devices)
    except OSError:  # a kernel without IPv6
        return {}
