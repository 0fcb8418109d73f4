"""How long the controller's REST answers hold its event loop, by the number of homenets:
everything the controller does runs in one eventlet loop, so while an answer is computed and
encoded, port status, BFD and probes wait. Measured with a 1 ms ticker in the same loop, as
the Ryu app runs the answers (yielding now and then: EDGE_SHAPING_PAUSE_EVERY,
READER_PAUSE_EVERY) and as before (never yielding; the edge shaping in pages of 500):
- every page of a full edge shaping answer (an edge shaper's start, or every shaper at once
  after a controller restart), also timed whole, and an answer to `since` after one change;
- GET /health and GET /homenets;
- a full collection of the garbage collector, with the loaded state in its walks (as before)
  and frozen out of them (core/heap.py, as the app does).
Generated configs (two ISPs, a voice class, shaped at the edge), the controller's service in
this process, no switch. Medians of --runs; last line: one JSON object.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import eventlet

from bench.edge_shaper_restart import policy, served
from msp_controller.api.service import EDGE_SHAPING_PAGE, CoreService
from msp_controller.core.heap import freeze_loaded_state

TICK_S = 0.001


BEFORE_PAGE = 500  # the page size before the answers yielded


def full_answer(service: CoreService, edge: str, page: int = EDGE_SHAPING_PAGE) -> tuple[int, int]:
    """(pages, bytes) of every page of a full answer, each encoded as the REST API sends it."""
    pages, size, after = 0, 0, None
    while True:
        answer = service.edge_shaping(edge, None, after, page=page)
        pages += 1
        size += len(json.dumps(answer))
        after = answer.get("next")
        if after is None:
            return pages, size


def longest_hold(work: Callable[[], object]) -> float:
    """The longest the event loop went without running another green thread (a 1 ms ticker)
    while work ran in one of its own."""
    longest = 0.0
    running = True

    def ticker() -> None:
        nonlocal longest
        while running:
            started = time.monotonic()
            eventlet.sleep(TICK_S)
            longest = max(longest, time.monotonic() - started - TICK_S)

    tick = eventlet.spawn(ticker)
    eventlet.sleep(0.01)
    eventlet.spawn(work).wait()
    running = False
    tick.wait()
    return longest


def collect_s() -> float:
    """What one full collection of the garbage collector costs: the loop waits that long."""
    started = time.perf_counter()
    gc.collect()
    return time.perf_counter() - started


def encoded(answer: Callable[[], object]) -> Callable[[], object]:
    """The answer as the REST API sends it: computed, then encoded."""
    return lambda: json.dumps(answer())


def measure(homenets: int, runs: int) -> dict[str, Any]:
    service, edge, _ = served(homenets)
    samples: dict[str, list[float]] = {}

    def hold(key: str, work: Callable[[], object]) -> None:
        samples.setdefault(key, []).append(longest_hold(work))

    pages = size = 0
    for _ in range(runs):  # as before: the heap unfrozen, never yielding, pages of 500
        service.pause = lambda: None
        samples.setdefault("gc_collect_s_before", []).append(collect_s())
        hold("loop_held_s_before", lambda: full_answer(service, edge, BEFORE_PAGE))
        hold("health_loop_held_s_before", encoded(service.health))
        hold("homenets_loop_held_s_before", encoded(service.list_homenets))
    frozen = freeze_loaded_state()  # as the Ryu app does once it has loaded its homenets
    service.pause = eventlet.sleep  # and as it runs the answers
    for run in range(runs):
        samples.setdefault("gc_collect_s", []).append(collect_s())
        hold("loop_held_s", lambda: full_answer(service, edge))
        hold("health_loop_held_s", encoded(service.health))
        hold("homenets_loop_held_s", encoded(service.list_homenets))
        started = time.perf_counter()
        pages, size = full_answer(service, edge)
        samples.setdefault("full_s", []).append(time.perf_counter() - started)
        version = service.store.current_version()
        service.put_policy("hn1", policy(100000 + 1000 * (run + 1)))
        started = time.perf_counter()
        service.edge_shaping(edge, str(version))
        samples.setdefault("since_one_change_s", []).append(time.perf_counter() - started)
    gc.unfreeze()  # the next size starts as the controller would
    result: dict[str, Any] = {"homenets": homenets, "pages": pages, "full_answer_mb": round(size / 1e6, 2),
                              "frozen_objects": frozen,
                              "health_mb": round(len(json.dumps(service.health())) / 1e6, 2)}
    result.update({key: round(statistics.median(values), 4) for key, values in samples.items()})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--homenets", default="100,1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the core says every path is down: no switch runs here
    results = []
    for n in (int(n) for n in args.homenets.split(",")):
        results.append(measure(n, args.runs))
        print(" ".join(f"{k}={v}" for k, v in results[-1].items()), flush=True)
    print(json.dumps({"runs": args.runs, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
