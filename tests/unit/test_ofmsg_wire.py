"""Golden: the controller's prebuilt matches are what Ryu itself would put on the wire."""
from __future__ import annotations

from typing import Any

import pytest

from msp_controller.dataplane import ofmsg
from msp_controller.dataplane.ofmsg import ofp, parser


class _Datapath:
    ofproto = ofp
    ofproto_parser = parser


@pytest.mark.parametrize("fields", [
    {"in_port": 3, "eth_type": 0x800, "ipv4_dst": ("198.51.100.0", "255.255.255.0")},
    {"eth_type": 0x86DD, "ipv6_src": ("2001:db8:100::", "ffff:ffff:ffff::"), "in_port": 4},
    {"eth_type": 0x800, "ip_proto": 17, "udp_dst": 47000, "in_port": 9},
    {"eth_dst": "0A:00:00:00:00:01", "eth_type": 0x86DD, "ip_proto": 58, "icmpv6_type": 135, "in_port": 2},
    {"reg0": (5, 0xFF)},
    {"eth_type": 0x800, "ipv4_dst": "198.51.100.10"},
    {},
])
def test_a_flow_mod_is_byte_for_byte_what_ryu_builds(fields: dict[str, Any]) -> None:
    flow = ofmsg.Flow(2, 100, ofmsg.match(**fields), (ofmsg.SetField("eth_src", "02:00:00:00:00:01"),
                                                       ofmsg.Output(1)), goto=None)
    ours = ofmsg.flow_add(flow)
    theirs = parser.OFPFlowMod(None, cookie=flow.cookie, table_id=2, command=ofp.OFPFC_ADD, priority=100,
                               buffer_id=ofp.OFP_NO_BUFFER, match=parser.OFPMatch(**fields),
                               instructions=ours.instructions)
    for message in (ours, theirs):
        message.datapath = _Datapath()
        message.set_xid(7)
        message.serialize()
    assert ours.buf == theirs.buf
    assert dict(ours.match.items()) == dict(theirs.match.items())
    ours.serialize()  # a second send (a resend) gives the same bytes
    assert ours.buf == theirs.buf
