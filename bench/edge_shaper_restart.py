"""Edge shaper restart benchmark: what a restart of an edge's shaper (an upgrade, a crash) or a
lost controller costs its port, by the number of homenets the port shapes.

For each N in --homenets: a generated config of N homenets with two ISPs and a voice class, each
shaped at the edge (bench/scale_configs.py; the commands from the controller's service). On a
veth in a namespace of its own, with the kernel's tc, --runs times:
  first       a shaper on a bare port builds everything (the port unshaped until it is done)
  same        a new shaper, its journal kept, nothing changed: what it runs and how long
  one         the same after one homenet's policy changed while no shaper ran
  unjournaled a new shaper without its journal: the port cleared and built again (what every
              restart, and every lost exchange with the controller, cost before the journal)
Past --kernel-max homenets only `same` is timed, with a fake tc (the shaper's own work: reading
the journal and the controller's full answer, comparing; the kernel is not asked anything).
Medians; last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from bench.scale_configs import config_dict
from msp_controller.api.service import CoreService
from msp_controller.core import MspCore
from msp_controller.model.config import parse_config
from topologies.leak_guard import LeakGuard

NAMESPACE = f"msp-b-eshaper-{os.getpid()}"
BOTH = {"mode": "failover", "order": ["ispA", "ispB"]}


def policy(down_kbps: int) -> dict[str, Any]:
    return {"classes": [{"name": "voice", "match": {"protocol": "udp", "dst_ports": [20000]},
                         "egress": BOTH, "ingress": BOTH, "qos": {"dscp": 46, "priority": "realtime"}}],
            "default": {"egress": BOTH, "ingress": BOTH, "qos": {"dscp": 0, "priority": 10}},
            "rates": {"ispA": {"down_kbps": down_kbps}, "ispB": {"down_kbps": 50000}}}


def served(homenets: int) -> tuple[CoreService, str, str]:
    """The controller's service for N shaped homenets: (service, edge name, its port)."""
    config = parse_config(config_dict(homenets, bgp=False))
    service = CoreService(MspCore(config), lambda effects: [])
    for homenet in config.homenets:
        service.put_policy(homenet.name, policy(100000))
    return service, config.edges[0].name, config.edges[0].underlay_port


def write_answers(service: CoreService, edge: str, path: str) -> None:
    pages, after = {}, None
    while True:
        answer = service.edge_shaping(edge, None, after)
        pages[after or ""] = answer
        after = answer.get("next")
        if after is None:
            break
    with open(path, "w", encoding="utf-8") as file:
        json.dump(pages, file)


def shaper_step(port: str, journal: str, answers: str, fake: bool = False) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.edge_shaper_step", port, journal, answers, *(["--fake-tc"] if fake else [])]
    if not fake:
        argv = ["ip", "netns", "exec", NAMESPACE, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def fresh_port(port: str) -> None:
    subprocess.run(["ip", "netns", "exec", NAMESPACE, "ip", "link", "del", port], capture_output=True, check=False)
    for argv in (["ip", "link", "add", port, "type", "veth", "peer", "name", f"{port[:12]}-p"],
                 ["ip", "link", "set", port, "up"]):
        subprocess.run(["ip", "netns", "exec", NAMESPACE, *argv], check=True)


def measure(homenets: int, runs: int, kernel: bool, work: str) -> dict[str, Any]:
    service, edge, port = served(homenets)
    answers, journal = os.path.join(work, "answers.json"), os.path.join(work, "shaper.journal")
    write_answers(service, edge, answers)
    phases: dict[str, list[dict[str, Any]]] = {}
    for run in range(runs):
        if not kernel:
            if os.path.exists(journal):
                os.unlink(journal)
            shaper_step(port, journal, answers, fake=True)
            phases.setdefault("same", []).append(shaper_step(port, journal, answers, fake=True))
            continue
        fresh_port(port)
        if os.path.exists(journal):
            os.unlink(journal)
        phases.setdefault("first", []).append(shaper_step(port, journal, answers))
        phases.setdefault("same", []).append(shaper_step(port, journal, answers))
        service.put_policy("hn1", policy(100000 + 1000 * (run + 1)))
        write_answers(service, edge, answers)
        phases.setdefault("one", []).append(shaper_step(port, journal, answers))
        phases.setdefault("unjournaled", []).append(shaper_step(port, "-", answers))
    result: dict[str, Any] = {"homenets": homenets, "kernel": kernel}
    for phase, steps in phases.items():
        result[f"{phase}_s"] = round(statistics.median(s["seconds"] for s in steps), 3)
        result[f"{phase}_tc_commands"] = int(statistics.median(s["commands"] for s in steps))
        result[f"{phase}_changed"] = int(statistics.median(s["changed"] for s in steps))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--homenets", default="100,1000,2000,10000")
    parser.add_argument("--kernel-max", type=int, default=2000,
                        help="larger ports are timed without the kernel (a first build takes minutes)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the controller's core says every path is down: no switch runs here
    sizes = [int(n) for n in args.homenets.split(",")]
    results = []
    subprocess.run(["ip", "netns", "add", NAMESPACE], check=True)
    try:
        with LeakGuard(), tempfile.TemporaryDirectory(prefix="msp-bench-eshaper-") as work:
            for n in sizes:
                result = measure(n, args.runs, n <= args.kernel_max, work)
                results.append(result)
                print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", NAMESPACE], check=False)
    print(json.dumps({"runs": args.runs, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
