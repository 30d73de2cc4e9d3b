"""models.ahead.Ahead: work done in a forked child; any failure there means None, never a
partial result (the caller then does the work itself)."""

from __future__ import annotations

import os
import time

from modelseal.models.ahead import Ahead


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
