"""The run's known_hosts: pinned keys, trust on first use recorded in the file, changed keys refused."""
from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest

from infra.ssh import HostKeyChanged, KnownHosts, UnknownHostKey, generate_keypair
from infra.ssh.keys import load_private_key, new_ed25519_pem
from infra.ssh.known_hosts import FIRST_USE, PINNED, describe, entry_name, public_key


def new_key() -> paramiko.PKey:
    return load_private_key(new_ed25519_pem()[0])


def line_of(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def test_entry_names_follow_openssh() -> None:
    assert entry_name("10.0.0.5", 22) == "10.0.0.5"
    assert entry_name("127.0.0.1", 40123) == "[127.0.0.1]:40123"


def test_fingerprint_is_openssh_sha256_of_the_key_blob() -> None:
    key = new_key()
    digest = base64.b64encode(hashlib.sha256(base64.b64decode(key.get_base64())).digest()).decode().rstrip("=")
    assert describe(key) == f"ssh-ed25519 SHA256:{digest}"


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) is not installed")
def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path)
    printed = subprocess.run(["ssh-keygen", "-lf", str(pair.public_key_file)], capture_output=True, text=True,
                             check=True).stdout.split()[1]
    assert describe(public_key(pair.public_key)).split()[1] == printed


def test_first_use_is_recorded_in_the_run_file_and_trusted_after(tmp_path: Path) -> None:
    path = tmp_path / "run" / "known_hosts"
    key = new_key()
    assert KnownHosts(path).verify("node-0", "127.0.0.1", 40123, key) == FIRST_USE
    assert path.read_text().split() == ["[127.0.0.1]:40123", "ssh-ed25519", key.get_base64()]
    # a later session (another KnownHosts on the same file) trusts it, and says where it came from
    assert KnownHosts(path).verify("node-0", "127.0.0.1", 40123, key) == f"recorded in {path}"


def test_a_changed_key_is_refused_naming_host_port_and_both_fingerprints(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    old, new = new_key(), new_key()
    KnownHosts(path).verify("node-0", "127.0.0.1", 40123, old)
    with pytest.raises(HostKeyChanged) as caught:
        KnownHosts(path).verify("node-0", "127.0.0.1", 40123, new)
    message = str(caught.value)
    assert "CHANGED" in message and "[127.0.0.1]:40123" in message and "node-0" in message
    assert describe(old) in message and describe(new) in message and str(path) in message
    assert caught.value.evidence["expected key"] == describe(old)
    assert path.read_text().split()[2] == old.get_base64(), "a refused key must not replace the recorded one"


def test_pinned_key_wins_over_first_use(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    pinned, other = new_key(), new_key()
    known.pin("127.0.0.1", 2222, line_of(pinned))
    assert known.verify("node-1", "127.0.0.1", 2222, pinned) == PINNED
    with pytest.raises(HostKeyChanged, match=PINNED):
        known.verify("node-1", "127.0.0.1", 2222, other)


def test_provisioning_may_replace_a_recorded_key(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    first, reinstalled = new_key(), new_key()
    known.verify("node-1", "127.0.0.1", 2222, first)
    known.pin("127.0.0.1", 2222, reinstalled)
    assert known.verify("node-1", "127.0.0.1", 2222, reinstalled) == PINNED
    assert len(known.path.read_text().splitlines()) == 1


def test_strict_mode_refuses_an_unknown_host(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts", trust_on_first_use=False)
    with pytest.raises(UnknownHostKey, match="trust on first use is off"):
        known.verify("node-2", "127.0.0.1", 2200, new_key())
    assert not known.path.exists()


def test_ports_of_one_host_are_separate_entries(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    a, b = new_key(), new_key()
    known.verify("node-0", "127.0.0.1", 2201, a)
    known.verify("node-1", "127.0.0.1", 2202, b)
    assert known.known_key("127.0.0.1", 2201) == a and known.known_key("127.0.0.1", 2202) == b


def test_generated_keypair_is_private_to_its_owner(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "ssh")
    assert pair.private_key_file.stat().st_mode & 0o777 == 0o600
    assert pair.public_key.startswith("ssh-ed25519 ")
    assert generate_keypair(tmp_path / "ssh") == pair, "a run reuses its key pair"
    assert paramiko.PKey.from_path(pair.private_key_file).get_base64() == pair.public_key.split()[1]
