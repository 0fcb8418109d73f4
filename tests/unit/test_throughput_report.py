"""The throughput benchmark's pure parts: figures, medians, the JSON object, and the parsers
of /proc and of the userspace datapath's listings."""
from __future__ import annotations

import json

import pytest

from bench.ovs_datapath import flow_summary, parse_flows, parse_pmd_stats
from bench.proc_cpu import CLOCK_TICKS, MACHINE, SOFTIRQ, STEAL, Snapshot, machine_ticks, stat_ticks, stat_times, usage
from bench.throughput_report import (
    StreamFigures,
    busiest,
    datapath_medians,
    extra_cost,
    limit_text,
    median,
    ratio,
    summary,
)

PMD_STATS = """\
main thread:
  packets received: 500000
  packet recirculations: 250000
  avg. datapath passes per packet: 1.50
  phwol hits: 0
  simple match hits: 0
  emc hits: 749990
  megaflow hits: 0
  avg. subtable lookups per megaflow hit: 2.12
  miss with success upcall: 10
  miss with failed upcall: 0
  avg. packets per output batch: 27.16
"""

FLOWS = """\
flow-dump from the main thread:
recirc_id(0),in_port(2),packet_type(ns=0,id=0),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02),\
eth_type(0x0800),ipv4(src=198.51.100.10,dst=203.0.113.10,ttl=64,frag=no), packets:90000, bytes:1, used:0.0s, \
actions:set(ipv4(ttl=63)),tnl_push(tnl_port(3),header(size=50,type=4)),out_port(4)),5
recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth_type(0x0806), packets:3, bytes:1, used:1.0s, \
actions:userspace(pid=0,controller(reason=1,dont_send=0,continuation=0,recirc_id=1,rule_cookie=0x1,\
controller_id=0,max_len=65535))
"""


def figures(path: str, direction: str, mbps: float, **kw: object) -> StreamFigures:
    return StreamFigures(path=path, direction=direction, mbps=mbps, **kw)  # type: ignore[arg-type]


def three_runs() -> list[StreamFigures]:
    rates = {("msp", "up"): (500, 450, 520), ("msp", "down"): (600, 610, 590),
             ("vxlan", "up"): (800, 790, 810), ("vxlan", "down"): (700, 720, 710),
             ("routed", "up"): (2000, 2100, 1900), ("routed", "down"): (2000, 2000, 2000)}
    return [figures(path, direction, rate, cpu={MACHINE: 199.0, "a ovs-vswitchd": 90.0,
                                                "a ovs-vswitchd/ovs-vswitchd": 85.0, "iperf3 sender": 40.0},
                    bfd_flaps=1 if path == "msp" else 0, run=run)
            for (path, direction), values in rates.items() for run, rate in enumerate(values, 1)]


def test_median_and_ratio() -> None:
    assert median([3, 1, 2]) == 2
    assert median([1, 2, 3, 4]) == 2.5
    with pytest.raises(ValueError, match="nothing was measured"):
        median([])
    assert ratio(450, 500) == 0.9
    assert ratio(1, 0) is None


def test_unknown_path_or_direction_is_named() -> None:
    with pytest.raises(ValueError, match="unknown path 'gre'"):
        figures("gre", "up", 1)
    with pytest.raises(ValueError, match="unknown direction 'sideways'"):
        figures("msp", "sideways", 1)


def test_summary_has_medians_per_direction_and_ratio() -> None:
    result = summary(three_runs(), runs=3, seconds=10, leaked_packets=0, limit="CPU",
                     mtu={"msp": 1450, "vxlan": 1450, "routed": 1500})
    assert result["msp_mbps_up"] == 500 and result["msp_mbps_down"] == 600
    assert result["vxlan_mbps_up"] == 800 and result["vxlan_mbps_down"] == 710
    assert result["msp_mbps"] == 550 and result["vxlan_mbps"] == 755
    assert result["routed_mbps"] == 2000
    assert result["ratio_msp_vxlan"] == round(550 / 755, 3)
    assert result["ratio_msp_vxlan_up"] == 0.625
    # run by run: 1100/1500 = 0.733, 1060/1510 = 0.702, 1110/1520 = 0.730
    assert result["ratio_msp_vxlan_paired"] == round(1110 / 1520, 3)
    assert result["meets_ratio_target"] is False and result["meets_gbit_target"] is False
    assert result["bfd_flaps"] == {"msp": 6, "vxlan": 0, "routed": 0}
    # 2000 Mbit/s of 1500-byte packets: 166.7 k packets/s for 199 % of a core: 11.94 us each
    assert result["machine_us_per_packet"]["routed_up"] == 11.94
    assert result["leaked_packets"] == 0 and result["limit"] == "CPU" and result["runs"] == 3
    json.dumps(result)  # the last line printed must be one JSON object


def test_busiest_counts_threads_not_their_process_twice() -> None:
    cpu = {MACHINE: 199.0, "a ovs-vswitchd": 90.0, "a ovs-vswitchd/ovs-vswitchd": 85.0,
           "a ovs-vswitchd/ovs-vswitchd user": 30.0, "iperf3 sender": 40.0}
    assert busiest(cpu) == [("a ovs-vswitchd/ovs-vswitchd", 85.0), ("iperf3 sender", 40.0)]


def test_limit_names_cpu_mtu_and_offloads() -> None:
    text = limit_text(three_runs(), overlay_mtu=1450, underlay_mtu=1500, cores=2)
    assert text.startswith("CPU-bound: all 2 cores busy")
    assert "a ovs-vswitchd/ovs-vswitchd 85%" in text
    assert "MTU 1450" in text and "tx checksum offload off" in text


def test_pmd_stats_parsed_per_thread() -> None:
    main = parse_pmd_stats(PMD_STATS)["main thread"]
    assert main["packets received"] == 500000
    assert main["miss with success upcall"] == 10
    assert main["emc hits"] == 749990
    assert main["avg. datapath passes per packet"] == 1.5


def test_datapath_medians_per_box() -> None:
    stats = {**parse_pmd_stats(PMD_STATS)["main thread"], "kpps": 50.0}
    # 40 % of a core for 50,000 packets/s: 8 microseconds per packet
    streams = [figures("msp", "up", 500, datapath={"mspmb": stats},
                       cpu={"mspmb ovs-vswitchd/ovs-vswitchd": 40.0, "mspmb ovs-vswitchd/ovs-vswitchd user": 15.0})]
    assert datapath_medians(streams, "msp", "up")["mspmb"] == {
        "kpackets_per_s": 50.0, "main_thread_us_per_packet": 8.0, "main_thread_user_us_per_packet": 3.0,
        "upcalls_per_1000_packets": 0.02, "passes_per_packet": 1.5}


def test_extra_cost_names_where_the_msp_path_spends_more_per_bit() -> None:
    def stream(path: str, direction: str, mbps: float, ovs: float, sender: float) -> StreamFigures:
        return figures(path, direction, mbps, cpu={MACHINE: 200.0, "b ovs-vswitchd": ovs,
                                                   "b ovs-vswitchd/ovs-vswitchd": ovs, "iperf3 sender": sender})
    streams = [stream("msp", d, 500, 50, 50) for d in ("up", "down")]
    streams += [stream("vxlan", d, 1000, 50, 60) for d in ("up", "down")]
    # per Gbit/s: OVS 100 (msp) vs 50 (vxlan), sender 100 vs 60; the machine itself is left out
    assert extra_cost(streams, "up") == [("b ovs-vswitchd/ovs-vswitchd", 100.0, 50.0), ("iperf3 sender", 100.0, 60.0)]
    assert "b ovs-vswitchd/ovs-vswitchd 100 vs 50" in limit_text(streams, 1450, 1500, cores=2)


def test_megaflows_parsed_with_fields_and_slow_path() -> None:
    flows = parse_flows(FLOWS)
    assert [f.packets for f in flows] == [90000, 3]
    assert flows[0].fields == ("recirc_id", "in_port", "packet_type", "eth", "eth_type", "ipv4")
    assert not flows[0].slow_path and flows[1].slow_path
    report = flow_summary(flows, top=1)
    assert report["megaflows"] == 2 and report["slow_path_flows"] == 1 and report["slow_path_packets"] == 3
    assert report["busiest"][0]["packets"] == 90000


def test_proc_stat_parsing_and_usage() -> None:
    # comm with a space and a parenthesis; utime 150, stime 50
    line = "42 (ovs (main) x) S 1 42 42 0 -1 4194560 10 0 0 0 150 50 0 0 10 -10 5 0 100 0 0"
    assert stat_ticks(line) == ("ovs (main) x", 200)
    assert stat_times(line) == ("ovs (main) x", 150, 50)
    ticks = machine_ticks("cpu  100 0 50 800 10 0 25 30 0 0\ncpu0 50 0 25 400 5 0 12 15 0 0\n")
    assert ticks == {MACHINE: 205, SOFTIRQ: 25, STEAL: 30}
    before = Snapshot({"p": 100, MACHINE: 1000})
    after = Snapshot({"p": 150, MACHINE: 1150, "new": 5})
    shares = usage(before, after, seconds=1.0)
    assert set(shares) == {"p", MACHINE}
    assert shares["p"] == round(50 * 100 / CLOCK_TICKS, 1)
    with pytest.raises(ValueError, match="positive"):
        usage(before, after, seconds=0)
