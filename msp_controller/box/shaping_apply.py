"""The box's upstream shaping as the controller's OVSDB manager wrote it (br-home's
external_ids msp-shaping, JSON {uplink port: [tc arguments, ...]}): checked, then applied.

The commands come from dataplane/shaping.py at the MSP, over a TLS channel the box
authenticated, but the agent still runs only what it expects: qdisc, class and filter
commands on its own uplink ports, one plain word per argument. Anything else is refused
as a whole with a message naming it, and the shaping in force stays.
"""
from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Collection

Command = list[str]
Runner = Callable[[list[str], "str | None"], "subprocess.CompletedProcess[str]"]

TC_OBJECTS = ("qdisc", "class", "filter")
WORD = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
MAX_COMMANDS = 256  # per port: a policy has at most 13 queues (dataplane/shaping.py)


def parse_shaping(text: str, devices: Collection[str]) -> dict[str, list[Command]]:
    """Commands by device, for every one of devices ([] for a device the text does not
    name: no shaping there); ValueError naming the problem."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"msp-shaping is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("msp-shaping: expected an object {port: [commands]}")
    found: dict[str, list[Command]] = {device: [] for device in devices}
    for device, commands in data.items():
        if device not in found:
            raise ValueError(f"msp-shaping: {device!r} is not one of this box's uplink ports {sorted(devices)}")
        if not isinstance(commands, list) or len(commands) > MAX_COMMANDS:
            raise ValueError(f"msp-shaping[{device}]: expected a list of at most {MAX_COMMANDS} commands")
        for n, command in enumerate(commands):
            check_command(command, device, f"msp-shaping[{device}][{n}]")
        found[device] = commands
    return found


def check_command(command: object, device: str, where: str) -> None:
    """ValueError naming the problem unless command is a tc qdisc/class/filter command on
    device with plain-word arguments."""
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise ValueError(f"{where}: expected a list of strings")
    bad = next((a for a in command if not WORD.match(a)), None)
    if bad is not None:
        raise ValueError(f"{where}: argument {bad!r} is not a plain word")
    if command[0] not in TC_OBJECTS:
        raise ValueError(f"{where}: {command[0]!r} is not one of {TC_OBJECTS}")
    if "dev" not in command or command.index("dev") + 1 >= len(command) or \
            command[command.index("dev") + 1] != device:
        raise ValueError(f"{where}: does not name dev {device}")


def _run(argv: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=30)


def apply_shaping(shaping: dict[str, list[Command]], run: Runner = _run) -> list[str]:
    """Replace each device's shaping (clear, then the commands in one tc batch); returns the
    errors, one per device that failed (that device is left unshaped rather than half-shaped)."""
    errors = []
    for device, commands in sorted(shaping.items()):
        run(["tc", "qdisc", "del", "dev", device, "root"], None)  # an error: there was none
        if not commands:
            continue
        done = run(["tc", "-batch", "-"], "".join(" ".join(c) + "\n" for c in commands))
        if done.returncode != 0:
            errors.append(f"{device}: tc: {done.stderr.strip()}")
            run(["tc", "qdisc", "del", "dev", device, "root"], None)
    return errors
