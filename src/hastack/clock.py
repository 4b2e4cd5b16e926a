"""Time, injected: the one place hastack and its simulator learn what time it is.

Core code never reads the system clock; it is handed a :class:`Clock`.  Two implementations:

* :class:`SystemClock` — wall time; ``call_later`` runs callbacks on one scheduler thread.
* :class:`VirtualClock` — a discrete-event clock.  Time moves only when :meth:`advance` (or
  :meth:`run_until`) is called, and scheduled callbacks run in (time, insertion) order, so a
  scenario of minutes of cloud time runs in milliseconds and replays identically.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

Callback = Callable[[], None]
log = logging.getLogger(__name__)


class Timer:
    """A scheduled callback; :meth:`cancel` stops it from running if it has not run yet."""

    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callback) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock(Protocol):
    """Contract: ``now()`` is seconds since the Unix epoch and never goes backwards;
    ``call_later(delay, fn)`` runs ``fn`` once, no earlier than ``now() + delay``."""

    def now(self) -> float: ...

    def call_later(self, delay: float, fn: Callback) -> Timer: ...


class _Queue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    def push(self, timer: Timer) -> None:
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))

    def next_time(self) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Timer | None:
        t = self.next_time()
        if t is None or t > now:
            return None
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


class VirtualClock:
    """Discrete-event clock.  Not thread-safe by design: one driver advances it."""

    # 2026-01-01T00:00:00Z: a fixed start makes timestamps part of a deterministic replay.
    DEFAULT_START = 1767225600.0

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = start
        self._queue = _Queue()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, fn: Callback) -> Timer:
        timer = Timer(self._now + max(0.0, delay), fn)
        self._queue.push(timer)
        return timer

    def pending(self) -> int:
        return len(self._queue)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every callback that falls due, in order."""
        self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> None:
        while True:
            t = self._queue.next_time()
            if t is None or t > when:
                break
            timer = self._queue.pop_due(t)
            assert timer is not None
            self._now = max(self._now, timer.when)
            timer.fn()
        self._now = max(self._now, when)

    def run_until(self, predicate: Callable[[], bool], timeout: float, step: float = 1.0) -> bool:
        """Advance in ``step`` increments until ``predicate()`` holds or ``timeout`` passes."""
        deadline = self._now + timeout
        while not predicate():
            if self._now >= deadline:
                return False
            self.advance_to(min(deadline, self._now + step))
        return True


class SystemClock:
    """Wall-clock time with a scheduler thread for ``call_later`` (started lazily)."""

    def __init__(self) -> None:
        self._queue = _Queue()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def now(self) -> float:
        return time.time()

    def call_later(self, delay: float, fn: Callback) -> Timer:
        timer = Timer(time.time() + max(0.0, delay), fn)
        with self._cond:
            self._queue.push(timer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="clock", daemon=True)
                self._thread.start()
            self._cond.notify()
        return timer

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                t = self._queue.next_time()
                now = time.time()
                if t is None or t > now:
                    self._cond.wait(None if t is None else t - now)
                    continue
                timer = self._queue.pop_due(now)
            if timer is not None and not timer.cancelled:
                try:
                    timer.fn()
                except Exception:  # a callback's failure must not stop the clock
                    log.exception("scheduled callback failed")
