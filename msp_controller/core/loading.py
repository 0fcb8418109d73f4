"""A core from the config and the store: stored homenets and policies win over defaults."""
from __future__ import annotations

import ipaddress
import logging

from msp_controller.core.msp import MspCore
from msp_controller.model.config import Homenet, MspConfig, parse_homenet, with_uplink_address
from msp_controller.model.errors import FieldError
from msp_controller.model.policy import Policy, parse_policy
from msp_controller.store import StoredState

LOG = logging.getLogger("msp.core")


def load_core(config: MspConfig, stored: StoredState, now: float = 0.0) -> MspCore:
    """The config's homenets (less those deleted at run time, replaced by their stored
    versions), then the homenets created at run time; every stored policy. A stored record
    that no longer validates is logged and skipped, never fatal: the rest must serve. Stored
    DHCP bindings hold their addresses for a lease time from `now`."""
    homenets: dict[str, Homenet] = {h.name: h for h in config.homenets if h.name not in stored.deleted}
    for name, spec in stored.homenets.items():
        try:
            homenets[name] = parse_homenet(spec, config, where=f"stored homenet {name}")
        except FieldError as err:
            LOG.error("ignoring stored homenet %s: %s", name, err)
    for (name, uplink_name), address in stored.uplink_addresses.items():
        if name in homenets:
            try:
                homenets[name] = with_uplink_address(homenets[name], uplink_name, ipaddress.IPv4Address(address))
            except (KeyError, ValueError) as err:
                LOG.error("ignoring the stored address of %s uplink %s: %s", name, uplink_name, err)
    policies: dict[str, Policy] = {}
    for name, body in stored.policies.items():
        if name in homenets:
            try:
                policies[name] = parse_policy(body, homenets[name])
            except FieldError as err:
                LOG.error("ignoring the stored policy of %s: %s", name, err)
    core = MspCore(config, policies, homenets=[])
    for homenet in homenets.values():
        try:
            core.add_homenet(homenet, 0.0, policies.get(homenet.name))
        except FieldError as err:
            LOG.error("not serving homenet %s: %s", homenet.name, err)
    core.autoconf.restore(stored.leases, now)
    return core
