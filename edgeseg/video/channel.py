"""A bounded hand-off between two pipeline threads, with an end-of-stream mark and an abort Event.

``latest=True`` (live sources): a full channel drops its oldest item to take the new one, so the consumer
always gets the freshest frame and memory stays bounded; ``put`` returns how many items it dropped.
``latest=False`` (files): a full channel blocks the producer, so every frame is processed in order.
"""

from __future__ import annotations

import threading
from collections import deque

END = object()  # returned by get() once the channel is closed and drained, or the stream is aborted


class Channel:
    def __init__(self, capacity: int, latest: bool, abort: threading.Event, name: str = ""):
        if capacity < 1:
            raise ValueError(f"capacity: got {capacity}, expected >= 1")
        self.capacity, self.latest, self.name = capacity, latest, name
        self.high_water = 0  # the most items ever held at once (tests check the bound)
        self._items: deque = deque()
        self._abort = abort
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item) -> int:
        """Hand over ``item``; returns the number of older items dropped (latest mode), 0 otherwise."""
        with self._cond:
            dropped = 0
            if self.latest:
                while len(self._items) >= self.capacity:
                    self._items.popleft()
                    dropped += 1
            else:
                while len(self._items) >= self.capacity and not self._abort.is_set():
                    self._cond.wait(0.1)
                if self._abort.is_set():
                    return 0
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()
            return dropped

    def get(self):
        """The next item, or :data:`END` when the channel is closed and empty or the stream was aborted."""
        with self._cond:
            while not self._items and not self._closed and not self._abort.is_set():
                self._cond.wait(0.1)
            if self._abort.is_set() or not self._items:
                return END
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more items will come; ``get`` returns the remaining ones, then :data:`END`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)
