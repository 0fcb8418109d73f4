"""Emulated networks for the MSP: the reference topology and its building blocks.

  reference  the reference network as a Mininet topology (MspTopo); `python -m topologies.reference`
  plan       its addressing plan (Plan): names, addresses, links, BIRD configs, from the MSP config
  nodes      its node classes: RoutedHost, IspRouter, MspmbBox, EdgeBox, BgpRouter
  network    ReferenceNetwork (start, stop) and the command line
  preflight  the checks before a start (leftovers, address clashes); removing leftovers
  ovsbox     OvsBox, a Mininet host running its own ovsdb-server + ovs-vswitchd
  faults     ISP failure injection and per-direction traffic counters (nftables)
"""
