"""Waits for machines: a domain state, an SSH server's banner, an HTTPS API answering. Each has a Budget
and raises `WaitTimeout` with what it saw last and the node's console tail as evidence."""
from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

from infra.waits.budget import Budget, WaitTimeout

T = TypeVar("T")


class _NotYet(Exception):
    """The awaited condition does not hold yet (never escapes this module)."""


def poll_until(check: Callable[[], T | None], budget: Budget, awaited: str, *,
               evidence: Callable[[], dict[str, Any]] | None = None, interval_s: float = 0.5) -> T:
    """Call `check` until it returns something other than None (or False), within `budget`.

    `check` may raise `OSError` for a transient "not reachable yet"; anything else propagates at once.
    """
    last_seen = ["nothing yet"]
    deadline = budget.start()

    def attempt() -> T:
        try:
            result = check()
        except OSError as exc:
            last_seen[0] = f"{type(exc).__name__}: {exc}"
            raise _NotYet() from exc
        if result is None or result is False:
            last_seen[0] = "condition not met"
            raise _NotYet()
        return result

    try:
        return tenacity.Retrying(retry=tenacity.retry_if_exception_type(_NotYet),
                                 wait=tenacity.wait_exponential(multiplier=0.1, max=interval_s * 4),
                                 stop=tenacity.stop_after_delay(budget.seconds), reraise=True)(attempt)
    except _NotYet:
        raise WaitTimeout(budget, awaited, deadline.elapsed, last_seen[0],
                          evidence=evidence() if evidence else {}) from None


def ssh_banner(host: str, port: int, timeout_s: float = 5.0) -> str | None:
    """The SSH server's identification line, or None while nothing that speaks SSH answers."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        data = sock.recv(256)
    line = data.decode("latin-1", "replace").splitlines()[0] if data else ""
    return line if line.startswith("SSH-") else None


def wait_for_ssh(host: str, port: int, budget: Budget, *,
                 evidence: Callable[[], dict[str, Any]] | None = None) -> str:
    return poll_until(lambda: ssh_banner(host, port), budget, f"an SSH server at {host}:{port}",
                      evidence=evidence, interval_s=1.0)


def api_answers(url: str, timeout_s: float = 5.0) -> int | None:
    """The HTTP status a Kubernetes API at `url` answers with (401/403 count: it is serving).

    Only liveness is probed here, before the harness has the cluster's CA (it comes with the kubeconfig),
    so the certificate is not verified and nothing is sent but a GET of /version.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/version", timeout=timeout_s, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code if exc.code < 500 else None


def wait_for_api(url: str, budget: Budget, *, evidence: Callable[[], dict[str, Any]] | None = None) -> int:
    return poll_until(lambda: api_answers(url), budget, f"the Kubernetes API at {url}", evidence=evidence,
                      interval_s=5.0)
