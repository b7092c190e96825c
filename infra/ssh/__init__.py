"""Node sessions over SSH (paramiko): commands, sudo, SFTP, per-run host keys, reconnect after reboot."""
from .keys import KeyPair, generate_keypair
from .known_hosts import HostKeyChanged, KnownHosts, UnknownHostKey, describe
from .result import CommandFailed, CommandInterrupted, CommandResult, CommandTimeout, RemoteFileError
from .session import SshAuthFailed, SshNode, SshTarget, TransportDropped, parse_os_release

__all__ = ["KeyPair", "generate_keypair", "HostKeyChanged", "KnownHosts", "UnknownHostKey", "describe",
           "CommandFailed", "CommandInterrupted", "CommandResult", "CommandTimeout", "RemoteFileError",
           "SshAuthFailed", "SshNode", "SshTarget", "TransportDropped", "parse_os_release"]
