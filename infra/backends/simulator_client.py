"""The one client for the simulated cluster's own endpoints (`/simulator/v1/...`): what no real cluster has.

It serves exactly two things: fault injection (`Cluster.faults`) and simulated node power (the libvirt
test-driver bridge in `sim_power`). Every other fact the harness needs comes from where a real
cluster offers it. Requests go over the same HTTPS, CA and credentials as the Kubernetes API.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra.https import Endpoint, EndpointError


class SimulatorRefused(RuntimeError):
    """The simulator refused a request; `message` is its Status message."""

    def __init__(self, text: str, status: int, message: str) -> None:
        super().__init__(text)
        self.status = status
        self.message = message


class SimulatorClient:
    def __init__(self, kubeconfig: Path, context: str | None = None) -> None:
        self.endpoint = Endpoint.from_kubeconfig(kubeconfig, context)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self.endpoint.request(method, path, json_body=body, timeout_s=10)
        except EndpointError as exc:
            try:
                message = str(json.loads(exc.body).get("message", exc.body))
            except (ValueError, AttributeError):
                message = exc.body
            raise SimulatorRefused(str(exc), exc.status, message) from None
        return dict(response.json())

    def info(self) -> dict[str, Any]:
        """What the simulator says of itself: version, time scale, requests served, `/simulator/v1` calls made to it."""
        return self._call("GET", "/simulator/v1/info")

    # ---- fault injection (FaultInjector) -------------------------------------------------------
    def inject(self, **spec: Any) -> dict[str, Any]:
        """`errorBurst: {count, code}` (5xx or 429), `unavailableSeconds`, `refuseConnectionsSeconds`,
        `dropWatches`, `compact`, `sshDrop: {count}` (SSH commands cut off mid-command), `slowPhases:
        {factor, seconds}` (simulated durations stretched for a while); several may go in one call."""
        return self._call("POST", "/simulator/v1/faults", spec)

    def fault_state(self) -> dict[str, Any]:
        """What is still armed (`armed`) and how often each fault has fired so far (`fired`)."""
        return self._call("GET", "/simulator/v1/faults")

    # ---- simulated node power ------------------------------------------------------------------
    def power(self, node: str, action: str) -> dict[str, Any]:
        return self._call("POST", f"/simulator/v1/nodes/{node}/power", {"action": action})

    def node_power_states(self) -> dict[str, str]:
        listing = self._call("GET", "/simulator/v1/nodes")
        return {str(n.get("name")): str(n.get("power")) for n in listing.get("items", [])}
