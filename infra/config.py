"""The run's configuration: one YAML file, overridden by environment, overridden by the command line.

Every field is typed (pydantic). A wrong key, type or value becomes `ConfigError` with one line that
names the field and what would be valid; the CLI turns it into exit status 2.
"""
from __future__ import annotations

import difflib
import os
import secrets
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

ENV_PREFIX = "HARVESTER_E2E_"
SIMULATED_VERSIONS = ("v1.4.2", "v1.4.3", "v1.5.0-rc2", "v1.5.0", "v1.5.1", "v1.5.2", "master-head")


class ConfigError(ValueError):
    """A configuration problem, phrased as one line for a person."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SimulatedBackend(_Model):
    time_scale: float = Field(60.0, gt=0, description="simulated seconds per wall-clock second")
    nodes: int = Field(3, ge=1, le=7, description="nodes in the simulated cluster")
    startup_timeout_s: float = Field(60.0, gt=0, description="budget for the twin to start serving")


class NodeAccess(_Model):
    name: str
    host: str
    port: int = Field(22, ge=1, le=65535)
    user: str = "rancher"
    password: SecretStr | None = None
    key_file: Path | None = None


class ExistingBackend(_Model):
    kubeconfig: Path
    context: str | None = None
    nodes: list[NodeAccess] = []

    @field_validator("kubeconfig")
    @classmethod
    def _kubeconfig_exists(cls, value: Path) -> Path:
        value = value.expanduser()
        if not value.is_file():
            raise ValueError(f"no such file: {value}; give the path of the cluster's kubeconfig")
        return value


class LibvirtBackend(_Model):
    uri: str = "qemu:///system"
    nodes: int = Field(3, ge=1, le=7)
    vcpus: int = Field(8, ge=1)
    memory_gib: int = Field(32, ge=1)
    disk_gib: int = Field(250, ge=1)
    iso_url: str | None = None
    kernel_url: str | None = None


class Timeouts(_Model):
    """Named budgets, in minutes, for the waits steps make (chainsaw-style per-operation timeouts)."""

    api_wait_min: float = Field(5.0, gt=0, description="an object reaching a state")
    api_unavailable_min: float = Field(5.0, gt=0, description="riding through an unavailable API server")
    node_ready_min: float = Field(15.0, gt=0)


class RunConfig(_Model):
    backend: Literal["simulated", "libvirt", "existing"] = "simulated"
    harvester_version: str = Field("v1.4.2", description="the version the cluster runs (simulated: starts it)")
    run_id: str = Field(default_factory=lambda: f"e2e-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}")
    artifacts_dir: Path = Path("artifacts")
    keep_on_failure: bool = False
    simulated: SimulatedBackend = SimulatedBackend()
    existing: ExistingBackend | None = None
    libvirt: LibvirtBackend | None = None
    timeouts: Timeouts = Timeouts()

    @field_validator("run_id")
    @classmethod
    def _run_id_is_a_label_value(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?", value):
            raise ValueError("must be lower-case letters, digits and '-', at most 42 characters "
                             "(it becomes a label value and part of resource names)")
        return value

    @model_validator(mode="after")
    def _backend_has_its_section(self) -> "RunConfig":
        if self.backend == "simulated" and self.harvester_version not in SIMULATED_VERSIONS:
            raise ValueError(f"harvester_version {self.harvester_version!r} is not simulated; "
                             f"valid: {', '.join(SIMULATED_VERSIONS)}")
        if self.backend == "existing" and self.existing is None:
            raise ValueError("backend 'existing' needs an 'existing:' section with at least 'kubeconfig: PATH'")
        if self.backend == "libvirt" and self.libvirt is None:
            self.libvirt = LibvirtBackend()
        return self


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = RunConfig
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        annotation = field.annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        model = next((c for c in candidates if issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    location = tuple(first["loc"])
    dotted = ".".join(str(p) for p in location) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = _model_at(location[:-1])
        valid = _field_names(parent) if parent else []
        guess = difflib.get_close_matches(str(location[-1]), valid, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        line = f"{dotted}: unknown key{hint} valid keys here: {', '.join(valid)}"
    elif kind == "literal_error":
        expected = first.get("ctx", {}).get("expected", "")
        line = f"{dotted}: {first['input']!r} is not valid; expected {expected}"
    elif kind == "missing":
        line = f"{dotted}: required, but not given"
    else:
        message = first["msg"].removeprefix("Value error, ")
        line = f"{dotted}: {message} (got {first.get('input')!r})" if dotted != "(top level)" else message
    more = len(error.errors()) - 1
    return line + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """`HARVESTER_E2E_BACKEND=existing`, `HARVESTER_E2E_SIMULATED__TIME_SCALE=120` (`__` nests)."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
            _set_path(data, key[len(ENV_PREFIX):].lower().replace("__", "."), yaml.safe_load(value))
    return data


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | None = None, *, cli: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None) -> RunConfig:
    """File < environment < command line. Raises ConfigError with a one-line explanation."""
    environ = dict(os.environ if environ is None else environ)
    if path is None and environ.get(ENV_PREFIX + "CONFIG"):
        path = Path(environ[ENV_PREFIX + "CONFIG"])
    data: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"--config: no such file: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: must be a mapping of keys (backend, harvester_version, ...)")
        data = loaded
    data = _deep_merge(data, env_overrides(environ))
    for dotted, value in (cli or {}).items():
        if value is not None:
            _set_path(data, dotted, value)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def describe(config: RunConfig) -> dict[str, Any]:
    """The effective configuration for logs and reports: secrets stay masked."""
    return config.model_dump(mode="json")
