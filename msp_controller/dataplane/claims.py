"""Whether a neighbour may take an address by ARP or neighbour discovery, in bounded memory.

Anyone on a LAN port (or on an edge's Internet link) can claim any address. The rule (see
docs/design.md, "Addressing and neighbours"):

- an address of the box itself (the gateway's, the edge's) is never learned: neighbors.py
  refuses it, and `ClaimGuard.own_address` says whether to log it now;
- bad MACs (broadcast, multicast, all zeros) are refused by neighbors.py too;
- an address without an entry goes to its first claimant, but a switch takes at most
  NEW_PER_S new addresses a second (a burst of NEW_BURST): each is a flow added (and, with
  a full table, one deleted) at the box, and a host inventing addresses must not keep the
  box's OpenFlow thread, which also runs its BFD, busy;
- an address with an entry moves to another (MAC, port) only once its holder has been silent
  for MOVE_HOLD_S and did not answer when the controller asked it (ANSWER_WAIT_S). A live
  holder keeps its address however many claims arrive, and an address moves at most once
  per MOVE_HOLD_S: a claim storm cannot flip traffic between hosts.

Refusals are logged at most once per address per LOG_INTERVAL_S. All state is bounded,
and ages: a record untouched for RECORD_TTL_S is forgotten (`expire`).
"""
from __future__ import annotations

from dataclasses import dataclass

from msp_controller.dataplane.ofmsg import Flow, Output, SetField

# How long an address's holder must have been silent before another may take it. Long
# enough that a live host speaks up in time (Linux re-confirms a neighbour it uses every
# 15-45 s, and answers the controller's question at once), short enough that a host that
# really left, or a replaced upstream router, is taken over within half a minute.
MOVE_HOLD_S = 30.0
# A live host answers an ARP request or a neighbour solicitation within milliseconds; a
# second covers a busy controller or box.
ANSWER_WAIT_S = 1.0
LOG_INTERVAL_S = 10.0  # at most one log line per claimed address in this long
# Records per switch: twice the neighbour table (core/msp.py MAX_NEIGHBORS), so that a
# record outlives its entry for a while; beyond it the least recently claimed is forgotten.
MAX_RECORDS = 2048
# A record untouched this long is forgotten: by then the holder's entry has aged out of the
# switch (HOST_IDLE_TIMEOUT_S, core/msp.py), and a forgotten record only gives the holder
# the benefit of the doubt again.
RECORD_TTL_S = 600.0
# New addresses a switch may learn: a LAN of a few hundred hosts booting at once is learned
# within seconds (hosts retry ARP and ND every second); a storm of made-up hosts costs the
# box at most this many flow changes a second.
NEW_PER_S = 20.0
NEW_BURST = 100.0

Binding = tuple[str, int]  # (MAC, port) an address is delivered to


def binding_of(flow: Flow) -> Binding | None:
    """Where a learned neighbour flow sends its address's packets."""
    mac = next((a.value for a in flow.actions if isinstance(a, SetField) and a.name == "eth_dst"), None)
    port = next((a.port for a in flow.actions if isinstance(a, Output)), None)
    if not isinstance(mac, str) or not isinstance(port, int):
        return None
    return mac.lower(), port


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    ask: bool = False  # solicit the holder now: a live one answers, and so keeps its address
    note: str | None = None  # a line to log (None: nothing to say, or said recently)


ACCEPTED = Verdict(True)


@dataclass(slots=True)
class _Record:
    confirmed: float  # when the holder took the address or last claimed it
    asked: float | None = None  # when the controller first asked the holder since then
    touched: float = 0.0  # when a claim of the address last came (records are kept in this order)


class ClaimGuard:
    """The claims of one switch's neighbours (an MSPMB's LAN, an edge's Internet link)."""

    def __init__(self, hold_s: float = MOVE_HOLD_S, answer_wait_s: float = ANSWER_WAIT_S,
                 log_interval_s: float = LOG_INTERVAL_S, capacity: int = MAX_RECORDS,
                 ttl_s: float = RECORD_TTL_S) -> None:
        self.hold_s = hold_s
        self.ttl_s = ttl_s
        self.answer_wait_s = answer_wait_s
        self.log_interval_s = log_interval_s
        self.capacity = capacity
        self._records: dict[str, _Record] = {}  # least recently claimed first
        self._logged: dict[str, float] = {}  # address -> when last logged; oldest first
        self.suppressed = 0  # lines not logged because too many addresses were being logged
        self._new_tokens = NEW_BURST  # new addresses that may be learned now (refilled at NEW_PER_S)
        self._new_at: float | None = None
        self.refused_new = 0  # new addresses refused for want of tokens, since start

    @property
    def tracked(self) -> int:
        """Addresses remembered (records and log times): never more than 2 x capacity."""
        return len(self._records) + len(self._logged)

    def judge(self, ip: str, mac: str, port: int, holder: Binding | None, now: float) -> Verdict:
        """A valid claim of a learnable address; holder: where the address goes now, if anywhere."""
        if holder is None and not self._may_learn_new(now):
            self.refused_new += 1
            return Verdict(False, note=self._note("", now, f"learning at most {NEW_PER_S:g} new addresses a "
                                                           f"second: ignored {mac} on port {port} claiming {ip}"))
        if holder is None or holder == (mac.lower(), port):
            self._remember(ip, _Record(now), now)  # first claim, or the holder confirming
            return ACCEPTED
        record = self._records.get(ip)
        if record is None:  # forgotten (capacity, age): the holder has the benefit of the doubt
            record = _Record(now)
        self._remember(ip, record, now)
        silent = now - record.confirmed
        if record.asked is not None and now - record.asked > self.hold_s:
            record.asked = None  # an old question: the holder may be back, ask it again
        if silent >= self.hold_s and record.asked is not None and now - record.asked >= self.answer_wait_s:
            self._remember(ip, _Record(now), now)
            return Verdict(True, note=f"{ip} moves from {holder[0]} on port {holder[1]} to {mac} on port "
                                      f"{port}: its holder was silent for {silent:.0f} s and did not answer")
        return Verdict(False, ask=True, note=self._note(
            ip, now, f"ignored {mac} on port {port} claiming {ip}: {holder[0]} on port {holder[1]} holds it "
                     f"(last heard {silent:.1f} s ago; an address moves only after its holder has been silent "
                     f"for {self.hold_s:.0f} s and does not answer)"))

    def _may_learn_new(self, now: float) -> bool:
        elapsed = 0.0 if self._new_at is None else max(0.0, now - self._new_at)
        self._new_at = now
        self._new_tokens = min(NEW_BURST, self._new_tokens + elapsed * NEW_PER_S)
        if self._new_tokens < 1.0:
            return False
        self._new_tokens -= 1.0
        return True

    def asked(self, ip: str, now: float) -> None:
        """The controller has just asked the holder of `ip` (the answer wait starts now)."""
        record = self._records.get(ip)
        if record is not None and record.asked is None:
            record.asked = now

    def own_address(self, ip: str, mac: str, port: int, now: float) -> str | None:
        """A neighbour claims the box's own address (always refused): a line to log, if due."""
        return self._note(ip, now, f"ignored {mac} on port {port} claiming {ip}, an address of this box")

    def expire(self, now: float) -> None:
        """Forget records untouched for ttl_s and log times older than log_interval_s."""
        records, logged = self._records, self._logged
        while records and now - next(iter(records.values())).touched >= self.ttl_s:
            del records[next(iter(records))]
        while logged and now - next(iter(logged.values())) >= self.log_interval_s:
            del logged[next(iter(logged))]

    def _remember(self, ip: str, record: _Record, now: float) -> None:
        record.touched = now
        self._records.pop(ip, None)
        self._records[ip] = record
        while len(self._records) > self.capacity:
            del self._records[next(iter(self._records))]

    def _note(self, ip: str, now: float, text: str) -> str | None:
        last = self._logged.get(ip)
        if last is not None and now - last < self.log_interval_s:
            return None
        logged = self._logged
        logged.pop(ip, None)
        while logged and now - next(iter(logged.values())) >= self.log_interval_s:
            del logged[next(iter(logged))]  # oldest first: only expired ones go
        if len(logged) >= self.capacity:
            self.suppressed += 1  # every remembered line is recent: say nothing rather than forget one
            return None
        logged[ip] = now
        if self.suppressed:
            text, self.suppressed = f"{text} ({self.suppressed} similar lines suppressed)", 0
        return text
