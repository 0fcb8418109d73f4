"""Desired flows and groups for each switch role, compiled from config, ports and path plans."""
