"""Deferring SIGINT and SIGTERM to the end of a training step.

A signal that lands in the middle of a checkpoint save (orbax writes through threads and an
event loop) can hang the process or leave a half-written save; one that lands in the middle of
a step loses the step. `DeferredSignals` turns the first two SIGINT/SIGTERM into a flag that the
loop reads after each step, so the loop stops at a step boundary, saves, and then raises. A
third signal is not deferred: it raises `KeyboardInterrupt` at once (a forced exit, for a save
that takes too long; the previous checkpoint stays the newest).
"""

from __future__ import annotations

import signal
import threading

__all__ = ["DeferredSignals"]

#: the signals deferred, and how many of them are before one acts at once
SIGNALS = (signal.SIGINT, signal.SIGTERM)
FORCE_AFTER = 3


class DeferredSignals:
    """A context manager that defers SIGINT and SIGTERM (only in the main thread, where Python
    delivers signals; elsewhere it does nothing). A signal that the process ignores (`SIG_IGN`,
    e.g. SIGINT under `nohup` or in a background job of a non-interactive shell) stays ignored.

    Attributes:
        received: the first signal received (a `signal.Signals`), or None.
        count: how many signals were received.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: signal.Signals | None = None
        self.count = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self.received is None:
            self.received = signal.Signals(signum)
        if self.count >= FORCE_AFTER:
            self._restore()
            raise KeyboardInterrupt

    @property
    def forced(self) -> bool:
        """Whether a signal was let through at once (`FORCE_AFTER` of them arrived)."""
        return self.count >= FORCE_AFTER

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> DeferredSignals:
        if self.enabled:
            for signum in SIGNALS:
                previous = signal.getsignal(signum)
                if previous is signal.SIG_IGN:  # ignored on purpose (nohup, a background job)
                    continue
                self._previous[signum] = previous
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()
