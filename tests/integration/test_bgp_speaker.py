"""BgpAnnouncer against two real BIRD 2 routers, each in its own network namespace.

    namespace msp-bgpt-ctl (the controller, AS 65000, connects out, does not listen; no
    default route, so a session can never follow one off this machine)
      msp-bgpt-a0 198.18.250.1/30 ---- 198.18.250.2/30  namespace msp-bgpt-a: BIRD AS 64501
                                                        edge 198.18.251.1/24, 2001:db8:fb1::1/64
      msp-bgpt-b0 198.18.250.5/30 ---- 198.18.250.6/30  namespace msp-bgpt-b: BIRD AS 64502
                                                        edge 198.18.252.1/24, 2001:db8:fb2::1/64

The announcer runs in a child process (this file, run as a script: a small driver that reads
JSON commands on stdin), so eventlet's monkey-patching never touches pytest. The tests share
the routers and the driver (module fixtures) and run in file order. Every wait polls birdc
with a deadline; the fixtures remove what they made (BIRD by its pidfile, the namespaces and
veths by name) even when a test fails. Run with -s to see the measured timings.
"""
from __future__ import annotations

import fcntl
import json
import os
import pathlib
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("bird") is None or shutil.which("birdc") is None,
                       reason="needs BIRD 2 (bird, birdc)"),
]

CONTROLLER_AS = 65000
V4_PREFIX = "198.51.100.0/24"
V6_PREFIX = "2001:db8:100::/48"
SESSION_DEADLINE_S = 30.0
LOCK_DEADLINE_S = 600.0
ROUTE_DEADLINE_S = 10.0
REPEATS = 5


@dataclass(frozen=True)
class Site:
    """One upstream router: its namespace, veths, addresses and BIRD."""

    name: str
    asn: int
    root_address: str
    address: str
    edge_v4: str
    edge_v6: str

    @property
    def namespace(self) -> str:
        return f"msp-bgpt-{self.name}"

    @property
    def root_veth(self) -> str:
        return f"msp-bgpt-{self.name}0"

    @property
    def next_hop_v4(self) -> str:
        return f"{self.edge_v4}.2"

    @property
    def next_hop_v6(self) -> str:
        return f"{self.edge_v6}::2"


SITE_A = Site("a", 64501, "198.18.250.1", "198.18.250.2", "198.18.251", "2001:db8:fb1")
SITE_B = Site("b", 64502, "198.18.250.5", "198.18.250.6", "198.18.252", "2001:db8:fb2")
SITES = (SITE_A, SITE_B)

BIRD_CONFIG = """\
router id {site.address};
log "{log}" all;
protocol device {{ }}
# Connected routes: BIRD resolves the (recursive, multihop) BGP next hops through them.
protocol direct {{ ipv4; ipv6; }}
protocol bgp controller {{
    local {site.address} as {site.asn};
    neighbor {site.root_address} as {controller_as};
    passive on;     # the controller connects out; it does not listen
    multihop;       # next hops sit on the edge subnet, not on the session's link
    ipv4 {{ import all; export none; }};
    # BIRD warns when it has no IPv6 next hop of its own for this IPv4 session; it exports
    # nothing, so any address of its own will do.
    ipv6 {{ import all; export none; next hop address {site.edge_v6}::1; }};
}}
"""


# --- shell helpers ---------------------------------------------------------------------------

def sh(*argv: str, check: bool = True) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def in_namespace(site: Site, *argv: str) -> str:
    return sh("ip", "netns", "exec", site.namespace, *argv)


def wait_until(condition: Callable[[], bool], deadline_s: float, what: str) -> float:
    """Seconds until `condition()` held; fails the test at the deadline."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > deadline_s:
            pytest.fail(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


SPEAKER_NS = "msp-bgpt-ctl"  # where the announcer runs: only its links to the routers


def remove_network(site: Site) -> None:
    sh("ip", "-n", SPEAKER_NS, "link", "del", site.root_veth, check=False)
    sh("ip", "netns", "del", site.namespace, check=False)


def build_speaker_namespace() -> None:
    sh("ip", "netns", "del", SPEAKER_NS, check=False)  # leftovers: we hold the names' lock
    sh("ip", "netns", "add", SPEAKER_NS)
    sh("ip", "-n", SPEAKER_NS, "link", "set", "lo", "up")


def build_network(site: Site) -> None:
    inner = f"{site.root_veth[:-1]}1"
    sh("ip", "netns", "add", site.namespace)
    sh("ip", "-n", SPEAKER_NS, "link", "add", site.root_veth, "type", "veth", "peer", "name", inner,
       "netns", site.namespace)
    sh("ip", "-n", SPEAKER_NS, "addr", "add", f"{site.root_address}/30", "dev", site.root_veth)
    sh("ip", "-n", SPEAKER_NS, "link", "set", site.root_veth, "up")
    in_namespace(site, "ip", "link", "set", "lo", "up")
    in_namespace(site, "ip", "addr", "add", f"{site.address}/30", "dev", inner)
    in_namespace(site, "ip", "link", "set", inner, "up")
    # The edge subnet, where the announced next hops live: a veth pair inside the namespace.
    in_namespace(site, "ip", "link", "add", "edge0", "type", "veth", "peer", "name", "edge1")
    in_namespace(site, "ip", "addr", "add", f"{site.edge_v4}.1/24", "dev", "edge0")
    in_namespace(site, "ip", "addr", "add", f"{site.edge_v6}::1/64", "dev", "edge0", "nodad")
    in_namespace(site, "ip", "link", "set", "edge0", "up")
    in_namespace(site, "ip", "link", "set", "edge1", "up")


# --- BIRD ------------------------------------------------------------------------------------

@dataclass
class Bird:
    site: Site
    directory: pathlib.Path

    @property
    def socket(self) -> str:
        return str(self.directory / "bird.ctl")

    @property
    def pidfile(self) -> pathlib.Path:
        return self.directory / "bird.pid"

    def start(self) -> None:
        config = self.directory / "bird.conf"
        config.write_text(BIRD_CONFIG.format(site=self.site, log=self.directory / "bird.log",
                                             controller_as=CONTROLLER_AS))
        in_namespace(self.site, "bird", "-c", str(config), "-s", self.socket,
                     "-P", str(self.pidfile))
        wait_until(lambda: self.birdc_ok("show status"), 10, f"BIRD {self.site.name} up")

    def stop(self) -> None:
        if not self.pidfile.exists():
            return
        pid = int(self.pidfile.read_text().strip())
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            os.kill(pid, 9)

    def birdc(self, command: str) -> str:
        return sh("birdc", "-s", self.socket, *command.split())

    def birdc_ok(self, command: str) -> bool:
        try:
            self.birdc(command)
            return True
        except RuntimeError:
            return False

    def received(self, counter: str) -> int:
        """BIRD's "received" column of `counter` ("Import updates:"), summed over channels."""
        text = self.birdc("show protocols all controller")
        return sum(int(line.split(":", 1)[1].split()[0])
                   for line in text.splitlines() if counter in line)

    def session_established(self) -> bool:
        return "Established" in self.birdc("show protocols controller")

    def routes(self) -> dict[str, dict[str, str]]:
        """prefix -> {"next_hop", "as_path", "via"} of the routes learned from the controller."""
        return parse_routes(self.birdc("show route all protocol controller"))

    def has(self, prefix: str, next_hop: str, as_path: str) -> bool:
        route = self.routes().get(prefix)
        return (route is not None and route["next_hop"] == next_hop
                and route["as_path"] == as_path and route["via"] == next_hop)

    def lacks(self, *prefixes: str) -> bool:
        routes = self.routes()
        return not any(prefix in routes for prefix in prefixes)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def parse_routes(text: str) -> dict[str, dict[str, str]]:
    routes: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if not line[0].isspace() and "/" in words[0]:
            current = routes.setdefault(words[0], {"next_hop": "", "as_path": "", "via": ""})
        elif current is not None and words[0] == "via":
            current["via"] = words[1]
        elif current is not None and words[0] == "BGP.next_hop:":
            current["next_hop"] = words[1]
        elif current is not None and words[0] == "BGP.as_path:":
            current["as_path"] = " ".join(words[1:])
    return routes


# --- the driver (child process) and its handle -------------------------------------------------

@dataclass
class Driver:
    """The announcer in a child process; commands as JSON lines, replies and events back."""

    process: subprocess.Popen
    replies: queue.Queue = field(default_factory=queue.Queue)
    events: list[tuple[float, dict]] = field(default_factory=list)

    def read_forever(self) -> None:
        for line in self.process.stdout:
            message = json.loads(line)
            if "event" in message:
                self.events.append((time.monotonic(), message))
            else:
                self.replies.put(message)

    def request(self, op: str, **arguments) -> object:
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        reply = self.replies.get(timeout=30)
        if "error" in reply:
            raise AssertionError(f"driver: {reply['error']}")
        return reply.get("result")

    def event_time(self, **match) -> float | None:
        if self.process.poll() is not None and not self.events:
            pytest.fail(f"the driver exited with {self.process.returncode}; see its log")
        for at, event in self.events:
            if all(event.get(key) == value for key, value in match.items()):
                return at
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()  # EOF: the driver shuts the announcer down
                self.process.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=5)


def route(site: Site, family: int, prepend: int = 0) -> dict:
    next_hop = site.next_hop_v4 if family == 4 else site.next_hop_v6
    return {"next_hop": next_hop, "prepend": prepend}


def both_prefixes(site: Site, prepend: int = 0) -> dict:
    return {V4_PREFIX: route(site, 4, prepend), V6_PREFIX: route(site, 6, prepend)}


def shows_both(bird: Bird, prepend: int) -> bool:
    as_path = " ".join([str(CONTROLLER_AS)] * (prepend + 1))
    return (bird.has(V4_PREFIX, bird.site.next_hop_v4, as_path)
            and bird.has(V6_PREFIX, bird.site.next_hop_v6, as_path))


TIMINGS: dict[str, list[float]] = {}


def timed_apply(driver: Driver, desired: dict, condition: Callable[[], bool], what: str) -> float:
    """Seconds from sending apply() to `condition` holding (resolution: one birdc call)."""
    start = time.monotonic()
    driver.request("apply", desired=desired)
    wait_until(condition, ROUTE_DEADLINE_S, what)
    elapsed = time.monotonic() - start
    TIMINGS.setdefault(what, []).append(elapsed)
    return elapsed


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def names_of_our_own() -> Iterator[None]:
    """Hold the machine-wide lock on this test's namespace and veth names.

    Two runs of this file at once (two checkouts, CI and a developer) would otherwise tear
    down each other's namespaces. The kernel drops the lock if the holder dies.
    """
    with open(pathlib.Path(tempfile.gettempdir()) / "msp-bgpt.lock", "w") as lock:
        wait_until(lambda: try_lock(lock.fileno()), LOCK_DEADLINE_S,
                   "another run of this test to finish")
        yield


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@pytest.fixture(scope="module")
def birds(names_of_our_own: None,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Bird]]:
    made: list[Bird] = []
    try:
        build_speaker_namespace()
        for site in SITES:
            remove_network(site)  # leftovers of an interrupted run: we hold the names' lock
            build_network(site)
            bird = Bird(site, tmp_path_factory.mktemp(f"bird-{site.name}"))
            made.append(bird)
            bird.start()
        yield {bird.site.name: bird for bird in made}
    finally:
        for bird in made:
            bird.stop()
        for site in SITES:
            remove_network(site)
        sh("ip", "netns", "del", SPEAKER_NS, check=False)


@pytest.fixture(scope="module")
def driver(birds: dict[str, Bird], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    config = {
        "asn": CONTROLLER_AS, "router_id": SITE_A.root_address,
        "neighbors": [{"address": s.address, "asn": s.asn} for s in SITES],
    }
    with open(tmp_path_factory.mktemp("driver") / "driver.log", "w") as log:
        process = subprocess.Popen(["ip", "netns", "exec", SPEAKER_NS, sys.executable, __file__, json.dumps(config)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                   text=True, bufsize=1)
        handle = Driver(process)
        threading.Thread(target=handle.read_forever, daemon=True).start()
        try:
            yield handle
        finally:
            handle.stop()


# --- tests -------------------------------------------------------------------------------------

def test_the_controller_listens_nowhere(driver: Driver) -> None:
    wait_until(lambda: driver.event_time(event="started") is not None, 30, "driver started")
    listening = sh("ss", "-N", SPEAKER_NS, "-Hltnp")
    assert f"pid={driver.process.pid}," not in listening


def test_sessions_establish(driver: Driver, birds: dict[str, Bird]) -> None:
    started = driver.event_time(event="started")
    for bird in birds.values():
        wait_until(bird.session_established, SESSION_DEADLINE_S, f"session {bird.site.name}")
        up_event = {"event": "session", "address": bird.site.address, "state": "up"}
        wait_until(lambda e=up_event: driver.event_time(**e) is not None, 5, "up event")
        up = driver.event_time(**up_event)
        TIMINGS.setdefault("session established (start() -> up)", []).append(up - started)
    assert driver.request("sessions") == {s.address: "established" for s in SITES}


def test_announces_per_neighbor_next_hop_and_prepend(driver: Driver,
                                                     birds: dict[str, Bird]) -> None:
    desired = {SITE_A.address: both_prefixes(SITE_A), SITE_B.address: both_prefixes(SITE_B, 2)}
    timed_apply(driver, desired, lambda: shows_both(birds["a"], 0) and shows_both(birds["b"], 2),
                "announce both prefixes at a and b")
    assert shows_both(birds["a"], prepend=0)  # AS path "65000"
    assert shows_both(birds["b"], prepend=2)  # AS path "65000 65000 65000"
    assert driver.request("announced") == desired


def test_withdraws_from_one_neighbor_only(driver: Driver, birds: dict[str, Bird]) -> None:
    desired = {SITE_B.address: both_prefixes(SITE_B, 2)}
    timed_apply(driver, desired, lambda: birds["a"].lacks(V4_PREFIX, V6_PREFIX),
                "withdraw from a")
    assert shows_both(birds["b"], prepend=2)


def test_reannounces(driver: Driver, birds: dict[str, Bird]) -> None:
    desired = {SITE_A.address: both_prefixes(SITE_A), SITE_B.address: both_prefixes(SITE_B, 2)}
    timed_apply(driver, desired, lambda: shows_both(birds["a"], 0), "re-announce at a")
    assert shows_both(birds["b"], prepend=2)


def test_repeated_withdraw_and_reannounce(driver: Driver, birds: dict[str, Bird]) -> None:
    both = {SITE_A.address: both_prefixes(SITE_A), SITE_B.address: both_prefixes(SITE_B, 2)}
    only_b = {SITE_B.address: both_prefixes(SITE_B, 2)}
    for _ in range(REPEATS - 1):
        timed_apply(driver, only_b, lambda: birds["a"].lacks(V4_PREFIX, V6_PREFIX),
                    "withdraw from a")
        timed_apply(driver, both, lambda: shows_both(birds["a"], 0), "re-announce at a")
    assert shows_both(birds["b"], prepend=2)


def test_changes_prepend_and_next_hop_in_place(driver: Driver, birds: dict[str, Bird]) -> None:
    # The failover case: b becomes primary (no prepend), a backup; then back.
    swapped = {SITE_A.address: both_prefixes(SITE_A, 2), SITE_B.address: both_prefixes(SITE_B)}
    timed_apply(driver, swapped, lambda: shows_both(birds["a"], 2) and shows_both(birds["b"], 0),
                "change prepend at a and b")
    back = {SITE_A.address: both_prefixes(SITE_A), SITE_B.address: both_prefixes(SITE_B, 2)}
    timed_apply(driver, back, lambda: shows_both(birds["a"], 0) and shows_both(birds["b"], 2),
                "change prepend at a and b")


def test_a_session_coming_up_gets_exactly_its_routes(driver: Driver,
                                                    birds: dict[str, Bird]) -> None:
    # Withdrawn from a, then a's session restarts: Ryu's initial dump to a must not bring the
    # prefixes back (they are still announced to b). The hook turns them into withdrawals.
    only_b = {SITE_B.address: both_prefixes(SITE_B, 2)}
    timed_apply(driver, only_b, lambda: birds["a"].lacks(V4_PREFIX, V6_PREFIX), "withdraw from a")
    birds["a"].birdc("restart controller")
    restarted = time.monotonic()
    wait_until(lambda: not birds["a"].session_established(), 5, "a's session restarting")
    wait_until(birds["a"].session_established, 60, "a's session back")
    TIMINGS.setdefault("session re-established after BIRD restarts it", []).append(
        time.monotonic() - restarted)
    # BIRD's counters restart with the session: the dump has arrived once both withdrawals have.
    wait_until(lambda: birds["a"].received("Import withdraws:") >= 2, ROUTE_DEADLINE_S,
               "the initial dump to a")
    assert birds["a"].received("Import updates:") == 0
    assert birds["a"].lacks(V4_PREFIX, V6_PREFIX)
    assert shows_both(birds["b"], prepend=2)
    both = {SITE_A.address: both_prefixes(SITE_A), SITE_B.address: both_prefixes(SITE_B, 2)}
    timed_apply(driver, both, lambda: shows_both(birds["a"], 0), "re-announce at a")


def test_apply_sends_only_what_changed(driver: Driver, birds: dict[str, Bird]) -> None:
    b_updates, b_withdraws = (birds["b"].received(c) for c in ("Import updates:",
                                                               "Import withdraws:"))
    same = {SITE_A.address: both_prefixes(SITE_A), SITE_B.address: both_prefixes(SITE_B, 2)}
    driver.request("apply", desired=same)  # no change: nothing may be sent
    a_changed = {SITE_A.address: both_prefixes(SITE_A, 1), SITE_B.address: both_prefixes(SITE_B, 2)}
    timed_apply(driver, a_changed, lambda: shows_both(birds["a"], 1), "change prepend at a")
    # Both applies have reached a; b, on its own session, must have heard nothing of them.
    assert birds["b"].received("Import updates:") == b_updates
    assert birds["b"].received("Import withdraws:") == b_withdraws
    timed_apply(driver, same, lambda: shows_both(birds["a"], 0), "change prepend at a")


def test_withdraw_everywhere_then_shutdown(driver: Driver, birds: dict[str, Bird]) -> None:
    timed_apply(driver, {}, lambda: all(b.lacks(V4_PREFIX, V6_PREFIX) for b in birds.values()),
                "withdraw everywhere")
    driver.request("apply", desired={SITE_B.address: both_prefixes(SITE_B, 2)})
    wait_until(lambda: shows_both(birds["b"], 2), ROUTE_DEADLINE_S, "announce at b again")
    driver.request("shutdown")
    assert driver.process.wait(timeout=15) == 0
    for bird in birds.values():
        wait_until(lambda b=bird: not b.session_established(), 10, "session down at shutdown")
    wait_until(lambda: birds["b"].lacks(V4_PREFIX, V6_PREFIX), 10, "routes gone at shutdown")


def test_report_timings(capsys: pytest.CaptureFixture) -> None:
    with capsys.disabled():
        print("\nBGP timings (seconds):")
        for what, values in TIMINGS.items():
            print(f"  {what}: median {statistics.median(values):.3f}, "
                  f"min {min(values):.3f}, max {max(values):.3f}, n={len(values)}")


# --- the driver's side (runs in the child process) ----------------------------------------------

def _green_lines(fd: int) -> Iterator[str]:
    """Lines from `fd` without blocking the other green threads (Ryu's BGP) while waiting."""
    import eventlet.hubs

    os.set_blocking(fd, False)
    buffer = b""
    while True:
        eventlet.hubs.trampoline(fd, read=True)
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode()


def _driver_main(config_json: str) -> int:
    from ryu.lib import hub

    hub.patch(thread=False)  # what ryu-manager does before loading apps
    import logging

    from msp_controller.bgp.speaker import BgpAnnouncer, Neighbor, Route

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def emit(message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    config = json.loads(config_json)
    announcer = BgpAnnouncer(
        config["asn"], config["router_id"],
        [Neighbor(n["address"], n["asn"]) for n in config["neighbors"]],
        on_session_change=lambda address, state: emit(
            {"event": "session", "address": address, "state": state}))
    announcer.start()
    emit({"event": "started"})
    for line in _green_lines(sys.stdin.fileno()):
        command = json.loads(line)
        try:
            if command["op"] == "apply":
                desired = {neighbor: {prefix: Route(**r) for prefix, r in routes.items()}
                           for neighbor, routes in command["desired"].items()}
                announcer.apply(desired)
                emit({"result": None})
            elif command["op"] == "sessions":
                emit({"result": announcer.sessions()})
            elif command["op"] == "announced":
                emit({"result": {n: {p: {"next_hop": r.next_hop, "prepend": r.prepend}
                                     for p, r in routes.items()}
                                 for n, routes in announcer.announced().items()}})
            elif command["op"] == "shutdown":
                break
            else:
                emit({"error": f"unknown op {command['op']}"})
        except Exception as error:
            emit({"error": repr(error)})
    announcer.shutdown()
    emit({"result": None})
    return 0


if __name__ == "__main__":
    sys.exit(_driver_main(sys.argv[1]))
