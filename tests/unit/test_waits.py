"""Retry policies retry transient faults only; budgets say what ran out."""
from __future__ import annotations

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from infra.waits import Budget, WaitTimeout, is_api_unavailable, is_conflict, retry_api_unavailable, retry_conflict


def test_transient_faults_are_retried_until_they_pass() -> None:
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise urllib3.exceptions.NewConnectionError(None, "connection refused")  # type: ignore[arg-type]
        return "ok"

    assert retry_api_unavailable(10)(flaky) == "ok" and calls["n"] == 3


def test_an_assertion_is_never_retried() -> None:
    calls = {"n": 0}

    def failing() -> None:
        calls["n"] += 1
        raise AssertionError("the product is wrong")

    with pytest.raises(AssertionError):
        retry_api_unavailable(10)(failing)
    assert calls["n"] == 1


def test_classification_of_api_errors() -> None:
    assert is_api_unavailable(ApiException(status=503))
    assert not is_api_unavailable(ApiException(status=404))
    assert not is_api_unavailable(ApiException(status=409))
    conflict = ApiException(status=409)
    conflict.body = '{"reason": "Conflict"}'
    assert is_conflict(conflict)
    exists = ApiException(status=409)
    exists.body = '{"reason": "AlreadyExists"}'
    assert not is_conflict(exists)


def test_conflicts_are_retried_a_bounded_number_of_times() -> None:
    calls = {"n": 0}

    def always_conflicts() -> None:
        calls["n"] += 1
        raise ApiException(status=409)

    with pytest.raises(ApiException):
        retry_conflict(attempts=3)(always_conflicts)
    assert calls["n"] == 3


def test_a_timeout_names_budget_awaited_and_last_seen() -> None:
    text = str(WaitTimeout(Budget.minutes("nodes Ready", 15), "every node to be Ready", 901.0, "not Ready: n1"))
    assert text == ("budget 'nodes Ready' (15m00s) ran out after 15m01s waiting for every node to be Ready; "
                    "last seen: not Ready: n1")
