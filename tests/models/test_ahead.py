"""models.ahead.Ahead and Shared: work done in a forked child; any failure there means None, never a
partial result (the caller then does the work itself)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from modelseal.models.ahead import Ahead, Shared


def _fail() -> int:
    raise ValueError("in the child")


def test_the_childs_result_comes_back() -> None:
    ahead = Ahead(lambda: {"pid": os.getpid(), "data": list(range(5))})
    assert ahead.pid != 0
    got = ahead.take()
    assert got is not None and got["data"] == [0, 1, 2, 3, 4] and got["pid"] != os.getpid()
    assert ahead.take() is None  # taken once


def test_a_failing_child_gives_none() -> None:
    ahead = Ahead(_fail)
    assert ahead.pid != 0
    assert ahead.take() is None


def test_a_child_that_dies_gives_none() -> None:
    assert Ahead(lambda: os._exit(3)).take() is None


def test_not_started_gives_none() -> None:
    ahead = Ahead(lambda: 1, start=False)
    assert ahead.pid == 0 and ahead.take() is None


def test_cancel_stops_the_child() -> None:
    t = time.monotonic()
    ahead = Ahead(lambda: time.sleep(60))
    ahead.cancel()
    assert ahead.pid == 0 and ahead.take() is None
    assert time.monotonic() - t < 30


def _slow(i: int) -> tuple[int, int]:
    time.sleep(0.01)
    return i, os.getpid()


def _boom(i: int) -> int:
    if i == 3:
        raise ValueError("in the child")
    return i


def test_shared_items_are_done_once_each_in_order_half_of_the_rest_here() -> None:
    """Asked at once, the child keeps half of what it has not started; this process does the
    other half. Every item is done exactly once, and the results come back in order."""
    shared = Shared(lambda: list(range(100)), _slow, min_share=10)
    assert shared.pid != 0
    got = shared.finish(_slow)
    assert got is not None and [i for i, _ in got] == list(range(100))
    assert all(r[0] == i for i, r in got)
    here = [i for i, (_, pid) in got if pid == os.getpid()]
    assert 30 <= len(here) <= 50 and here == list(range(100 - len(here), 100))
    assert shared.pid == 0


def test_shared_below_min_share_the_child_keeps_everything() -> None:
    shared = Shared(lambda: list(range(20)), _slow, min_share=64)
    got = shared.finish(_slow)
    assert got is not None and [i for i, _ in got] == list(range(20))
    assert all(pid != os.getpid() for _, (_, pid) in got)


def test_shared_a_failing_child_gives_none() -> None:
    assert Shared(lambda: list(range(10)), _boom, min_share=100).finish(_boom) is None
    assert Shared(lambda: [][0], _boom, min_share=1).finish(_boom) is None
    assert Shared(lambda: [1, 2], lambda i: os._exit(3), min_share=1).finish(_boom) is None


def test_shared_a_child_that_finished_first_answers_all() -> None:
    shared = Shared(lambda: list(range(5)), lambda i: i * 2, min_share=1)
    time.sleep(0.5)  # done and gone before it is asked
    assert shared.finish(_boom) == [(i, i * 2) for i in range(5)]


def test_shared_cancel_stops_the_child_and_not_started_gives_none() -> None:
    t = time.monotonic()
    shared = Shared(lambda: [60], time.sleep, min_share=1)
    shared.cancel()
    assert shared.pid == 0 and shared.finish(_boom) is None
    assert time.monotonic() - t < 30
    assert Shared(lambda: [1], _boom, min_share=1, start=False).finish(_boom) is None


def test_shared_child_stops_when_its_parent_is_gone(tmp_path: Path) -> None:
    """A parent that stops on an error (an invalid policy) leaves no child scanning on."""
    code = (
        "import os, sys, time\n"
        "from modelseal.models.ahead import Shared\n"
        "def work(i):\n"
        "    open(os.path.join(sys.argv[1], str(i)), 'w').close(); time.sleep(0.05)\n"
        "s = Shared(lambda: list(range(200)), work, min_share=1)\n"
        "time.sleep(0.2)\n"
        "os._exit(2)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False, timeout=60)
    time.sleep(1.0)
    n = len(list(tmp_path.iterdir()))
    time.sleep(0.5)
    assert len(list(tmp_path.iterdir())) == n < 100
