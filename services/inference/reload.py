"""Hot reload: poll the registry's promoted pointers (and react to ``models.events`` when the stage runs)."""

from __future__ import annotations

import logging
import threading

from distillery_services.inference.engine import ScoringEngine

logger = logging.getLogger(__name__)


class RegistryWatcher:
    """Calls ``engine.refresh()`` every ``interval`` seconds (0: never by itself) on a daemon thread;
    ``trigger()`` runs it now."""

    def __init__(self, engine: ScoringEngine, interval: float):
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-watch", daemon=True)

    def start(self) -> RegistryWatcher:
        self._thread.start()  # with interval 0 it only answers trigger() (models.events)
        return self

    def trigger(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval if self.interval > 0 else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.engine.refresh()
            except Exception:
                logger.exception("reload failed")
