"""One measured iperf3 stream: a single TCP connection for `seconds`, with what the boxes'
processes, the machine and the userspace datapaths did during its middle part.

The measurement window leaves out the first WARMUP_S (slow start, ARP, first upcalls) and
the last TAIL_S (the stream winding down), so CPU shares are those of steady state.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bench import proc_cpu
from bench.ovs_datapath import MAIN_THREAD, clear_pmd_stats, dump_flows, flow_summary, parse_flows, pmd_stats
from bench.throughput_report import OTHERS, PACKETS, StreamFigures
from topologies.faults import isp_counters
from topologies.ovsbox import run, wait_for
from topologies.scenario import bfd_flap_counts

WARMUP_S = 1.5
TAIL_S = 1.0


def _listening(node: Any, port: int) -> bool:
    return f":{port} " in run(["ss", "-Hltn", f"sport = :{port}"], node, check=False)


def _runs(pid: int, program: str) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip() == program
    except OSError:
        return False


def _pid_of(process: subprocess.Popen[bytes], program: str) -> int:
    """The process's pid once it runs `program` (Mininet's popen execs it through mnexec)."""
    wait_for(lambda: _runs(process.pid, program) or process.poll() is not None, 5,
             what=f"pid {process.pid} to become {program}")
    return process.pid


def _isp_bytes(net: Any) -> dict[str, int]:
    totals = {}
    for name, node in net.isps.items():
        counters = isp_counters(node)
        totals[name] = counters["up"]["bytes"] + counters["down"]["bytes"]
    return totals


def run_stream(net: Any, run_index: int, path: str, direction: str, sender: str, source: str, receiver: str,
               destination: str, port: int, seconds: float, watched: Mapping[str, int], threads_of: Mapping[str, int],
               boxes: Sequence[str], dump: Callable[[str, str], None] | None = None) -> StreamFigures:
    """iperf3 from node `sender` (bound to its address `source`: a node with several paths
    must answer by the one it was reached on) to `destination` (on node `receiver`), one
    TCP stream.

    watched: label -> pid of processes whose CPU is measured (threads_of: also per thread);
    boxes: OVS boxes whose datapath statistics and megaflows are read in the window;
    dump(name, text), if given, receives the raw megaflow listing of each box."""
    if seconds <= WARMUP_S + TAIL_S + 1:
        raise ValueError(f"a stream needs more than {WARMUP_S + TAIL_S + 1:g} s, got {seconds:g}")
    server = net[receiver].popen(["iperf3", "-s", "-1", "-p", str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: _listening(net[receiver], port) or server.poll() is not None, 10,
                 what=f"iperf3 to listen on {receiver}:{port}")
        if server.poll() is not None:
            detail = server.stderr.read().decode(errors="replace") if server.stderr else ""
            raise RuntimeError(f"iperf3 -s on {receiver} exited: {detail.strip()}")
        flaps_before, isp_before = bfd_flap_counts(net), _isp_bytes(net)
        client = net[sender].popen(["iperf3", "-c", destination, "-B", source, "-p", str(port), "-t", f"{seconds:g}",
                                    "-J", "--connect-timeout", "3000"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        pids = dict(watched)
        for label, process in (("iperf3 sender", client), ("iperf3 receiver", server)):
            pids[label] = _pid_of(process, "iperf3")
        time.sleep(WARMUP_S)  # a measurement window, not a wait on a condition
        for box in boxes:
            clear_pmd_stats(net[box])
        all_before = proc_cpu.every_process()
        before, start = proc_cpu.take(pids, threads_of), time.monotonic()
        time.sleep(seconds - WARMUP_S - TAIL_S)
        after, window = proc_cpu.take(pids, threads_of), time.monotonic() - start
        others_total, others_top = proc_cpu.others(all_before, proc_cpu.every_process(), window,
                                                   exclude=set(pids.values()))
        datapath, megaflows = {}, {}
        for box in boxes:
            stats = dict(pmd_stats(net[box]).get(MAIN_THREAD, {}))
            stats["kpps"] = stats.get(PACKETS, 0.0) / window / 1000
            datapath[box] = stats
            listing = dump_flows(net[box])
            megaflows[box] = flow_summary(parse_flows(listing))
            if dump is not None:
                dump(box, listing)
        out, err = client.communicate(timeout=seconds + 30)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # the client's report already holds what the server received; killed below
        flaps_after, isp_after = bfd_flap_counts(net), _isp_bytes(net)
    finally:
        for process in (client, server):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert client is not None
    report = json.loads(out.decode() or "{}")
    if client.returncode != 0 or "error" in report:
        raise RuntimeError(f"iperf3 {sender} -> {destination}:{port} failed: "
                           f"{report.get('error') or err.decode(errors='replace').strip()}")
    end = report["end"]
    return StreamFigures(
        path=path, direction=direction, run=run_index,
        mbps=round(end["sum_received"]["bits_per_second"] / 1e6, 1),
        retransmits=int(end["sum_sent"].get("retransmits", 0)),
        cpu={**proc_cpu.usage(before, after, window), OTHERS: others_total},
        busiest_others=tuple(others_top), datapath=datapath, megaflows=megaflows,
        bfd_flaps=sum(flaps_after[k] - flaps_before.get(k, 0) for k in flaps_after),
        isp_bytes={isp: isp_after[isp] - isp_before.get(isp, 0) for isp in isp_after})


def dump_writer(directory: str | None, prefix: str) -> Callable[[str, str], None] | None:
    """A dump() callback writing <directory>/<prefix>-<box>.txt, or None without a directory."""
    if directory is None:
        return None

    def write(box: str, text: str) -> None:
        with open(os.path.join(directory, f"{prefix}-{box}.txt"), "w") as handle:
            handle.write(text)
    return write
