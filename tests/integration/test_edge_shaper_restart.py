"""The edge's shaper restarted on a real port keeps it shaped: with its journal it rebuilds only
the homenet whose policy changed meanwhile (every other queue keeps its counters, so it was not
made again), and a port made again (a new ifindex) is built from the base up.

The shaper runs as the edge runs it, in the port's namespace, with the kernel's tc; only its
controller is a file of the answers the controller's service gives (api/service.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.scale_configs import config_dict
from msp_controller.api.service import CoreService
from msp_controller.core import MspCore
from msp_controller.dataplane.shaping import edge_pair_class, edge_pair_ids, leaf_minors
from msp_controller.model.config import parse_config
from tests.integration.conftest import NEEDS
from tests.integration.edge_port import in_namespace, make_port, send_frames, sent_by_class, vxlan_frame

pytestmark = NEEDS

HOMENETS = 300
NAMESPACE = f"msp-t-eshaper-{os.getpid()}"
DRIVER = """
import json, logging, sys
from msp_controller.box.edge_journal import Journal
from msp_controller.box.edge_shaper import EdgeShaper
logging.basicConfig(level=logging.INFO)
pages = json.load(open(sys.argv[3]))
shaper = EdgeShaper(lambda since, after: pages[after or ""], sys.argv[1], journal=Journal(sys.argv[2]))
print(shaper.step())
"""


def _policy(down_kbps: int) -> dict:
    both = {"mode": "failover", "order": ["ispA", "ispB"]}
    return {"classes": [{"name": "voice", "match": {"protocol": "udp", "dst_ports": [20000]},
                         "egress": both, "ingress": both, "qos": {"dscp": 46, "priority": "realtime"}}],
            "default": {"egress": both, "ingress": both, "qos": {"dscp": 0, "priority": 10}},
            "rates": {"ispA": {"down_kbps": down_kbps}, "ispB": {"down_kbps": 50000}}}


@pytest.fixture
def edge():
    config = parse_config(config_dict(HOMENETS, bgp=False))
    service = CoreService(MspCore(config), lambda effects: [])
    for homenet in config.homenets:
        service.put_policy(homenet.name, _policy(100000))
    subprocess.run(["ip", "netns", "add", NAMESPACE], check=True)
    try:
        make_port(NAMESPACE, config.edges[0].underlay_port)
        yield service, config.edges[0]
    finally:
        subprocess.run(["ip", "netns", "del", NAMESPACE], check=False)


def _restart_shaper(service: CoreService, edge_name: str, port: str, tmp_path) -> int:
    """A new shaper process, given the controller's full answer (its pages by `after`); returns
    how many homenets it changed."""
    pages, after = {}, None
    while True:
        answer = service.edge_shaping(edge_name, None, after, page=100)
        pages[after or ""] = answer
        after = answer.get("next")
        if after is None:
            break
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(pages))
    out = in_namespace(NAMESPACE, sys.executable, "-c", DRIVER, port, str(tmp_path / "shaper.journal"), str(answers))
    return int(out.split()[-1])


def _leaf_counts(counts: dict[str, int], homenet_id: int) -> int:
    major, block = edge_pair_ids(homenet_id, 0)
    return sum(counts.get(f"{major:x}:{block | minor:x}", 0) for minor in leaf_minors())


def test_a_restarted_shaper_rebuilds_only_the_homenet_that_changed_and_a_new_port_whole(edge, tmp_path):
    service, config_edge = edge
    port = config_edge.underlay_port
    assert _restart_shaper(service, config_edge.name, port, tmp_path) == HOMENETS
    source = str(config_edge.tunnel_ip(0))
    send_frames(NAMESPACE, port, [vxlan_frame(source, 1, 0)] * 5 + [vxlan_frame(source, 2, 0)] * 6)
    before = sent_by_class(NAMESPACE, port)
    assert (_leaf_counts(before, 1), _leaf_counts(before, 2)) == (5, 6)

    service.put_policy("hn2", _policy(200000))  # while no shaper runs
    assert _restart_shaper(service, config_edge.name, port, tmp_path) == 1
    after = sent_by_class(NAMESPACE, port)
    assert _leaf_counts(after, 1) == 5  # hn1's queues are the same ones: not cleared, not rebuilt
    assert _leaf_counts(after, 2) == 0  # hn2's were made again
    assert len(after) == len(before)
    shown = in_namespace(NAMESPACE, "tc", "class", "show", "dev", port, "classid", edge_pair_class(2, 0))
    assert "rate 194Mbit" in shown, shown

    in_namespace(NAMESPACE, "ip", "link", "del", port)
    make_port(NAMESPACE, port)  # the same name, another port: the journal does not describe it
    assert _restart_shaper(service, config_edge.name, port, tmp_path) == HOMENETS
    assert len(sent_by_class(NAMESPACE, port)) == len(before)
