"""What a remote command gave back, and the errors a command can end in."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STDERR_TAIL_LINES = 15


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


@dataclass(frozen=True)
class CommandResult:
    exit_status: int          # -1 when the server closed the channel without sending one
    stdout: str
    stderr: str
    command: str = ""
    node: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self) -> "CommandResult":
        """This result, or `CommandFailed` naming the command, its status and the end of its stderr."""
        if self.exit_status != 0:
            raise CommandFailed(self)
        return self


@dataclass
class CommandFailed(AssertionError):
    """A command exited non-zero where success was required."""

    result: CommandResult
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.evidence = {"command": self.result.command, "exit status": str(self.result.exit_status),
                         "stdout": self.result.stdout, "stderr": self.result.stderr}

    def __str__(self) -> str:
        where = f" on {self.result.node}" if self.result.node else ""
        stderr = tail(self.result.stderr) or "(empty)"
        return f"`{self.result.command}`{where} exited with status {self.result.exit_status}; stderr ends with:\n{stderr}"


@dataclass
class CommandTimeout(Exception):
    """The command did not finish within its timeout (not retried: the node answered, the command hung)."""

    node: str
    command: str
    seconds: float
    stdout: str = ""
    stderr: str = ""

    @property
    def evidence(self) -> dict[str, Any]:
        return {"command": self.command, "stdout so far": self.stdout, "stderr so far": self.stderr}

    def __str__(self) -> str:
        return f"`{self.command}` on {self.node} did not finish within {self.seconds:.0f}s (channel closed)"


class CommandInterrupted(Exception):
    """The connection dropped while a command that must not run twice was running: it may or may not have run.

    Not a ConnectionError on purpose: the transport retry policy must not run such a command again.
    """


class RemoteFileError(OSError):
    """An SFTP transfer failed for a reason other than a dropped connection (missing file, permission)."""
