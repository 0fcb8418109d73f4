"""One homenet's runtime state: its spec, policy, paths, class choices and announcements."""
from __future__ import annotations

from dataclasses import dataclass, field

from msp_controller.dataplane.probe_packet import ProbeTemplate
from msp_controller.decide.announce import HomenetAnnouncements
from msp_controller.decide.choice import EGRESS, INGRESS, Direction, DirectionChoice
from msp_controller.decide.paths import PathPlan, TunnelPath
from msp_controller.decide.probes import SlaThresholds
from msp_controller.model.config import Homenet
from msp_controller.model.policy import SLA, Policy

Choices = dict[str, tuple[DirectionChoice, ...]]  # direction -> the classes, default first
SlaKey = tuple[str, str, TunnelPath]  # (class, direction, path): what an SLA verdict is about


@dataclass
class HomenetState:
    spec: Homenet
    policy: Policy
    plan: PathPlan
    announcements: HomenetAnnouncements
    choices: Choices = field(default_factory=dict)
    path_ids: dict[TunnelPath, int] = field(default_factory=dict)
    probe_templates: dict[TunnelPath, ProbeTemplate] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def sla_rules(self) -> list[tuple[SlaKey, SlaThresholds]]:
        """Each (class, direction, path) an sla class is judged on, with its thresholds."""
        rules = []
        for class_name, direction, rule in self.policy.direction_policies():
            if rule.mode != SLA:
                continue
            thresholds = SlaThresholds(rule.max_rtt_ms, rule.max_loss_pct, rule.max_jitter_ms,
                                       rule.hysteresis_pct, rule.recover_s)
            rules += [((class_name, direction, path), thresholds) for path in self.plan.paths]
        return rules


DIRECTIONS: tuple[Direction, ...] = (EGRESS, INGRESS)
