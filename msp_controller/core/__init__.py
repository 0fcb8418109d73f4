"""The controller's core: events in, Effects out, one homenet at a time (see msp.py)."""
from msp_controller.core.effects import BgpChanges, Effects
from msp_controller.core.loading import load_core
from msp_controller.core.msp import Messages, MspCore, PathChange, PortCounters
from msp_controller.core.registry import Kind, Role
from msp_controller.core.switches import PortState

__all__ = ["BgpChanges", "Effects", "Kind", "Messages", "MspCore", "PathChange", "PortCounters", "PortState",
           "Role", "load_core"]
