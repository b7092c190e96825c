"""`Kubectl.run` rides through an unavailable API server as the Kube client does; an answer is never retried.

Found by `harvester-e2e chaos`: a 503 during the API server's restart made `kubectl apply` of an IPPool edit
fail, and the scenario reported the edit as refused (a false failure).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from infra.kube.kubectl import Kubectl

UNAVAILABLE = ('Error from server (ServiceUnavailable): error when retrieving current configuration of:\n'
               'Resource: "loadbalancer.harvesterhci.io/v1beta1, Resource=ippools"\n'
               'from server for: "STDIN": the server is currently unable to handle the request')
REFUSED = "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"
OPENAPI_500 = ('error: error validating "STDIN": error validating data: failed to download openapi: an error on '
               'the server ("unknown") has prevented the request from succeeding; if you choose to ignore these '
               'errors, turn validation off with --validate=false')
OPENAPI_504 = ('error: error validating "STDIN": error validating data: failed to download openapi: the server was '
               'unable to return a response in the time allotted, but may still be processing the request')
OPENAPI_REFUSED = ('error: error validating "STDIN": error validating data: failed to download openapi: Get '
                   '"https://127.0.0.1:45035/openapi/v2?timeout=32s": dial tcp 127.0.0.1:45035: connect: connection '
                   'refused; if you choose to ignore these errors, turn validation off with --validate=false')
DENIED = ('Error from server (InternalError): error when applying patch: admission webhook '
          '"validator.harvesterhci.io" denied the request: can\'t update IP pool pool1')
NOT_FOUND = 'Error from server (NotFound): ippools.loadbalancer.harvesterhci.io "x" not found'


def fake_kubectl(tmp_path: Path, failures: list[str]) -> tuple[Path, Path]:
    """A kubectl that fails with each of `failures` in turn (one per call), then succeeds; counts its calls."""
    calls = tmp_path / "calls"
    calls.write_text("")
    for index, text in enumerate(failures):
        (tmp_path / f"fail-{index}").write_text(text)
    script = tmp_path / "kubectl"
    script.write_text(f"""#!/bin/sh
echo x >> {calls}
n=$(wc -l < {calls})
f={tmp_path}/fail-$((n - 1))
if [ -f "$f" ]; then cat "$f" >&2; exit 1; fi
echo '{{"kind": "IPPool"}}'
""")
    script.chmod(0o755)
    return script, calls


@pytest.mark.parametrize("failure", [UNAVAILABLE, REFUSED, OPENAPI_500, OPENAPI_504, OPENAPI_REFUSED],
                         ids=["503", "refused", "openapi-500", "openapi-504", "openapi-refused"])
def test_a_transient_failure_is_run_again_until_it_passes(tmp_path: Path, failure: str) -> None:
    binary, calls = fake_kubectl(tmp_path, [failure, failure])
    result = Kubectl(tmp_path / "kubeconfig", binary=binary, unavailable_budget=30).run("apply", "-f", "-",
                                                                                          stdin="{}")
    assert result.ok and result.json() == {"kind": "IPPool"}
    assert len(calls.read_text().splitlines()) == 3


def test_an_answer_is_returned_at_once(tmp_path: Path) -> None:
    for text in (DENIED, NOT_FOUND):
        binary, calls = fake_kubectl(tmp_path, [text])
        result = Kubectl(tmp_path / "kubeconfig", binary=binary, unavailable_budget=30).run("apply", "-f", "-")
        assert not result.ok and not result.transient and result.stderr.strip() == text
        assert len(calls.read_text().splitlines()) == 1


def test_past_its_budget_the_last_failure_is_returned(tmp_path: Path) -> None:
    binary, calls = fake_kubectl(tmp_path, [UNAVAILABLE] * 50)
    result = Kubectl(tmp_path / "kubeconfig", binary=binary, unavailable_budget=0.5).run("get", "ippools")
    assert not result.ok and result.transient and "unable to handle the request" in result.stderr
    assert 1 < len(calls.read_text().splitlines()) < 50
