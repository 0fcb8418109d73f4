"""OpenFlow as values: messages, pipelines, per-role compilers, reconciliation, packets the controller speaks."""
