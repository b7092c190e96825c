"""The cleanup stack runs last-in-first-out, survives a failing undo, and can keep things on failure."""
from __future__ import annotations

from infra.cleanup import CleanupStack


def test_undo_runs_newest_first_and_a_failure_does_not_stop_the_rest() -> None:
    order: list[str] = []
    stack = CleanupStack()
    stack.defer("first", lambda: order.append("first"))
    stack.defer("broken", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    stack.defer("last", lambda: order.append("last"))
    failures = stack.run()
    assert order == ["last", "first"]
    assert failures == ["broken: boom"] and len(stack) == 0


def test_keep_leaves_everything_in_place() -> None:
    ran: list[str] = []
    stack = CleanupStack(keep=True)
    stack.defer("x", lambda: ran.append("x"))
    assert stack.run() == [] and ran == []


def test_an_interrupt_during_the_cleanup_does_not_cut_it_short() -> None:
    """Ctrl-C or SIGTERM while an undo runs (found by `harvester-e2e chaos --interrupts`: a precheck run
    interrupted as its cleanup began left its fake Machine): that undo runs again, the others still run,
    and the interrupt goes on afterwards."""
    import pytest

    order: list[str] = []
    interrupts = iter([True, False])

    def interrupted_once() -> None:
        order.append("second")
        if next(interrupts):
            raise KeyboardInterrupt("signal 15")

    stack = CleanupStack()
    stack.defer("first", lambda: order.append("first"))
    stack.defer("second", interrupted_once)
    stack.defer("third", lambda: order.append("third"))
    with pytest.raises(KeyboardInterrupt):
        stack.run()
    assert order == ["third", "second", "second", "first"] and len(stack) == 0


def test_an_interrupt_while_evidence_is_collected_skips_the_evidence_not_the_undos() -> None:
    import pytest

    ran: list[str] = []
    stack = CleanupStack()
    stack.defer("undo", lambda: ran.append("undo"))
    stack.on_failure("evidence", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    stack.on_failure("more evidence", lambda: ran.append("more evidence"))
    with pytest.raises(KeyboardInterrupt):
        stack.run(failed=True)
    assert ran == ["undo"]
