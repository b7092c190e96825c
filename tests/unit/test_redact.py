"""Secrets never reach logs or report attachments."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
import yaml

from infra.report.redact import (
    REDACTED,
    RedactingFilter,
    Redactor,
    install_log_redaction,
    register_secret,
    uninstall_log_redaction,
)

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: LS0tQ0EtREFUQQ==
    server: https://192.168.0.131:6443
  name: local
users:
- name: local
  user:
    token: kubeconfig-user-abcd:0123456789abcdef
    client-certificate-data: LS0tQ0VSVA==
    client-key-data: LS0tS0VZLURBVEE=
"""

PEM_KEY = """\
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDmQ0zP5o1mGz9h5oHbnH1N8Tq0dx5JZVvQn4q2m3H8vwAAAJg=
-----END OPENSSH PRIVATE KEY-----
"""


@pytest.fixture
def redactor() -> Redactor:
    return Redactor()


def test_kubeconfig_token_and_client_key_are_redacted_but_structure_stays(redactor: Redactor) -> None:
    out = redactor.redact_text(KUBECONFIG)

    assert "0123456789abcdef" not in out
    assert "LS0tS0VZLURBVEE=" not in out
    assert "LS0tQ0VSVA==" in out  # certificates are public
    assert "https://192.168.0.131:6443" in out
    assert yaml.safe_load(out)["users"][0]["user"]["token"] == REDACTED


def test_kubeconfig_as_data_is_redacted_by_key(redactor: Redactor) -> None:
    out = redactor.redact_data(yaml.safe_load(KUBECONFIG))

    user = out["users"][0]["user"]
    assert user["token"] == REDACTED
    assert user["client-key-data"] == REDACTED
    assert user["client-certificate-data"] == "LS0tQ0VSVA=="


@pytest.mark.parametrize(
    "line",
    [
        "GET /v1/harvester/upgrades Authorization: Bearer eyJhbGciOi.JSUzI1.NiJ9 -> 200",
        "headers={'Authorization': 'Bearer eyJhbGciOi.JSUzI1.NiJ9', 'Accept': '*/*'}",
        'curl -H "authorization: bearer eyJhbGciOi.JSUzI1.NiJ9" https://vip/v1',
    ],
)
def test_bearer_header_in_a_log_line(redactor: Redactor, line: str) -> None:
    out = redactor.redact_text(line)

    assert "eyJhbGciOi" not in out
    assert REDACTED in out
    before, after = line.split("eyJhbGciOi.JSUzI1.NiJ9")
    assert out == f"{before}{REDACTED}{after}"  # only the credential goes


def test_pem_private_key_block_is_redacted(redactor: Redactor) -> None:
    out = redactor.redact_text(f"writing key to /root/.ssh/id_ed25519\n{PEM_KEY}done\n")

    assert "b3BlbnNzaC1rZXkt" not in out
    assert "PRIVATE KEY" not in out
    assert out.startswith("writing key to /root/.ssh/id_ed25519\n")
    assert out.endswith("done\n")


def test_truncated_pem_block_without_end_line_is_still_redacted(redactor: Redactor) -> None:
    out = redactor.redact_text("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn")

    assert "MIIEpAIBAAKCAQEA" not in out


def test_secret_object_keeps_keys_and_hides_values(redactor: Redactor) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "harvester-upgrade-repo", "namespace": "harvester-system"},
        "type": "Opaque",
        "data": {"username": "YWRtaW4=", "ca.crt": "LS0tLS1CRUdJTg=="},
        "stringData": {"config.yaml": "anything: here"},
    }

    out = redactor.redact_data(secret)

    assert out["data"] == {"username": REDACTED, "ca.crt": REDACTED}
    assert out["stringData"] == {"config.yaml": REDACTED}
    assert out["metadata"] == secret["metadata"]
    assert secret["data"]["username"] == "YWRtaW4="  # the input is not modified


def test_secret_list_items_without_kind_are_redacted(redactor: Redactor) -> None:
    # The API server omits kind on list items.
    out = redactor.redact_data({"kind": "SecretList", "items": [{"metadata": {"name": "a"}, "data": {"k": "dg=="}}]})

    assert out["items"][0]["data"] == {"k": REDACTED}


def test_secret_manifest_as_text_stays_valid_yaml(redactor: Redactor) -> None:
    text = yaml.safe_dump_all([
        {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"plain": "visible"}},
        {"kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg==", "user": "cm9vdA=="}},
    ])

    docs = list(yaml.safe_load_all(redactor.redact_text(text)))

    assert docs[0]["data"] == {"plain": "visible"}
    assert docs[1]["data"] == {"password": REDACTED, "user": REDACTED}


def test_registered_password_inside_a_larger_string(redactor: Redactor) -> None:
    redactor.register("Harv3ster!pw")

    out = redactor.redact_text("ssh rancher@10.0.2.15 -o Password=Harv3ster!pw; echo Harv3ster!pw | sudo -S true")

    assert "Harv3ster!pw" not in out
    assert out.count(REDACTED) == 2
    assert out.startswith("ssh rancher@10.0.2.15")


def test_registered_secret_is_also_redacted_base64_encoded(redactor: Redactor) -> None:
    redactor.register("Harv3ster!pw")
    encoded = base64.b64encode(b"Harv3ster!pw").decode()

    assert encoded not in redactor.redact_text(f"value: {encoded}")


def test_registered_multiline_private_key_is_redacted_when_json_escaped(redactor: Redactor) -> None:
    redactor.register(PEM_KEY)
    logged = json.dumps({"ssh": {"key": PEM_KEY}})  # newlines become \\n

    assert "b3BlbnNzaC1rZXkt" not in redactor.redact_text(logged)


def test_nested_dicts_and_lists(redactor: Redactor) -> None:
    redactor.register("api-token-xyz")
    data = {
        "backend": {"name": "harvester", "auth": {"password": "p4ss", "passwd": "p4ss", "user": "admin"}},
        "nodes": [
            {"name": "node-1", "ssh": {"privateKey": "KEYTEXT", "private-key": "KEYTEXT", "port": 22}},
            {"name": "node-2", "note": "uses api-token-xyz for the API"},
        ],
        "secretName": "keep-this-reference",
        "clientSecret": "oauth-secret",
        "cloudInit": {"lock_passwd": False, "password": ""},
    }

    out = redactor.redact_data(data)

    assert out["backend"]["auth"] == {"password": REDACTED, "passwd": REDACTED, "user": "admin"}
    assert out["nodes"][0]["ssh"] == {"privateKey": REDACTED, "private-key": REDACTED, "port": 22}
    assert out["nodes"][1]["note"] == f"uses {REDACTED} for the API"
    assert out["secretName"] == "keep-this-reference"
    assert out["clientSecret"] == REDACTED
    assert out["cloudInit"] == {"lock_passwd": False, "password": ""}  # nothing secret to hide


def test_token_key_value_forms_in_text(redactor: Redactor) -> None:
    text = '{"token": "abc def", "other": 1} url=https://h/v1?token=q1w2&x=1 secretName: keep'

    out = redactor.redact_text(text)

    assert "abc def" not in out and "q1w2" not in out
    assert '"other": 1' in out and "&x=1" in out and "secretName: keep" in out


def test_redaction_is_idempotent(redactor: Redactor) -> None:
    once = redactor.redact_text(KUBECONFIG + PEM_KEY)

    assert redactor.redact_text(once) == once


def test_log_filter_redacts_message_and_args(redactor: Redactor) -> None:
    redactor.register("s3cr3t-pass")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(redactor))
    log = logging.getLogger("test_redact.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("ssh login as %s with %s", "root", "s3cr3t-pass")
        log.warning("headers %s", {"Authorization": "Bearer tok.en.value"})
        try:
            raise RuntimeError("connect failed, password=s3cr3t-pass")
        except RuntimeError:
            log.exception("boom")
    finally:
        log.removeHandler(handler)

    output = stream.getvalue()
    assert "s3cr3t-pass" not in output
    assert "tok.en.value" not in output
    assert "ssh login as root with ***REDACTED***" in output
    assert "RuntimeError" in output  # the traceback is kept, only the secret goes


def test_install_log_redaction_covers_root_handlers_added_later() -> None:
    root = logging.getLogger()
    already_installed = getattr(logging.getLogRecordFactory(), "_harvester_redacted", False)
    install_log_redaction()
    install_log_redaction()  # idempotent
    stream = io.StringIO()
    late_handler = logging.StreamHandler(stream)  # like pytest's per-test capture handler
    root.addHandler(late_handler)
    try:
        register_secret("late-secret-5f0c2a")
        logging.getLogger("test_redact.install").error("value is %s", "late-secret-5f0c2a")
    finally:
        root.removeHandler(late_handler)
        if not already_installed:
            uninstall_log_redaction()

    assert "late-secret-5f0c2a" not in stream.getvalue()
    assert "value is ***REDACTED***" in stream.getvalue()
    if not already_installed:
        assert not getattr(logging.getLogRecordFactory(), "_harvester_redacted", False)
