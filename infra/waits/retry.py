"""tenacity policies, one per failure class. Only transient faults are retried, never an assertion.

- api_unavailable: the API server refused, reset or answered 5xx/429 (RKE2 restarting during an upgrade);
- conflict: 409 on a write (someone else updated the object first);
- ssh_transport_dropped: an SSH connection refused, reset, timed out or closed under us (a node rebooting).
Each attempt is logged, so a report shows what was ridden through.
"""
from __future__ import annotations

import logging
import socket
from typing import Any, Callable, TypeVar

import paramiko
import tenacity
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError

log = logging.getLogger("harvester_e2e.retry")
T = TypeVar("T")

_TRANSIENT_HTTP = {429, 500, 502, 503, 504}


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _is_api_error(exc: BaseException) -> bool:
    """The typed client raises ApiException; the dynamic client its own DynamicApiError subclasses."""
    return isinstance(exc, (ApiException, DynamicApiError))


def is_api_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, AssertionError):
        return False
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, socket.timeout, TimeoutError)):
        return True
    if _is_api_error(exc) and "denied the request" in str(getattr(exc, "body", "") or ""):
        return False        # an admission webhook's denial is an answer (Harvester's come as 500s)
    return _is_api_error(exc) and _status_of(exc) in _TRANSIENT_HTTP


def is_conflict(exc: BaseException) -> bool:
    return _is_api_error(exc) and _status_of(exc) == 409 and \
        "AlreadyExists" not in str(getattr(exc, "body", "") or "")


def is_ssh_transport_dropped(exc: BaseException) -> bool:
    """Transient SSH trouble; never a refused key or password, or a host key that does not match."""
    if isinstance(exc, (paramiko.AuthenticationException, paramiko.BadHostKeyException, AssertionError)):
        return False
    return isinstance(exc, (ConnectionError, paramiko.ssh_exception.NoValidConnectionsError, socket.timeout,
                            TimeoutError, EOFError, paramiko.SSHException))


def _log_attempt(policy: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: attempt %d failed (%s: %s); retrying in %.1fs", policy, state.attempt_number,
                    type(exc).__name__, (str(exc).splitlines() or [""])[0][:200] if exc else "",
                    state.next_action.sleep if state.next_action else 0.0)
    return before_sleep


class _StopWhenGone(tenacity.stop.stop_base):
    """Stop retrying once the server says it will not come back."""

    def __init__(self, gone: Callable[[], str | None]) -> None:
        self.gone = gone

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.gone() is not None


def retry_api_unavailable(budget_seconds: float,
                          gone: Callable[[], str | None] | None = None) -> tenacity.Retrying:
    """`gone()` may say the server will not come back (a simulated cluster's process exited): stop then."""
    stop: tenacity.stop.stop_base = tenacity.stop_after_delay(budget_seconds)
    if gone is not None:
        stop = stop | _StopWhenGone(gone)
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_api_unavailable),
        wait=_api_backoff(),
        stop=stop,
        before_sleep=_log_attempt("api_unavailable"),
        reraise=True,
    )


def _api_backoff() -> tenacity.wait.wait_base:
    return tenacity.wait_exponential(multiplier=0.2, max=5.0)


def retry_api_unavailable_result(budget_seconds: float, unavailable: Callable[[Any], bool],
                                 describe: Callable[[Any], str]) -> tenacity.Retrying:
    """The api_unavailable policy (same back-off, same budget) for a call that reports the trouble in its
    result instead of raising (a kubectl run): retried while `unavailable(result)`; the last result is
    returned either way."""
    def before_sleep(state: tenacity.RetryCallState) -> None:
        result = state.outcome.result() if state.outcome else None
        log.warning("api_unavailable: %s: attempt %d failed; retrying in %.1fs", describe(result) if result else "",
                    state.attempt_number, state.next_action.sleep if state.next_action else 0.0)

    return tenacity.Retrying(retry=tenacity.retry_if_result(unavailable), wait=_api_backoff(),
                             stop=tenacity.stop_after_delay(budget_seconds), before_sleep=before_sleep,
                             retry_error_callback=lambda state: state.outcome.result() if state.outcome else None)


def transport_retries(total: int = 8) -> urllib3.Retry:
    """Per request, at the transport: a GET or HEAD that meets a refused connection or a 429/5xx is sent
    again (with backoff, honouring Retry-After), so one fault costs one request, never a whole operation
    (discovery is dozens of requests). Writes are never re-sent here: a webhook denial comes as a 500, and
    a write's outcome is decided by the caller's own policy."""
    return urllib3.Retry(total=total, connect=total, read=2, status=total, backoff_factor=0.1, backoff_max=2.0,
                         allowed_methods=frozenset({"GET", "HEAD"}), status_forcelist=sorted(_TRANSIENT_HTTP),
                         respect_retry_after_header=True, raise_on_status=False)


def retry_conflict(attempts: int = 6) -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_conflict),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=1.0),
        stop=tenacity.stop_after_attempt(attempts),
        before_sleep=_log_attempt("conflict"),
        reraise=True,
    )


def retry_ssh_transport_dropped(budget_seconds: float) -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_ssh_transport_dropped),
        wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
        stop=tenacity.stop_after_delay(budget_seconds),
        before_sleep=_log_attempt("ssh_transport_dropped"),
        reraise=True,
    )


RETRY_POLICIES: dict[str, Callable[..., tenacity.Retrying]] = {
    "api_unavailable": retry_api_unavailable,
    "conflict": retry_conflict,
    "ssh_transport_dropped": retry_ssh_transport_dropped,
}


def call_with(policy: tenacity.Retrying, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return policy(fn, *args, **kwargs)
