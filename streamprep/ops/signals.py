"""Stop and reload signals for ``streamprep run``, from the first moment of the process.

This module imports nothing heavy on purpose: the command line installs :class:`Signals` before it
imports anything slow (models, decoders, the pipeline), so a SIGTERM while models load is remembered
and ends the run cleanly with exit 0 instead of killing the process (exit 143, no log line).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_ALL = (*STOP_SIGNALS, signal.SIGHUP)


class StartupInterrupted(BaseException):
    """A stop signal arrived before the pipeline was running."""

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(sig.name)
        self.signal = sig


class Signals:
    """SIGINT, SIGTERM and SIGHUP for the whole life of ``run``.

    Before the event loop runs, signals are remembered: start-up looks at them between its steps
    (:meth:`checkpoint` raises :class:`StartupInterrupted` after a stop signal; raising from the handler
    itself could land inside a library's import or initialisation and be turned into another error). A
    SIGHUP is applied once running. Inside the loop they become calls of ``on_stop``/``on_reload``.
    """

    def __init__(self) -> None:
        self.reload_pending = False
        self.stop_requested: signal.Signals | None = None
        self.last_stop: signal.Signals | None = None
        self.stops = 0
        self._before: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        """Handle signals now, before anything slow starts."""
        for sig in _ALL:
            self._before.setdefault(sig, signal.getsignal(sig))
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._early_stop)
        signal.signal(signal.SIGHUP, self._early_reload)

    def release(self) -> None:
        """Not a ``run`` after all: the handlers from before :meth:`install` again, and a signal that came
        in between is delivered to them now (as if it had come a moment later)."""
        for sig, handler in self._before.items():
            signal.signal(sig, handler)
        if self.stop_requested is not None:
            signal.raise_signal(self.stop_requested)
        elif self.reload_pending:
            signal.raise_signal(signal.SIGHUP)

    def _early_stop(self, signum: int, _frame: types.FrameType | None) -> None:
        self.stops += 1
        self.last_stop = signal.Signals(signum)
        if self.stop_requested is None:
            self.stop_requested = signal.Signals(signum)

    def checkpoint(self) -> None:
        """Between two steps of start-up: stop here if a stop signal came."""
        if self.stop_requested is not None:
            raise StartupInterrupted(self.stop_requested)

    def _early_reload(self, _signum: int, _frame: types.FrameType | None) -> None:
        self.reload_pending = True

    def _late(self, signum: int, _frame: types.FrameType | None) -> None:
        if signum in STOP_SIGNALS:
            self.stops += 1
            self.last_stop = signal.Signals(signum)

    def attach(
        self, loop: asyncio.AbstractEventLoop, on_stop: Callable[[signal.Signals], None], on_reload: Callable[[], None]
    ) -> None:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, on_reload)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop is about to end: signals are only counted from now on. (Left to the loop, its handlers
        would be removed as it closes, leaving the default action, death, in place.)"""
        for sig in _ALL:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
        self.settle()

    def settle(self) -> None:
        for sig in _ALL:
            signal.signal(sig, self._late)

    def ignore(self) -> None:
        """The run is over and its outcome decided: a late signal must not change the exit status (an
        ignored signal also stays ignored while the interpreter exits)."""
        for sig in _ALL:
            signal.signal(sig, signal.SIG_IGN)


_early: Signals | None = None


def install_early() -> Signals:
    """The process's :class:`Signals`, installed on the first call (the entry points call this before any
    other import of streamprep's)."""
    global _early
    if _early is None:
        _early = Signals()
        _early.install()
    return _early


def forget_early() -> None:
    """The early handlers have been released or handed over: a later ``main()`` in this process (tests call
    it more than once) installs afresh."""
    global _early
    _early = None


class StopPolicy:
    """What stop and reload signals do, one policy for a run and for the ``--workers`` supervisor: the first
    SIGTERM/SIGINT drains (``first``), any later one stops at once (``again``: exit 130), and SIGHUP reloads
    (``reload``) unless stopping. ``what`` names what stops in the log lines (``""``: the run itself)."""

    def __init__(
        self,
        log: logging.Logger,
        first: Callable[[signal.Signals], None],
        again: Callable[[signal.Signals], None],
        reload: Callable[[], None],
        what: str = "",
    ) -> None:
        self._log = log
        self._first = first
        self._again = again
        self._reload = reload
        self._what = what
        self.stopping = False

    def on_stop(self, sig: signal.Signals) -> None:
        if self.stopping:
            self._log.warning("second %s: stopping%s now", sig.name, self._what)
            self._again(sig)
            return
        self.stopping = True
        self._log.info("%s received: stopping%s", sig.name, self._what)
        self._first(sig)

    def on_reload(self) -> None:
        if not self.stopping:
            self._reload()
