"""SSH key pairs: generated per run (ed25519), private half readable by its owner only."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infra.scratch import write_private


@dataclass(frozen=True)
class KeyPair:
    private_key_file: Path        # OpenSSH format, mode 0600
    public_key: str               # "ssh-ed25519 AAAA... comment", as authorized_keys holds it

    @property
    def public_key_file(self) -> Path:
        return self.private_key_file.with_name(self.private_key_file.name + ".pub")


def new_ed25519_pem() -> tuple[str, str]:
    """(private key in OpenSSH PEM form, public key line), made with `cryptography` (paramiko cannot)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def load_private_key(pem: str) -> paramiko.PKey:
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem))


def generate_keypair(directory: Path, name: str = "id_ed25519", comment: str = "harvester-e2e") -> KeyPair:
    """Write `<name>` (0600) and `<name>.pub` in `directory`; reuse them if they already exist."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_file = directory / name
    pair = KeyPair(private_file, "")
    if private_file.is_file() and pair.public_key_file.is_file():
        return KeyPair(private_file, pair.public_key_file.read_text().strip())
    private, public = new_ed25519_pem()
    public = f"{public} {comment}"
    write_private(private_file, private)
    pair.public_key_file.write_text(public + "\n")
    return KeyPair(private_file, public)
