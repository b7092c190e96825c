"""The one HTTPS client for what is not the Kubernetes API: Harvester's API at the VIP, Rancher's API,
release servers (ISOs), the simulated cluster's own endpoints.

An `Endpoint` is a base URL, how to trust its certificate (a CA file, the system's trust, or off for a
lab's self-signed host when the configuration says so) and how to authenticate (a bearer token, or a
client certificate and key). Credentials are registered for redaction and never appear in errors.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import requests
import yaml
from pydantic import SecretStr

from infra.report.redact import register_secret
from infra.scratch import scratch_file


class EndpointError(RuntimeError):
    """An HTTPS endpoint answered with an error status, or could not be reached."""

    def __init__(self, message: str, status: int = 0, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _private_file(prefix: str, data: bytes) -> Path:
    return scratch_file(prefix.rstrip("-"), data)           # 0600, removed when the process ends


@dataclass(frozen=True)
class Endpoint:
    url: str
    token: SecretStr | None = field(default=None, repr=False)
    ca_file: Path | None = None                      # None: the system's trust store
    verify: bool = True                              # False only where the configuration says so
    client_cert: tuple[Path, Path] | None = field(default=None, repr=False)    # (certificate, key) files
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.token is not None:
            register_secret(self.token.get_secret_value())

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, context: str | None = None, *, url: str | None = None) -> "Endpoint":
        """The API server a kubeconfig context names, with its credentials (token or client certificate)."""
        cluster, user = kubeconfig_context(kubeconfig, context)
        ca_file = None
        if cluster.get("certificate-authority-data"):
            ca_file = _private_file("harvester-e2e-ca-", base64.b64decode(cluster["certificate-authority-data"]))
        elif cluster.get("certificate-authority"):
            ca_file = Path(cluster["certificate-authority"]).expanduser()
        client_cert = None
        if user.get("client-certificate-data") and user.get("client-key-data"):
            register_secret(user["client-key-data"])
            client_cert = (_private_file("harvester-e2e-cert-", base64.b64decode(user["client-certificate-data"])),
                           _private_file("harvester-e2e-key-", base64.b64decode(user["client-key-data"])))
        elif user.get("client-certificate") and user.get("client-key"):
            client_cert = (Path(user["client-certificate"]).expanduser(), Path(user["client-key"]).expanduser())
        token = SecretStr(user["token"]) if user.get("token") else None
        return cls(url or str(cluster["server"]), token=token, ca_file=ca_file,
                   verify=not cluster.get("insecure-skip-tls-verify", False), client_cert=client_cert)

    def with_url(self, url: str) -> "Endpoint":
        return Endpoint(url, self.token, self.ca_file, self.verify, self.client_cert, self.timeout_s)

    def _verify(self) -> bool | str:
        if not self.verify:
            return False
        return str(self.ca_file) if self.ca_file is not None else True

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.get_secret_value()}"
        headers.update(extra or {})
        return headers

    def _cert(self) -> tuple[str, str] | None:
        return (str(self.client_cert[0]), str(self.client_cert[1])) if self.client_cert else None

    def request(self, method: str, path: str, *, json_body: Any = None, headers: dict[str, str] | None = None,
                stream: bool = False, timeout_s: float | None = None) -> requests.Response:
        """One request (no retry: callers choose their retry policy); an error status raises EndpointError."""
        url = path if path.startswith("https://") or path.startswith("http://") else self.url.rstrip("/") + path
        try:
            response = requests.request(method, url, json=json_body, headers=self._headers(headers),
                                        verify=self._verify(), stream=stream, timeout=timeout_s or self.timeout_s,
                                        cert=self._cert())
        except requests.RequestException as exc:
            raise EndpointError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            body = response.text[:2000]
            raise EndpointError(f"{method} {url}: HTTP {response.status_code}: {_message_of(body)}",
                                response.status_code, body)
        return response

    def get_json(self, path: str) -> Any:
        return self.request("GET", path).json()

    def post_json(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json_body=body).json()

    def get_bytes(self, path: str, *, timeout_s: float | None = None) -> bytes:
        return self.request("GET", path, timeout_s=timeout_s).content

    def get_range(self, path: str, start: int, length: int) -> bytes:
        """`length` bytes at `start` (an HTTP Range request, as release servers answer them)."""
        response = self.request("GET", path, headers={"Range": f"bytes={start}-{start + length - 1}"})
        if response.status_code != 206:       # a server ignoring Range sends the whole file: cut it
            return response.content[start:start + length]
        return response.content

    def size_of(self, path: str) -> int:
        response = self.request("HEAD", path)
        return int(response.headers.get("Content-Length", "0"))

    def iter_bytes(self, path: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        with self.request("GET", path, stream=True) as response:
            yield from response.iter_content(chunk)


def _message_of(body: str) -> str:
    try:
        import json

        data = json.loads(body)
        return str(data.get("message") or data)
    except (ValueError, AttributeError):
        return body.strip()[:300] or "(empty body)"


def kubeconfig_context(kubeconfig: Path, context: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cluster and user entries of `context` (default: the kubeconfig's current context)."""
    config = yaml.safe_load(Path(kubeconfig).read_text()) or {}
    contexts = {c["name"]: c.get("context") or {} for c in config.get("contexts") or []}
    name = context or config.get("current-context")
    if name is None and len(contexts) == 1:
        name = next(iter(contexts))
    if name not in contexts:
        known = ", ".join(sorted(contexts)) or "none"
        raise ValueError(f"{kubeconfig}: no context {name!r} (contexts: {known})")
    chosen = contexts[name]
    clusters = {c["name"]: c.get("cluster") or {} for c in config.get("clusters") or []}
    users = {u["name"]: u.get("user") or {} for u in config.get("users") or []}
    if chosen.get("cluster") not in clusters:
        raise ValueError(f"{kubeconfig}: context {name!r} names cluster {chosen.get('cluster')!r}, which is not there")
    return clusters[chosen["cluster"]], users.get(chosen.get("user", ""), {})
