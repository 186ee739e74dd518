"""The deadline table: replace, cancel, earliest first, ties in setting order."""

from __future__ import annotations

from hotline.acd.timers import Deadlines


def test_earliest_first_with_replacement_and_cancel() -> None:
    d = Deadlines()
    d.set("a", 10.0)
    d.set("b", 5.0)
    d.set("c", 7.0)
    d.set("b", 12.0)  # replaced: the old 5.0 must not fire
    d.cancel("c")
    assert d.next() == 10.0 and len(d) == 2 and "c" not in d
    assert d.pop_due(9.9) is None
    assert d.pop_due(20.0) == "a"
    assert d.pop_due(20.0) == "b"
    assert d.pop_due(20.0) is None and d.next() is None


def test_ties_come_out_in_the_order_they_were_set() -> None:
    d = Deadlines()
    for key in ("z", "y", "x"):
        d.set(key, 1.0)
    assert [d.pop_due(1.0) for _ in range(3)] == ["z", "y", "x"]


def test_get_reports_the_current_deadline() -> None:
    d = Deadlines()
    d.set(("agent", "a"), 3.0)
    assert d.get(("agent", "a")) == 3.0 and d.get(("agent", "b")) is None


def test_keys_set_after_a_mark_wait_for_the_next_round() -> None:
    d = Deadlines()
    d.set("a", 1.0)
    mark = d.mark()
    assert d.pop_due(5.0, mark) == "a"
    d.set("a", 2.0)  # re-armed while handling, already due
    assert d.pop_due(5.0, mark) is None
    assert d.next() == 2.0 and d.pop_due(5.0, d.mark()) == "a"
