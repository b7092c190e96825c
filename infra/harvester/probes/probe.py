"""The probes: what a user would try once a second while the upgrade runs, and whether it answered in time.

A probe is a name, an interval and a per-attempt timeout around one `attempt(timeout_s)` that returns on
success and raises on failure. The kinds differ only in what they try:

- `ApiProbe`: GET a path of the Kubernetes API (default ``/readyz``) on a *new* connection every attempt;
- `TcpProbe`: a TCP connect to a host and port (a LoadBalancer's address);
- `SshProbe`: a trivial command (``true``) over SSH into a VM, through any callable.
"""
from __future__ import annotations

import abc
import socket
from typing import TYPE_CHECKING, Callable

from infra.https import Endpoint
from infra.waits.budget import Budget, WaitTimeout

if TYPE_CHECKING:
    from infra.cluster import Cluster
    from infra.ssh import SshNode

Attempt = Callable[[float], object]
"""One try, given the per-attempt timeout in seconds: returns (anything) on success, raises on failure."""

DEFAULT_INTERVAL_S = 1.0
DEFAULT_TIMEOUT_S = 2.0


class ProbeFailed(Exception):
    """An attempt failed; the message says how (for failures whose own exception would say it less plainly)."""


class Probe(abc.ABC):
    """One target, tried every `interval_s`; an attempt that has not answered within `timeout_s` failed.

    `attempt` should honour the timeout it is given, but need not: the ProbeSet stops waiting for it at the
    timeout anyway (see `ProbeSet`), so a call that hangs in a TLS handshake still yields a failed sample on time.
    """

    kind = "probe"

    def __init__(self, name: str, *, interval_s: float = DEFAULT_INTERVAL_S,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not name.strip():
            raise ValueError("a probe needs a name (it labels the report's rows and the Allure parameters)")
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError(f"probe {name}: interval_s and timeout_s must be positive, "
                             f"got {interval_s} and {timeout_s}")
        self.name = name
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)

    @abc.abstractmethod
    def attempt(self, timeout_s: float) -> None:
        """Try the target once; return on success, raise (anything) on failure."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, every {self.interval_s:g} s, timeout {self.timeout_s:g} s)"


class CallableProbe(Probe):
    """A probe around any `Attempt` callable (the kinds below are this with a ready-made callable)."""

    def __init__(self, name: str, attempt: Attempt, *, interval_s: float = DEFAULT_INTERVAL_S,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(name, interval_s=interval_s, timeout_s=timeout_s)
        self._attempt = attempt

    def attempt(self, timeout_s: float) -> None:
        self._attempt(timeout_s)


class ApiProbe(CallableProbe):
    """The Kubernetes API answers: success is a 2xx answer within the timeout (a 503 is an outage too).

    Give it any callable, or build it from an `Endpoint` or a `Cluster`. Why not through the cluster's `Kube`
    client: that client rides through an unavailable API server (it retries for minutes, by design, so steps
    survive a restart) and keeps its connections alive, so a 40 s outage would show as one slow success.
    `for_endpoint` sends every attempt through `requests.request`, which opens a throwaway session: a new
    TCP and TLS connection each time, as a new `kubectl` call makes. That matters: a server whose listener is
    closed (an RKE2 restart) still serves connections it had already accepted, so a kept-alive connection
    would see no outage at all.
    """

    kind = "api"

    def __init__(self, get: Attempt, *, name: str = "api", interval_s: float = DEFAULT_INTERVAL_S,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(name, get, interval_s=interval_s, timeout_s=timeout_s)

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint, path: str = "/readyz", *, name: str = "api",
                     interval_s: float = DEFAULT_INTERVAL_S, timeout_s: float = DEFAULT_TIMEOUT_S) -> "ApiProbe":
        def get(timeout: float) -> None:
            # Endpoint.request: one request, no retry, an error status raises (EndpointError).
            endpoint.request("GET", path, timeout_s=timeout)

        return cls(get, name=name, interval_s=interval_s, timeout_s=timeout_s)

    @classmethod
    def for_cluster(cls, cluster: "Cluster", path: str = "/readyz", *, name: str = "api",
                    interval_s: float = DEFAULT_INTERVAL_S, timeout_s: float = DEFAULT_TIMEOUT_S) -> "ApiProbe":
        """The cluster's API server with its kubeconfig's credentials (not its `Kube` client: see the class)."""
        return cls.for_endpoint(cluster.api_endpoint(), path, name=name, interval_s=interval_s, timeout_s=timeout_s)


class TcpProbe(Probe):
    """A TCP connect to `host:port` within the timeout (a LoadBalancer's address: is anything listening?)."""

    kind = "tcp"

    def __init__(self, host: str, port: int, *, name: str | None = None, interval_s: float = DEFAULT_INTERVAL_S,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(name or f"tcp {host}:{port}", interval_s=interval_s, timeout_s=timeout_s)
        self.host = host
        self.port = int(port)

    @classmethod
    def for_load_balancer(cls, namespace: str, lb_name: str, address: str, port: int, *,
                          interval_s: float = DEFAULT_INTERVAL_S, timeout_s: float = DEFAULT_TIMEOUT_S) -> "TcpProbe":
        """Named as the report lists it: ``lb default/lb-1 10.0.0.5:80``."""
        return cls(address, port, name=f"lb {namespace}/{lb_name} {address}:{port}", interval_s=interval_s,
                   timeout_s=timeout_s)

    def attempt(self, timeout_s: float) -> None:
        # A connect and nothing else: the listener (or the LB's forwarding) is what is probed, not a protocol.
        socket.create_connection((self.host, self.port), timeout=timeout_s).close()


class SshProbe(CallableProbe):
    """A trivial command over SSH within the timeout (can a user still log in to the VM and run something?).

    It takes a callable so that it works with any session type; `for_session` builds one for the harness's
    `SshNode`.
    """

    kind = "ssh"

    def __init__(self, run: Attempt, *, name: str, interval_s: float = DEFAULT_INTERVAL_S,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(name, run, interval_s=interval_s, timeout_s=timeout_s)

    @classmethod
    def for_session(cls, session: "SshNode", *, name: str, command: str = "true", fresh_connection: bool = True,
                    interval_s: float = DEFAULT_INTERVAL_S, timeout_s: float = DEFAULT_TIMEOUT_S) -> "SshProbe":
        """Run `command` (checked: a non-zero exit is a failure) on `session`.

        Give the probe a session of its own, not one the steps use (`Cluster.ssh()` hands out shared ones):
        with `fresh_connection` (the default) the session is closed after every attempt, so each attempt
        connects and logs in anew, which is what a user's `ssh` does; a kept transport can outlive a restart
        of the guest's sshd, or hang on a peer that vanished until its keepalive notices.
        """
        def run(timeout: float) -> None:
            try:
                # A zero budget: exactly one try. SshNode otherwise rebuilds a dropped transport and retries
                # (backing off), which is right for a step's command but would blur when this sample failed.
                session.run(command, timeout=timeout, check=True, budget=Budget(f"probe {name}: one try", 0.0))
            except WaitTimeout as exc:       # its sentence is about the zero budget; what failed is last_seen
                raise ProbeFailed(exc.last_seen) from None
            finally:
                if fresh_connection:
                    session.close()

        return cls(run, name=name, interval_s=interval_s, timeout_s=timeout_s)
