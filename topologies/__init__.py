"""Emulated networks for the MSP: the reference topology and its building blocks.

  reference  the reference network (Mininet): MspTopo, ReferenceNetwork, `python -m topologies.reference`
  ovsbox     OvsBox, a Mininet host running its own ovsdb-server + ovs-vswitchd
  faults     ISP failure injection and per-direction traffic counters (nftables)
"""
