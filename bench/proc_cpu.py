"""CPU time of processes, their threads and the whole machine, read from /proc.

    before = take(pids)              # {"mspmb ovs-vswitchd": 1234, ...}
    ...                              # the measured interval
    shares = usage(before, take(pids), seconds)

Shares are in percent of one core (a busy thread is 100; the 2-core machine is 200).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MACHINE = "machine busy"
SOFTIRQ = "machine softirq"
STEAL = "machine steal"  # time the hypervisor gave this VM's CPUs to someone else
USER = " user"  # suffix of a thread's label that counts its user time alone


def stat_times(text: str) -> tuple[str, int, int]:
    """(comm, utime, stime in clock ticks) from the text of /proc/<pid>[/task/<tid>]/stat."""
    # "pid (comm) state ppid ...": comm may hold spaces or parentheses; fields 14 and 15
    # (utime, stime) are the 12th and 13th after the closing parenthesis.
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, int(fields[11]), int(fields[12])


def stat_ticks(text: str) -> tuple[str, int]:
    """(comm, utime + stime in clock ticks) from the text of /proc/<pid>[/task/<tid>]/stat."""
    comm, user, system = stat_times(text)
    return comm, user + system


def machine_ticks(text: str) -> dict[str, int]:
    """Busy, softirq and steal ticks of all CPUs together, from the text of /proc/stat (busy
    counts steal: those ticks were not ours to use)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            # user nice system idle iowait irq softirq steal ...
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]
            return {MACHINE: sum(values[:8]) - idle, SOFTIRQ: values[6], STEAL: values[7]}
    raise ValueError("no aggregate cpu line in /proc/stat")


@dataclass(frozen=True)
class Snapshot:
    ticks: dict[str, int]  # label -> ticks (processes, "label/thread" for threads, machine)
    missing: tuple[str, ...] = field(default=())  # labels whose process was gone


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def take(pids: Mapping[str, int], threads: Mapping[str, int] | None = None) -> Snapshot:
    """Ticks of each labelled process; for those in `threads`, also of each of their threads,
    summed by thread name (OVS names its threads: ovs-vswitchd, handlerN, revalidatorN...),
    and of their user time alone ("<label>/<thread> user": the rest is the kernel's work,
    system calls and the softirq processing they trigger)."""
    ticks: dict[str, int] = {}
    missing = []
    for label, pid in pids.items():
        text = _read(f"/proc/{pid}/stat")
        if text is None:
            missing.append(label)
            continue
        ticks[label] = stat_ticks(text)[1]
    for label, pid in (threads or {}).items():
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            missing.append(label)
            continue
        for tid in tids:
            text = _read(f"/proc/{pid}/task/{tid}/stat")
            if text is not None:
                name, user, system = stat_times(text)
                key = f"{label}/{name.rstrip('0123456789')}"
                ticks[key] = ticks.get(key, 0) + user + system
                ticks[key + USER] = ticks.get(key + USER, 0) + user
    text = _read("/proc/stat")
    if text is not None:
        ticks.update(machine_ticks(text))
    return Snapshot(ticks, tuple(missing))


def kernel_threads(prefix: str) -> dict[str, int]:
    """Kernel threads whose name starts with prefix (e.g. ksoftirqd), labelled by name."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            comm = (_read(f"/proc/{entry}/comm") or "").strip()
            if comm.startswith(prefix):
                found[comm] = int(entry)
    return found


def every_process() -> dict[int, tuple[str, int]]:
    """pid -> (comm, ticks) of every process on the machine (its threads included)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            text = _read(f"/proc/{entry}/stat")
            if text is not None:
                found[int(entry)] = stat_ticks(text)
    return found


def others(before: Mapping[int, tuple[str, int]], after: Mapping[int, tuple[str, int]], seconds: float,
           exclude: set[int], top: int = 3) -> tuple[float, list[tuple[str, float]]]:
    """CPU of the processes not in `exclude` (percent of one core): their total and the
    busiest `top`, as ("comm[pid]", percent). Processes that started meanwhile count whole."""
    if seconds <= 0:
        raise ValueError(f"interval must be positive, got {seconds}")
    scale = 100.0 / (CLOCK_TICKS * seconds)
    shares = []
    for pid, (comm, ticks) in after.items():
        if pid in exclude:
            continue
        used = ticks - before[pid][1] if pid in before and before[pid][0] == comm else ticks
        if used > 0:
            shares.append((f"{comm}[{pid}]", round(used * scale, 1)))
    shares.sort(key=lambda item: item[1], reverse=True)
    return round(sum(share for _, share in shares), 1), shares[:top]


def usage(before: Snapshot, after: Snapshot, seconds: float) -> dict[str, float]:
    """Percent of one core each label used between two snapshots (labels in both only)."""
    if seconds <= 0:
        raise ValueError(f"interval must be positive, got {seconds}")
    scale = 100.0 / (CLOCK_TICKS * seconds)
    return {label: round((after.ticks[label] - value) * scale, 1)
            for label, value in before.ticks.items() if label in after.ticks}
