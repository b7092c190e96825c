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
