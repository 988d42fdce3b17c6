"""Hold back Ctrl-C (SIGINT) and SIGTERM while a stream stops and finishes its output file.

A KeyboardInterrupt raised inside ``Thread.join`` makes CPython up to 3.12 mark the joined thread as stopped
while it still runs (``_wait_for_tstate_lock``, bpo-45274); the interpreter then exits without waiting for
it, and an H.264 flush in the render thread is cut off: an .mp4 without its index, no playable frame. So
the stream's shutdown runs with the Python-level handlers of these signals replaced by one that only
records them; :meth:`SignalShield.redeliver` hands them to the original handlers afterwards.
"""

from __future__ import annotations

import os
import signal
import threading

SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)
NOTICE = b"edgeseg: stopping; finishing the output first (a second Ctrl-C waits for it)\n"


class SignalShield:
    """``with SignalShield(): ...`` defers SIGINT/SIGTERM in the main thread (elsewhere it does nothing)."""

    def __init__(self):
        self.received: list[int] = []
        self._previous: dict[int, object] = {}

    def _record(self, signum, frame) -> None:
        if not self.received:
            try:
                os.write(2, NOTICE)  # a signal handler: no locks, no buffered stream
            except OSError:
                pass
        self.received.append(signum)

    def __enter__(self) -> SignalShield:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in SIGNALS:
            handler = signal.getsignal(signum)
            if callable(handler):  # a Python handler (Ctrl-C's default raises KeyboardInterrupt); not SIG_DFL/IGN
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def redeliver(self) -> None:
        """Send the deferred signals again, once each, to the handlers now installed."""
        for signum in dict.fromkeys(self.received):
            signal.raise_signal(signum)
        self.received.clear()
