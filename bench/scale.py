"""Scale benchmark: how the controller's costs grow with the number of homenets.

Part 1, the pure core at each N of --sizes (generated homenets shaped like the reference
home1; 1 in 10 carries an sla class so that probes have sla paths to judge):
  config parse; cold start (CPU for every switch to connect and be reconciled); one tunnel
  port-status (MSPMB and edge, down and up; CPU ms, median and p95); one policy change
  (CPU ms); probe CPU (% of one core: a probe tick every 50 ms for --probe-seconds of
  simulated time, every probe answered, plus the 1 s tick); memory per homenet (RSS growth).
Part 2, the real controller: --real-bridges MSPMB bridges in one OVS instance connect to
ryu-manager; time until all are reconciled, then from a REST create to flows on its bridge.

The benchmark reports and does not assert. One line per measurement; the LAST line is one
JSON object. Part 2 needs root and must run under `flock /tmp/msp-integration.lock`.

    python -m bench.scale [--sizes 100,1000,10000] [--real-bridges 500] [--repeats 1]
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from typing import Any, TypeVar

from . import scale_core, scale_real
from .scale_configs import SLA_EVERY

T = TypeVar("T")
# Targets at 10,000 homenets (reported, never asserted); "<=" each.
TARGETS = {"cold_start_s": 30.0, "port_status_ms": 2.0, "policy_ms": 5.0, "probe_cpu_pct": 20.0,
           "kb_per_homenet": 50.0}
GROWTH_KEYS = ("config_parse_s", "cold_start_s", "port_status_ms", "policy_ms", "probe_cpu_pct", "kb_per_homenet")


log = scale_core.log


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="homenet counts for Part 1 (comma-separated)")
    parser.add_argument("--real-bridges", type=int, default=500, help="MSPMB bridges for Part 2 (0 skips it)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per size; the median of each figure is kept")
    parser.add_argument("--samples", type=int, default=200, help="port-status and policy events per size")
    parser.add_argument("--probe-seconds", type=float, default=10.0, help="simulated seconds of probing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true",
                        help="run each phase under cProfile and print its hot spots (slows everything)")
    parser.add_argument("--reconcile-timeout", type=float, default=900.0)
    parser.add_argument("--create-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    args.sizes = sorted({int(size) for size in args.sizes.split(",") if size.strip()})
    if any(size < 1 for size in args.sizes) or args.repeats < 1 or args.samples < 2:
        parser.error("sizes and repeats must be >= 1, samples >= 2")
    return args


def part1(args: argparse.Namespace) -> list[scale_core.SizeResult]:
    log(f"Part 1: the core alone; 1 homenet in {SLA_EVERY} has an sla-class policy (probe cost)")
    profiler = scale_core.Profiler(args.profile)
    results = []
    for size in args.sizes:
        runs = [isolated(scale_core.measure, size, args.samples, args.probe_seconds, args.seed + repeat, profiler)
                for repeat in range(args.repeats)]
        results.append(scale_core.median_of(runs))
    return results


def isolated(function: Callable[..., T], *args: Any) -> T:
    """Run in a fresh interpreter: each size's memory growth and heap start from nothing,
    not from what the previous size left in the allocator."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def growth(results: list[scale_core.SizeResult]) -> dict[str, dict[str, float | None]]:
    """Each figure's ratio between consecutive sizes (10x homenets: 10 = linear, 1 = flat)."""
    table: dict[str, dict[str, float | None]] = {}
    for small, large in itertools.pairwise(results):
        a, b = asdict(small), asdict(large)
        ratios = {key: round(b[key] / a[key], 2) if a[key] else None for key in GROWTH_KEYS}
        table[f"{small.homenets}->{large.homenets}"] = ratios
        log(f"growth N {small.homenets} -> {large.homenets} (x{large.homenets / small.homenets:g}): "
            + ", ".join(f"{key} x{value}" for key, value in ratios.items()))
    return table


def targets(largest: scale_core.SizeResult) -> dict[str, bool]:
    met = {key: getattr(largest, key) <= limit for key, limit in TARGETS.items()}
    for key, limit in TARGETS.items():
        log(f"target at N={largest.homenets}: {key} <= {limit:g}: {getattr(largest, key):g} "
            f"({'met' if met[key] else 'MISSED'})")
    return met


def core_summary(results: list[scale_core.SizeResult]) -> dict[str, Any]:
    """The largest size's figures, every size's, their growth and the targets."""
    if not results:
        return {}
    largest = results[-1]
    out: dict[str, Any] = {key: getattr(largest, key) for key in (
        "homenets", "config_parse_s", "cold_start_s", "port_status_ms", "port_status_p95_ms", "policy_ms",
        "probe_cpu_pct", "kb_per_homenet")}
    out["sla_homenets"] = f"1 in {SLA_EVERY}"
    out["sizes"] = [asdict(r) for r in results]
    out["growth"] = growth(results)
    out["targets_met"] = targets(largest)
    return out


def real_summary(real: scale_real.RealResult | None) -> dict[str, Any]:
    if real is None:
        return {"real_bridges": 0, "real_reconciled_s": None, "create_to_flows_ms": None, "leaked_packets": None}
    return {k: v for k, v in asdict(real).items() if k != "create_answer"}


def part2(args: argparse.Namespace) -> scale_real.RealResult | None:
    if args.real_bridges <= 0:
        return None
    log(f"Part 2: the real controller and {args.real_bridges} MSPMB bridges in one OVS instance")
    return scale_real.run(args.real_bridges, args.reconcile_timeout, args.create_timeout, log)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    core = core_summary(part1(args) if args.sizes else [])
    real = part2(args)
    print(json.dumps({**core, "repeats": args.repeats, **real_summary(real)}), flush=True)
    return 1 if real is not None and real.errors else 0


if __name__ == "__main__":
    sys.exit(main())
