"""`TaskPanel`: runs the widgets' work in a worker thread, with a progress bar, a status line and a Cancel button.

napari stays responsive while a pick runs. The pipelines report their steps through `cryoseg.progress.listen`;
the listener runs in the worker thread, hands each step to the panel through a Qt signal (delivered in the GUI
thread) and raises `Cancelled` there once the user asked to cancel, which stops the work at its next step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from qtpy.QtCore import QObject, Signal

from ..errors import CryosegError
from ..progress import Cancelled, listen

logger = logging.getLogger(__name__)


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (Qt queues signals across threads)."""

    step = Signal(str, int, int)  # description, done, total (-1: unknown)


class TaskPanel(Container):
    """Progress bar, status line and Cancel button of a widget that runs one job at a time."""

    def __init__(self) -> None:
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="ready")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        super().__init__(widgets=[self.progress, self.status, self.cancel_button], labels=False)
        self._relay = _Relay()
        self._relay.step.connect(self._show_step)
        self._cancel = threading.Event()
        self._worker: Any = None
        self.cancel_button.changed.connect(self.cancel)
        self.last_error: str | None = None
        self.idle: list[Callable[[], None]] = []  # called after each job, in the GUI thread

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self._worker is not None

    def cancel(self) -> None:
        """Ask the running job to stop at its next step."""
        if self.busy:
            self._cancel.set()
            self.status.value = "cancelling..."

    def run(self, title: str, work: Callable[[], Any], done: Callable[[Any], str]) -> bool:
        """Run `work()` in a worker thread; then `done(result)` in the GUI thread, whose text becomes the status.

        Returns False (and runs nothing) while another job is running. Errors end in the status line (one line,
        also shown as a napari notification); a cancelled job changes nothing.
        """
        from superqt.utils import create_worker  # napari's own would also report errors as tracebacks

        if self.busy:
            return False
        self._cancel.clear()
        self.last_error = None
        self.status.value = f"{title}..."
        self.progress.max, self.progress.value = 0, 0  # busy indicator until the first step says how many
        self.cancel_button.enabled = True
        start = time.perf_counter()

        def listener(description: str, n: int, total: int | None) -> None:
            if self._cancel.is_set():
                raise Cancelled
            self._relay.step.emit(description, n, -1 if total is None else total)

        def job() -> Any:
            with listen(listener):
                return work()

        def returned(result: Any) -> None:
            try:
                text = done(result)
            except Exception as exc:  # noqa: BLE001 - showing the result failed: say so, as for the work
                self.show_error(exc)
            else:
                self.status.value = f"{text} ({time.perf_counter() - start:.1f} s)"

        self._worker = create_worker(job, _connect={"returned": returned, "errored": self.show_error,
                                                    "finished": self._finished})
        return True

    def _show_step(self, description: str, n: int, total: int) -> None:
        if not self.busy or self._cancel.is_set():
            return
        self.status.value = description
        if total > 0:
            self.progress.max, self.progress.value = total, min(n, total)
        else:
            self.progress.max, self.progress.value = 0, 0

    def show_error(self, exc: BaseException) -> None:
        """End in the status line (one line) and a napari notification; a cancellation only says so."""
        if isinstance(exc, Cancelled):
            self.status.value = "cancelled"
            return
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, CryosegError):
            text = f"{type(exc).__name__}: {text}"
            logger.error("cryoseg widget job failed", exc_info=exc)
        self.last_error = text
        self.status.value = f"error: {text}"
        from napari.utils.notifications import show_error

        show_error(f"cryoseg: {text}")

    def _finished(self) -> None:
        self._worker = None
        self.cancel_button.enabled = False
        self.progress.max, self.progress.value = 1, 1
        for callback in self.idle:
            callback()
