"""The controller's core: events in, Effects out, one homenet at a time (see msp.py)."""
from .effects import BgpChanges, Effects
from .loading import load_core
from .msp import Messages, MspCore, PathChange, PortCounters
from .registry import Kind, Role
from .switches import PortState

__all__ = ["BgpChanges", "Effects", "Kind", "Messages", "MspCore", "PathChange", "PortCounters", "PortState",
           "Role", "load_core"]
