"""Zero configuration: a blank MSPMB's agent (agent.py), and the controller's OVSDB side
that gives each box its bridges, tunnels and BFD (desired.py, ovsdb_ops.py, manager.py)."""
