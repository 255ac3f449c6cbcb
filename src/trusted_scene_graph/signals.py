"""Stopping a long run on SIGTERM as on Ctrl-C (``tsg replay``, ``tsg label``), and setting signal handlers for a
block (standard library only; no rclpy)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the handler :func:`sigterm_interrupts` installs.

    A KeyboardInterrupt so that whatever lets Ctrl-C through (a label run's driver ending its workers, the replay's
    bookkeeping, rclpy's cleanup) treats it alike. Raised rather than setting a flag or an event: ``Event.set`` from a
    signal handler deadlocks when the signal lands while the main thread holds the event's lock inside ``Event.wait``,
    and a label run's driver mostly waits on its workers' futures, so it would look at a flag only once an item
    settles.
    """


# Whether the handler :func:`sigterm_interrupts` installs has run since the block began: a library that catches the
# Terminated it raises and raises a KeyboardInterrupt of its own (Ray's ``ray.wait``) loses which signal it was.
# A plain assignment, safe in a signal handler (unlike ``Event.set``: see Terminated).
_sigterm_received = False


def _raise_terminated(signum: int, frame: object) -> None:
    global _sigterm_received
    _sigterm_received = True
    raise Terminated(f"signal {signum}")


def as_terminated(stop: KeyboardInterrupt) -> KeyboardInterrupt:
    """``stop`` as a :class:`Terminated` when SIGTERM raised it (also after a library turned it into a plain
    KeyboardInterrupt); else ``stop`` itself, Ctrl-C's."""
    if isinstance(stop, Terminated) or not _sigterm_received:
        return stop
    return Terminated(f"signal {signal.SIGTERM}")


@contextmanager
def signal_handlers(handlers: Mapping[int, Any]) -> Iterator[None]:
    """Within the block, each signal of ``handlers`` has that handler (None: the one it has); after it, each has the
    handler it had before, whatever the block set. Off the main thread (only it may set handlers) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in handlers}
    for signum, handler in handlers.items():
        if handler is not None:
            signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # None: a handler not set from Python, which the default stands in for.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (the previous handler is restored after it): `kill`, a
    process manager or a job scheduler stop the run cleanly, and a run started with ``&`` from a non-interactive
    shell, which inherits SIGINT ignored, can still be. Off the main thread, or where SIGTERM is ignored on purpose,
    nothing changes."""
    global _sigterm_received
    ignored = signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    _sigterm_received = False
    with signal_handlers({signal.SIGTERM: None if ignored else _raise_terminated}):
        yield
