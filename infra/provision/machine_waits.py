"""Waits for machines: a domain state, an SSH server's banner, an HTTPS API answering. Each has a Budget
and raises `WaitTimeout` with what it saw last and the node's console tail as evidence."""
from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from infra.waits.budget import Budget, WaitTimeout
from infra.waits.poll import poll_until


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
