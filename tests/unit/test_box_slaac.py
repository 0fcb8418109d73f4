"""Which IPv6 address an uplink took from its ISP's router advertisements: global, usable
(not tentative, deprecated or failed DAD), the lowest when there are several."""
from __future__ import annotations

from msp_controller.box.slaac import global_addresses

IF_INET6 = """\
fe80000000000000a8bbccfffe000001 05 40 20 80  br-ispA
20010db8004100000000000000000009 05 40 00 00  br-ispA
20010db8004100000000000000000002 05 40 00 00  br-ispA
20010db800410000a8bbccfffe000001 05 40 00 40  br-ispB
20010db800420000a8bbccfffe000001 06 40 00 20  br-ispB
20010db800430000a8bbccfffe000001 07 40 00 00  eth0
00000000000000000000000000000001 01 80 10 80       lo
garbage line
"""


def test_an_uplinks_global_usable_address_and_nothing_else():
    assert global_addresses(IF_INET6, ["br-ispA", "br-ispB"]) == {"br-ispA": "2001:db8:41::2/64"}


def test_no_ipv6_offered_no_address():
    assert global_addresses("", ["br-ispA"]) == {}
