"""Whether other work on the host wants its cores (native/host_load.c): the run loop's idle
workers watch for work only while it does not."""

import os
import subprocess
import sys
import threading
import time

import pytest

from imacpro.run_loop_core import HostLoad, _lib

WINDOW_NS = 20_000_000
HOLD_NS = 100_000_000


def test_a_window_that_waited_a_fifth_of_its_time_or_less_leaves_the_host_idle():
    load = HostLoad()
    assert _lib.host_load_judge(load, 10**9, WINDOW_NS, WINDOW_NS // 5) == 0
    assert _lib.host_load_judge(load, 10**9, WINDOW_NS, 0) == 0
    assert (load.busy_until, load.busy_windows) == (0, 0)


def test_a_window_that_waited_longer_marks_the_host_busy_for_a_while():
    load = HostLoad()
    assert _lib.host_load_judge(load, 10**9, WINDOW_NS, WINDOW_NS // 4) == 1
    assert (load.busy_until, load.busy_windows) == (10**9 + HOLD_NS, 1)
    assert _lib.host_load_judge(load, 2 * 10**9, WINDOW_NS, WINDOW_NS) == 1
    assert (load.busy_until, load.busy_windows) == (2 * 10**9 + HOLD_NS, 2)


def test_the_mark_holds_until_its_time_is_up():
    load = HostLoad()
    now = time.monotonic_ns()
    _lib.host_load_judge(load, now, WINDOW_NS, WINDOW_NS)
    assert _lib.host_load_busy(load) == 1
    load.busy_until = time.monotonic_ns() - 1
    assert _lib.host_load_busy(load) == 0


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"),
                    reason="the host's kernel does not count run delays")
def test_a_thread_sharing_its_core_with_a_busy_program_finds_the_host_busy():
    core = min(os.sched_getaffinity(0))
    busy = subprocess.Popen([sys.executable, "-c",
                             f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
    load = HostLoad()
    try:
        def watch():
            os.sched_setaffinity(0, {core})    # this thread only (Linux)
            end = time.monotonic() + 2.0
            while not load.busy_windows and time.monotonic() < end:
                _lib.host_load_note(load)      # a thread that never sleeps, like a watcher
        thread = threading.Thread(target=watch)
        thread.start()
        thread.join()
    finally:
        busy.kill()
        busy.wait()
    assert load.busy_windows >= 1
