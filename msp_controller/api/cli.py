"""Command-line tools: check a config file, print a box's provisioning commands."""
from __future__ import annotations

import argparse
import sys

from msp_controller.dataplane.provision import as_shell, edge_commands, mspmb_commands
from msp_controller.model.config import load_config
from msp_controller.model.errors import FieldError


def check_config_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msp-check-config", description="Validate an MSP config file.")
    parser.add_argument("config", help="TOML config file")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except FieldError as err:
        print(f"msp-check-config: {err}", file=sys.stderr)
        return 1
    for edge in config.edges:
        print(f"edge {edge.name}: datapath {edge.dpid:016x}, tunnel addresses "
              + ", ".join(str(a.ip) for a in edge.tunnel_addresses))
    for homenet in config.homenets:
        print(f"homenet {homenet.name}: datapath {homenet.dpid:016x}, "
              f"prefixes {', '.join(map(str, homenet.prefixes))}, "
              f"uplinks {', '.join(u.name for u in homenet.uplinks)}, edges {'>'.join(homenet.edges)}, "
              f"egress {'>'.join(homenet.egress_order)}, ingress {'>'.join(homenet.ingress_order)}")
    print(f"{args.config}: OK")
    return 0


def provision_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msp-provision",
                                     description="Print the ovs-vsctl commands that set up one box.")
    parser.add_argument("config")
    parser.add_argument("box", help="a homenet name (its MSPMB) or an edge name")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.box in {h.name for h in config.homenets}:
            commands = mspmb_commands(config, config.homenet(args.box))
        elif args.box in {e.name for e in config.edges}:
            commands = edge_commands(config, config.edge(args.box))
        else:
            raise FieldError("box", f"no homenet or edge named {args.box!r}")
    except FieldError as err:
        print(f"msp-provision: {err}", file=sys.stderr)
        return 1
    print(as_shell(commands, "ovs-vsctl"))
    return 0


if __name__ == "__main__":
    sys.exit(check_config_main())
