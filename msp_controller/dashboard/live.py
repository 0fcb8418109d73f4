"""From the core's changes to the feed: the shell hands over the homenets an event touched
(Effects.touched) and ticks once a second; this publishes what an open page must redraw.

Work is done only for homenets some page watches: a touched homenet nobody watches costs a
set lookup; statistics are sampled once a second for the homenets shown in full. Nothing
here iterates over every homenet. An event is published only when what it shows changed.
"""
from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from msp_controller.dashboard import views
from msp_controller.dashboard.feed import EventFeed

if TYPE_CHECKING:
    from msp_controller.core.msp import MspCore

HISTORY_POINTS = 120  # two minutes of the graphs at one point a second


class DashboardPublisher:
    def __init__(self, core: MspCore, feed: EventFeed, clock: Callable[[], float] = time.monotonic) -> None:
        self.core = core
        self.feed = feed
        self.clock = clock
        self._shown: dict[tuple[str, str], Any] = {}  # (kind, homenet) -> what was last published
        self._history: dict[str, collections.deque[dict[str, Any]]] = {}

    def touched(self, homenets: Iterable[str], now: float | None = None) -> None:
        """Homenets an event recomputed: publish their summary and detail if they changed."""
        now = self.clock() if now is None else now
        for name in homenets:
            if not self.feed.watched(name) or name not in self.core.homenets:
                continue
            self._publish_if_changed("summary", name, views.summary(self.core, name))
            if self.feed.watches_detail(name):
                shown = views.detail(self.core, name, now)
                self._publish_if_changed("homenet", name, shown, _what_changes(shown))

    def _publish_if_changed(self, kind: str, name: str, data: dict[str, Any], key: Any = None) -> None:
        key = data if key is None else key
        if self._shown.get((kind, name)) == key:
            return
        self._shown[(kind, name)] = key
        self.feed.publish(kind, name, data)

    def tick(self, now: float | None = None) -> None:
        """Once a second: a point of the RTT and loss graphs of each homenet shown in full."""
        now = self.clock() if now is None else now
        detailed = set(self.feed.detailed())
        for name in list(self._history):
            if name not in detailed:
                del self._history[name]  # nobody looks: keep nothing
        for (kind, name) in [k for k in self._shown if not self.feed.watched(k[1])]:
            del self._shown[(kind, name)]
        for name in detailed:
            if name not in self.core.homenets:
                continue
            sample = views.stats_sample(self.core, name, now)
            self._history.setdefault(name, collections.deque(maxlen=HISTORY_POINTS)).append(sample)
            self.feed.publish("stats", name, sample)

    def history(self, name: str) -> list[dict[str, Any]]:
        """The graph points kept while someone watched this homenet (for a page that opens)."""
        return list(self._history.get(name, ()))


def _what_changes(shown: dict[str, Any]) -> Any:
    """The parts of a homenet's detail that make it worth redrawing (not counters, not times)."""
    return ([(p["path"], p["state"], p["ends"]["mspmb"], p["ends"]["edge"]) for p in shown["paths"]],
            shown["classes"], shown["announced_at"], [c["at"] for c in shown["changes"][:1]])
