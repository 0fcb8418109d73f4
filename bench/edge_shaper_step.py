"""One exchange of an edge's shaper, timed, for bench/edge_shaper_restart.py: run in the port's
namespace with the kernel's tc; the controller's answers come from a file (its pages by
`after`). Prints one JSON object: homenets changed, seconds, tc commands and batches run.

    python -m bench.edge_shaper_step <port> <journal or -> <answers.json> [--fake-tc]
"""
from __future__ import annotations

import json
import sys
import time

from msp_controller.box.edge_journal import Journal
from msp_controller.box.edge_shaper import EdgeShaper, tc_batch
from msp_controller.box.shaping_apply import Command


def main(argv: list[str]) -> int:
    port, journal_path, answers = argv[:3]
    fake = "--fake-tc" in argv  # the shaper's own work alone: no kernel (the port's state is assumed)
    with open(answers, encoding="utf-8") as file:
        pages = json.load(file)
    ran = {"commands": 0, "batches": 0}

    def tc(commands: list[Command], force: bool) -> tuple[bool, str]:
        if commands:
            ran["commands"] += len(commands)
            ran["batches"] += 1
        return (True, "") if fake else tc_batch(commands, force)

    started = time.monotonic()
    shaper = EdgeShaper(lambda since, after: pages[after or ""], port, tc,
                        journal=Journal(None if journal_path == "-" else journal_path),
                        **({"incarnation": lambda: "bench/1", "root_in_place": lambda: True} if fake else {}))
    changed = shaper.step()
    print(json.dumps({"changed": changed, "seconds": round(time.monotonic() - started, 4), **ran}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
