"""A login attempt is bounded by what its caller has left: a node still booting may accept TCP and then say
nothing (no SSH banner) for as long as the client waits."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import paramiko
import pytest
from pydantic import SecretStr

from infra.ssh import KnownHosts, SshNode, SshTarget


def test_a_login_to_a_silent_node_gives_up_within_the_timeout_it_is_given(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:                    # accepts, never sends a banner, until the test ends
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    node = SshNode(SshTarget("silent", "127.0.0.1", listener.getsockname()[1], password=SecretStr("pw")),
                   KnownHosts(tmp_path / "known_hosts"), connect_timeout=15.0)
    try:
        started = time.monotonic()
        with pytest.raises((paramiko.SSHException, OSError, EOFError)):
            node._transport(1.0)
        assert time.monotonic() - started < 4.0, "the 1 s bound was not applied (the default is 15 s)"
    finally:
        stop.set()
        thread.join(5)
        for connection in accepted:
            connection.close()
        listener.close()
