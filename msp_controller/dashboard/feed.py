"""The dashboard's change feed: events published per homenet, delivered to the subscribers
that watch that homenet.

Publishing costs O(subscribers of that homenet): subscribers are indexed by the homenets
they watch, and an event is serialised once for all of them. Each subscriber has a bounded
queue; one that falls behind (a stalled browser) loses its backlog and gets a single
`resync` event instead, so a slow reader never grows the controller's memory.

Waiting uses a queue made by `queue_factory`: queue.Queue by default (tests, threads); under
Ryu, web.mount makes it eventlet's, so that a waiting stream never blocks the event loop,
whatever ryu-manager monkey-patched.
"""
from __future__ import annotations

import json
import queue
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

MAX_WATCHED = 200  # homenets one subscriber may watch: a page of the list, not the MSP
MAX_STREAMS = 500  # open streams in all: each holds a green thread and a queue
QUEUE_EVENTS = 256  # per subscriber, before it is told to resync
RESYNC = "resync"


@dataclass(frozen=True)
class Event:
    kind: str  # summary, homenet, stats, resync
    homenet: str
    text: str  # as sent: "event: <kind>\ndata: <json>\n\n"

    @classmethod
    def of(cls, kind: str, homenet: str, data: Any) -> Event:
        payload = json.dumps(data, allow_nan=False, ensure_ascii=True, separators=(",", ":"))
        return cls(kind, homenet, f"event: {kind}\ndata: {payload}\n\n")


class EventQueue(Protocol):
    """What a subscriber needs of a queue (queue.Queue and eventlet's have it); a full one raises
    queue.Full, an empty one queue.Empty (eventlet's are the same classes)."""

    def put_nowait(self, item: Event) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> Event: ...

    def get_nowait(self) -> Event: ...


class Subscriber:
    """One open event stream: the homenets whose summaries it wants, and at most one whose
    full detail (paths, classes, changes, live statistics) it wants."""

    def __init__(self, summaries: Iterable[str], detail: str | None, capacity: int = QUEUE_EVENTS,
                 queue_factory: Callable[[int], EventQueue] = queue.Queue) -> None:
        self.summaries = frozenset(summaries)
        self.detail = detail
        self._queue = queue_factory(capacity)
        self.resyncs = 0
        self.closed = False

    @property
    def homenets(self) -> frozenset[str]:
        return self.summaries | ({self.detail} if self.detail else set())

    def wants(self, kind: str, homenet: str) -> bool:
        if kind == "summary":
            return homenet in self.summaries
        return homenet == self.detail

    def offer(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._drain()
            self.resyncs += 1
            self._queue.put_nowait(Event.of(RESYNC, event.homenet, {"reason": "too slow: events were dropped"}))

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def next(self, timeout_s: float) -> Event | None:
        """The next event, or None after timeout_s (time for a keep-alive)."""
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None


class FeedFull(Exception):
    """As many streams are open as the controller serves: answered 503."""


class EventFeed:
    def __init__(self, max_streams: int = MAX_STREAMS,
                 queue_factory: Callable[[int], EventQueue] = queue.Queue) -> None:
        self._by_homenet: dict[str, set[Subscriber]] = {}
        self.max_streams = max_streams
        self.queue_factory = queue_factory
        self.streams = 0

    def subscribe(self, summaries: Iterable[str] = (), detail: str | None = None) -> Subscriber:
        subscriber = Subscriber(summaries, detail, queue_factory=self.queue_factory)
        if len(subscriber.summaries) > MAX_WATCHED:
            raise ValueError(f"a stream may watch at most {MAX_WATCHED} homenets, not {len(subscriber.summaries)}")
        if self.streams >= self.max_streams:
            raise FeedFull(f"{self.streams} event streams are open, the most this controller serves; "
                           "close a dashboard tab or try again later")
        self.streams += 1
        for name in subscriber.homenets:
            self._by_homenet.setdefault(name, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber.closed:
            return
        subscriber.closed = True
        self.streams -= 1
        for name in subscriber.homenets:
            watchers = self._by_homenet.get(name)
            if watchers is not None:
                watchers.discard(subscriber)
                if not watchers:
                    del self._by_homenet[name]

    def watched(self, homenet: str) -> bool:
        return homenet in self._by_homenet

    def watches_detail(self, homenet: str) -> bool:
        return any(s.detail == homenet for s in self._by_homenet.get(homenet, ()))

    def detailed(self) -> list[str]:
        """The homenets some open page shows in full (their statistics are published)."""
        return [name for name, subs in self._by_homenet.items() if any(s.detail == name for s in subs)]

    def publish(self, kind: str, homenet: str, data: Any) -> int:
        """Deliver to the subscribers that want it; how many did."""
        subscribers = [s for s in self._by_homenet.get(homenet, ()) if s.wants(kind, homenet)]
        if not subscribers:
            return 0
        event = Event.of(kind, homenet, data)
        for subscriber in subscribers:
            subscriber.offer(event)
        return len(subscribers)

    @property
    def subscribers(self) -> int:
        return self.streams
