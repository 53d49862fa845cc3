"""Progress of long commands: a live bar on a terminal, plain lines elsewhere (CI logs, `| tee`, services).

A rich bar redraws one line in place, which a log file only sees once at the end; on a non-terminal this
prints a timestamped line whenever the stage (the message) changes and at least every
``$DISTILLERY_PROGRESS_SECONDS`` (default 30) while it does not.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console


def _interval() -> float:
    try:
        return max(1.0, float(os.environ.get("DISTILLERY_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


class LineProgress:
    """``update(fraction, message)`` -> a line per new stage and every ``interval`` seconds."""

    def __init__(self, console: Console, title: str, interval: float | None = None):
        self.console = console
        self.title = title
        self.interval = interval if interval is not None else _interval()
        self.started = time.monotonic()
        self._last_line = 0.0
        self._stage = None
        self._state = (0.0, "starting")
        self._lock = threading.Lock()

    def _line(self, fraction: float, message: str) -> None:
        elapsed = time.monotonic() - self.started
        self.console.print(f"[{time.strftime('%H:%M:%S')}] {self.title}: {fraction:4.0%} {message} "
                           f"({elapsed:.0f}s)", soft_wrap=True, markup=False, highlight=False)
        self._last_line = time.monotonic()

    def update(self, fraction: float, message: str) -> None:
        # A stage is the message without counters, so "fold 1/5" and "fold 2/5" are two stages but
        # "epoch 3: 41%" repeated is not printed every call.
        stage = message.split(":")[0]
        with self._lock:
            self._state = (fraction, message)
            if stage != self._stage or time.monotonic() - self._last_line >= self.interval:
                self._stage = stage
                self._line(fraction, message)

    def tick(self) -> None:
        """Called by a timer: a heartbeat line when nothing was printed for ``interval`` seconds."""
        with self._lock:
            if time.monotonic() - self._last_line >= self.interval:
                self._line(*self._state)


@contextmanager
def progress(console: Console, title: str) -> Iterator[Callable[[float, str], None]]:
    """Yield ``update(fraction 0-1, message)``: a rich bar on a terminal, :class:`LineProgress` otherwise."""
    if console.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("starting", total=1.0)
            yield lambda p, m: bar.update(task, completed=p, description=m[:70])
        return
    lines = LineProgress(console, title)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(min(5.0, lines.interval)):
            lines.tick()

    timer = threading.Thread(target=heartbeat, name="progress-heartbeat", daemon=True)
    timer.start()
    try:
        yield lines.update
    finally:
        stop.set()
        timer.join(1)


def refreshing(update: Callable[[], object], work: Callable[[], None], every: float = 0.25,
               final: Callable[[], object] | None = None) -> None:
    """Run ``work()`` while a daemon thread calls ``update()`` every ``every`` seconds, then ``final()`` (default:
    ``update()``) once after it ends, also when it raises, so that a bar fed from shared counters ends exact."""
    finished = threading.Event()

    def refresh() -> None:
        while not finished.wait(every):
            update()

    ticker = threading.Thread(target=refresh, daemon=True)
    ticker.start()
    try:
        work()
    finally:
        finished.set()
        ticker.join()
        (final or update)()
