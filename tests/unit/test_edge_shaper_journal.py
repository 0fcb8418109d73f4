"""An edge's shaper that restarts, or loses the controller for a while, keeps the port shaped:
with its journal it rebuilds only the homenets whose shaping changed meanwhile, and clears the
port only when it cannot know what the port holds. A fake tc records the batches."""
from __future__ import annotations

import json

from msp_controller.box.edge_journal import Journal
from msp_controller.box.edge_shaper import EdgeShaper

PORT = "edge1-up"
BASE = [["qdisc", "replace", "dev", PORT, "root", "handle", "1:", "htb", "default", "3"]]
CLEAR = ["qdisc", "del", "dev", PORT, "root"]


def entry(homenet_id: int, rate: str = "1mbit", slots: int = 1) -> dict:
    """A homenet's commands as the controller gives them: its handles derive from its id."""
    major = f"{homenet_id + 1:x}"
    remove = [["filter", "del", "dev", PORT, "parent", "1:", "handle", f"2:{homenet_id:x}:{slot + 1}", "u32"]
              for slot in range(slots)]
    remove.append(["class", "del", "dev", PORT, "classid", f"1:{major}"])
    apply = [["class", "replace", "dev", PORT, "parent", "1:", "classid", f"1:{major}", "htb", "rate", rate],
             ["qdisc", "replace", "dev", PORT, "parent", f"1:{major}", "pfifo_head_drop", "limit", "16"]]
    return {"id": homenet_id, "remove": remove, "apply": apply}


class Controller:
    """What the controller serves at this edge, and its answers to the shaper."""

    def __init__(self, served: dict[str, dict]) -> None:
        self.served, self.version, self.changes = dict(served), 1, []

    def change(self, name: str, new: dict | None) -> None:
        self.version += 1
        if new is None:
            self.served.pop(name)
        else:
            self.served[name] = new
        self.changes.append((self.version, name, new))

    def fetch(self, since, after):
        if since is None:
            return {"version": self.version, "full": True, "base": BASE, "homenets": dict(self.served)}
        return {"version": self.version, "full": False,
                "homenets": {name: new for version, name, new in self.changes if version > since}}


class Tc:
    def __init__(self) -> None:
        self.batches: list[tuple[list[list[str]], bool]] = []

    def __call__(self, commands, force):
        if commands:
            self.batches.append((commands, force))
        return True, ""

    def commands(self) -> list[list[str]]:
        return [c for batch, _ in self.batches for c in batch]


def shaper(controller: Controller, tc: Tc, path, incarnation: str = "boot/7", root: bool = True) -> EdgeShaper:
    return EdgeShaper(controller.fetch, PORT, tc, journal=Journal(str(path)), incarnation=lambda: incarnation,
                      root_in_place=lambda: root)


def started(tmp_path, homenets: int = 5) -> tuple[Controller, str]:
    """A controller serving home1..homeN, and the journal of a shaper that applied them all."""
    controller = Controller({f"home{n}": entry(n) for n in range(1, homenets + 1)})
    path = tmp_path / "edge1-up.journal"
    path.unlink(missing_ok=True)
    first = shaper(controller, Tc(), path)
    assert first.step() == homenets
    first.journal.close()
    return controller, str(path)


def test_a_restarted_shaper_with_nothing_changed_runs_no_tc_at_all(tmp_path):
    controller, path = started(tmp_path)
    tc = Tc()
    again = shaper(controller, tc, path)
    assert again.step() == 0
    assert tc.batches == []  # neither the port cleared nor anything applied: it stayed shaped
    assert set(again.applied) == set(controller.served)


def test_a_restarted_shaper_rebuilds_only_what_changed_while_it_was_down(tmp_path):
    controller, path = started(tmp_path)
    old_home2 = controller.served["home2"]
    controller.change("home2", entry(2, rate="5mbit"))  # a new policy
    controller.change("home4", None)  # no longer served here
    controller.change("home9", entry(9))  # a new homenet
    tc = Tc()
    again = shaper(controller, tc, path)
    assert again.step() == 3
    ran = tc.commands()
    assert CLEAR not in ran and BASE[0] not in ran
    assert all(c in ran for c in old_home2["remove"] + controller.served["home2"]["apply"])
    assert all(c in ran for c in entry(4)["remove"])  # home4's own removal: the controller no longer has it
    assert all(c in ran for c in controller.served["home9"]["apply"])
    untouched = {"home1", "home3", "home5"}
    assert not any(c in ran for name in untouched for c in controller.served[name]["apply"])
    assert set(again.applied) == set(controller.served)


def test_a_homenet_gone_while_down_is_removed_before_another_takes_its_id(tmp_path):
    controller, path = started(tmp_path, homenets=3)
    old = controller.served["home2"]
    controller.change("home2", None)
    controller.change("newcomer", entry(2, rate="9mbit", slots=2))  # same id, same handles
    tc = Tc()
    shaper(controller, tc, path).step()
    (undo, undo_forced), (build, _) = tc.batches
    assert undo_forced and all(c in undo for c in old["remove"])
    assert build == controller.served["newcomer"]["apply"]
    assert tc.batches[2:] == []  # and home2 is not removed a second time, after newcomer is built


def test_a_journal_for_another_boot_or_port_or_a_port_without_its_root_is_not_trusted(tmp_path):
    controller, path = started(tmp_path)
    for kind in ({"incarnation": "boot/8"}, {"incarnation": "other-boot/7"}, {"root": False}):
        tc = Tc()
        assert shaper(controller, tc, path, **kind).step() == 5, kind
        assert tc.batches[0] == ([CLEAR], True) and tc.batches[1] == (BASE, False), kind
        controller, path = started(tmp_path)  # the journal as the first shaper left it


def test_a_shaper_stopped_during_a_homenets_tc_rebuilds_it_undoing_old_and_new(tmp_path):
    controller, path = started(tmp_path)
    with open(path, "a") as journal:  # what a shaper killed inside home3's change leaves
        journal.write(json.dumps({"name": "home3", "id": 3, "digest": None,
                                  "remove": entry(3)["remove"] + [["filter", "del", "dev", PORT, "handle", "9"]]})
                      + "\n")
        journal.write('{"name": "home5", "id": 5, "dig')  # torn while being written
    tc = Tc()
    again = shaper(controller, tc, path)
    assert again.step() == 1
    undo, build = tc.commands()[:3], tc.commands()[3:]
    assert ["filter", "del", "dev", PORT, "handle", "9"] in undo
    assert build == controller.served["home3"]["apply"]


def test_a_journal_unreadable_before_its_last_line_is_not_trusted(tmp_path):
    controller, path = started(tmp_path)
    lines = open(path).read().splitlines()
    lines[2] = "not json"
    open(path, "w").write("\n".join(lines) + "\n")
    tc = Tc()
    assert shaper(controller, tc, path).step() == 5
    assert tc.batches[0] == ([CLEAR], True)


def test_a_journal_naming_a_command_the_shaper_would_refuse_is_not_trusted(tmp_path):
    controller, path = started(tmp_path)
    with open(path, "a") as journal:
        journal.write(json.dumps({"name": "home3", "id": 3, "digest": None,
                                  "remove": [["qdisc", "del", "dev", "eth0", "root"]]}) + "\n")
    tc = Tc()
    shaper(controller, tc, path).step()
    assert ["qdisc", "del", "dev", "eth0", "root"] not in tc.commands()
    assert tc.batches[0] == ([CLEAR], True)


def test_losing_the_controller_does_not_clear_the_port(tmp_path):
    controller, path = started(tmp_path)
    tc = Tc()
    running = shaper(controller, tc, path)
    running.step()
    running.version = None  # what run() does after a failed exchange: ask for everything
    controller.change("home1", entry(1, rate="2mbit"))
    assert running.step() == 1
    assert CLEAR not in tc.commands() and tc.commands()[-2:] == controller.served["home1"]["apply"]


def test_a_port_made_again_under_a_running_shaper_is_built_again(tmp_path):
    controller, path = started(tmp_path)
    tc = Tc()
    incarnations = iter(["boot/7", "boot/7", "boot/12"])
    running = EdgeShaper(controller.fetch, PORT, tc, journal=Journal(path), incarnation=lambda: next(incarnations),
                         root_in_place=lambda: True)
    assert running.step() == 0
    controller.change("home1", entry(1, rate="2mbit"))
    assert running.step() == 5  # a full answer on the new port, not only home1's change
    assert tc.batches[0] == ([CLEAR], True)


def test_the_journal_stays_a_few_lines_a_homenet_however_many_changes(tmp_path):
    controller, path = started(tmp_path)
    running = shaper(controller, Tc(), path)
    running.step()
    for n in range(3000):
        controller.change("home1", entry(1, rate=f"{n + 1}kbit"))
        running.step()
    assert len(open(path).read().splitlines()) <= 2 * 5 + 1000 + 2
    running.journal.close()
    tc = Tc()
    assert shaper(controller, tc, path).step() == 0 and tc.batches == []  # and still says what the port holds


def test_a_homenet_whose_tc_failed_is_built_again_a_minute_later(tmp_path):
    from msp_controller.box.edge_shaper import RETRY_FAILED_S
    controller, path = started(tmp_path)
    now = [0.0]
    failing = controller.served["home2"]["apply"]
    new_home2 = entry(2, rate="3mbit")
    tc = Tc()

    def flaky(commands, force):  # the kernel refuses home2's new shaping once
        tc(commands, force)
        if commands == new_home2["apply"] and not flaky.failed:
            flaky.failed = True
            return False, "RTNETLINK answers: Cannot allocate memory"
        return True, ""
    flaky.failed = False

    running = EdgeShaper(controller.fetch, PORT, flaky, journal=Journal(path), incarnation=lambda: "boot/7",
                         root_in_place=lambda: True, clock=lambda: now[0])
    running.step()
    controller.change("home2", new_home2)
    assert running.step() == 1 and flaky.failed and running.failed == 1
    tc.batches.clear()
    now[0] += RETRY_FAILED_S - 1
    assert running.step() == 0 and tc.batches == []  # nothing asked again yet
    now[0] += 1
    assert running.step() == 1  # a full answer: home2 alone is built again, and holds now
    assert tc.commands()[-2:] == new_home2["apply"] and failing != new_home2["apply"]
    assert running.failed == 0
    tc.batches.clear()
    now[0] += RETRY_FAILED_S
    assert running.step() == 0 and tc.batches == []  # nothing failed: no more full answers
