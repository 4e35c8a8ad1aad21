"""The depth-1 frame slot and its worker: the newest frame wins, replaced frames are returned for counting, the worker
runs frames one at a time off the caller's thread and survives a failing frame."""

from __future__ import annotations

import threading
import time

from mim_perception.core.frame_slot import FrameSlot, SlotWorker


def test_slot_keeps_only_the_newest_frame() -> None:
    s = FrameSlot()
    assert s.put(1) is None and s.put(2) == 1 and s.put(3) == 2
    assert s.take(0.01) == 3 and s.take(0.01) is None
    s.put(4)
    assert s.close() == 4 and s.take(0.01) is None and s.closed


def test_worker_processes_newest_and_accounts_for_every_frame() -> None:
    done: list[int] = []
    gate = threading.Event()

    def process(i: int) -> None:
        gate.wait(2)
        done.append(i)

    errors: list[BaseException] = []
    w = SlotWorker(process, "test-worker", errors.append).start()
    replaced = 0
    for i in range(10):   # the worker is held on frame 0: frames 1..8 are replaced, 9 waits
        replaced += w.slot.put(i) is not None
        time.sleep(0.01)
    gate.set()
    deadline = time.monotonic() + 2
    while len(done) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    left = w.stop()
    assert done == [0, 9] and replaced == 8 and left is None and not errors
    assert len(done) + replaced == 10


def test_worker_survives_a_failing_frame() -> None:
    errors: list[BaseException] = []
    seen: list[int] = []

    def process(i: int) -> None:
        if i == 0:
            raise RuntimeError("bad frame")
        seen.append(i)

    w = SlotWorker(process, "test-worker", errors.append).start()
    w.slot.put(0)
    time.sleep(0.2)
    w.slot.put(1)
    deadline = time.monotonic() + 2
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert seen == [1] and len(errors) == 1 and "bad frame" in str(errors[0])
