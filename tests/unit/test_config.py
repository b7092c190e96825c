"""Configuration: file < environment < command line; a wrong key, type or value is one clear line."""
from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import SIMULATED_VERSIONS, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_give_a_simulated_run() -> None:
    config = load_config(None, environ={})
    assert config.backend == "simulated" and config.harvester_version == "v1.4.2"
    assert config.run_id.startswith("e2e-")


def test_file_then_environment_then_cli(tmp_path: Path) -> None:
    path = write(tmp_path, "harvester_version: v1.5.0\nsimulated:\n  time_scale: 10\n")
    assert load_config(path, environ={}).simulated.time_scale == 10
    env = {"HARVESTER_E2E_SIMULATED__TIME_SCALE": "120", "HARVESTER_E2E_HARVESTER_VERSION": "v1.5.1"}
    config = load_config(path, environ=env)
    assert (config.simulated.time_scale, config.harvester_version) == (120, "v1.5.1")
    config = load_config(path, environ=env, cli={"harvester_version": "master-ce188325-head"})
    assert config.harvester_version == "master-ce188325-head"


@pytest.mark.parametrize("text, expected", [
    ("backnd: simulated\n", "backnd: unknown key; did you mean 'backend'?"),
    ("backend: kvm\n", "backend: 'kvm' is not valid; expected 'simulated', 'libvirt' or 'existing'"),
    ("simulated:\n  time_scale: fast\n", "simulated.time_scale:"),
    ("simulated:\n  nodes: 0\n", "simulated.nodes:"),
    ("harvester_version: v9.9.9\n", "harvester_version 'v9.9.9' is not simulated; valid: v1.4.2"),
    ("backend: existing\n", "backend 'existing' needs an 'existing:' section"),
    ("existing:\n  kubeconfig: /no/such/file\nbackend: existing\n", "existing.kubeconfig: no such file"),
    ("run_id: Has Spaces\n", "run_id: must be lower-case"),
])
def test_a_wrong_config_names_the_field_and_what_is_valid(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    message = str(caught.value)
    assert expected in message, message
    assert "\n" not in message, "one line"


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 2 is not valid YAML"):
        load_config(write(tmp_path, "backend: [\n"), environ={})
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), environ={})
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml", environ={})


LAB_KUBECONFIG = """apiVersion: v1
kind: Config
current-context: lab
clusters:
- {name: other, cluster: {server: "https://127.0.0.1:1"}}
- {name: harvester, cluster: {server: "https://127.0.0.1:6443"}}
users:
- {name: admin, user: {token: tok-1}}
contexts:
- {name: other, context: {cluster: other, user: admin}}
- {name: lab, context: {cluster: harvester, user: admin}}
"""


def test_secrets_in_the_inventory_are_masked(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(LAB_KUBECONFIG)
    path = write(tmp_path, f"backend: existing\nexisting:\n  kubeconfig: {kubeconfig}\n  nodes:\n"
                           "  - {name: n0, host: 127.0.0.1, password: hunter2}\n")
    from infra.config import describe
    assert "hunter2" not in str(describe(load_config(path, environ={})))


def test_the_simulated_versions_are_the_simulators_versions() -> None:
    from infra.simulator.harvester.versions import version_names
    assert sorted(SIMULATED_VERSIONS) == sorted(version_names())


def test_an_existing_context_must_be_in_the_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(LAB_KUBECONFIG)
    path = write(tmp_path, f"backend: existing\nexisting:\n  kubeconfig: {kubeconfig}\n  context: labb\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == f"existing.context: {kubeconfig}: no context 'labb' (contexts: lab, other)"
    path = write(tmp_path, f"backend: existing\nexisting:\n  kubeconfig: {kubeconfig}\n  context: other\n")
    assert load_config(path, environ={}).existing.context == "other"


def test_a_clusters_token_is_registered_for_redaction(tmp_path: Path) -> None:
    from infra.cluster import Cluster
    from infra.report.redact import redact_text

    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("users:\n- name: admin\n  user:\n    token: tok-9f8e7d6c5b4a\n")
    Cluster(name="c", backend="existing", kubeconfig=kubeconfig, harvester_version="v1.4.2", run_id="r")
    assert "tok-9f8e7d6c5b4a" not in redact_text("GET /api with tok-9f8e7d6c5b4a failed")
