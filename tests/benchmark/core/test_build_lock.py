import threading
import time

import pytest

from benchmark.core.build_lock import build_lock, lock_path


def test_a_second_holder_waits_until_the_first_releases(tmp_path):
    target = tmp_path / "entry"
    events: list[str] = []
    held = threading.Event()

    def first():
        with build_lock(target):
            held.set()
            time.sleep(0.3)
            events.append("first released")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(10)
    with build_lock(target):
        events.append("second acquired")
    thread.join()
    assert events == ["first released", "second acquired"]
    assert lock_path(target) == tmp_path / ".entry.lock" and lock_path(target).exists()


def test_the_lock_is_released_when_the_builder_raises(tmp_path):
    target = tmp_path / "entry"
    with pytest.raises(RuntimeError, match="build failed"):
        with build_lock(target):
            raise RuntimeError("build failed")
    acquired = threading.Event()

    def other():
        with build_lock(target):
            acquired.set()

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    thread.join(5)
    assert acquired.is_set()
