"""Depth-1 hand-off from a camera callback to the worker thread that runs the model (ROS-free).

The subscription callback only registers the frame and puts it in the slot; the node's own worker thread takes the
newest frame as soon as the model is free. A frame still waiting when a newer one arrives is replaced (the caller
counts it), so the model never idles while a frame waits and never works on a stale one. Behaviour is the same under
any executor (single-threaded under `ros2 launch`, multi-threaded under `mim-perception run`), and executor timers
(diagnostics) never wait behind inference.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class FrameSlot:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> Any:
        """Offer ``item``; returns the frame it replaced (never processed), else None."""
        with self._cv:
            old, self._item = self._item, item
            self._cv.notify()
            return old

    def take(self, timeout: float) -> Any:
        """The waiting frame (removed from the slot), or None after ``timeout`` s or once closed."""
        with self._cv:
            if self._item is None and not self._closed:
                self._cv.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> Any:
        """Stop handing out frames; returns a frame still waiting (the caller counts it), else None."""
        with self._cv:
            self._closed = True
            item, self._item = self._item, None
            self._cv.notify_all()
            return item

    @property
    def closed(self) -> bool:
        return self._closed


class SlotWorker:
    """A thread that takes frames from a :class:`FrameSlot` and runs ``process`` on each until stopped."""

    def __init__(self, process: Callable[[Any], None], name: str, on_error: Callable[[BaseException], None]) -> None:
        self.slot = FrameSlot()
        self._process, self._on_error = process, on_error
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.processed = 0

    def start(self) -> SlotWorker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self.slot.closed:
            item = self.slot.take(0.1)
            if item is None:
                continue
            try:
                self._process(item)
            except Exception as e:   # noqa: BLE001 - the worker must outlive any one frame; the node reports it
                self._on_error(e)
            self.processed += 1

    def stop(self, timeout: float = 5.0) -> Any:
        """Close the slot and join; returns a frame that was still waiting (never processed), else None."""
        left = self.slot.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return left
