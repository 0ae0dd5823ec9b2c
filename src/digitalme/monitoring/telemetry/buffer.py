"""The bounded buffer between the request path and the pipeline."""

from __future__ import annotations

from collections import Counter, deque

from digitalme.monitoring.telemetry.items import AnyItem, Priority


class ItemBuffer:
    """Holds captured items until the pipeline takes them; never blocks, never grows unbounded.

    When full, a new item evicts the oldest item of a lower priority; when there
    is none, the new item is dropped. Every drop is counted by reason.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._queues: tuple[deque[AnyItem], ...] = tuple(deque() for _ in Priority)
        self._size = 0
        self.dropped: Counter[str] = Counter()

    def __len__(self) -> int:
        return self._size

    def submit(self, item: AnyItem) -> None:
        """Append an item (the request path's only telemetry work besides building it)."""
        if self._size >= self.capacity and not self._make_room(item.priority):
            self.dropped["buffer_full"] += 1
            return
        self._queues[item.priority].append(item)
        self._size += 1

    def _make_room(self, priority: Priority) -> bool:
        for lower in range(priority):
            queue = self._queues[lower]
            if queue:
                queue.popleft()
                self._size -= 1
                self.dropped["evicted_for_priority"] += 1
                return True
        return False

    def drain(self, limit: int | None = None) -> list[AnyItem]:
        """Take up to ``limit`` items, highest priority first, oldest first within one."""
        taken: list[AnyItem] = []
        for queue in reversed(self._queues):
            while queue and (limit is None or len(taken) < limit):
                taken.append(queue.popleft())
        # Recounted, not decremented: submits from other threads may race on the counter.
        self._size = sum(len(queue) for queue in self._queues)
        return taken
