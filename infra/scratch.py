"""The process's one private scratch directory (0700), removed when the process ends.

Everything the harness writes only for itself, credentials included (a CA or client key decoded from a
kubeconfig, a guest's kubeconfig, a Rancher kubeconfig, kubectl's discovery cache), goes under it, so an
interrupted run leaves no credential behind: the directory goes at exit, Ctrl-C and SIGTERM included
(both end the process through Python's normal exit, which runs `atexit`).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_ROOT: Path | None = None
_OWNER: int | None = None


def _remove() -> None:
    if _ROOT is not None and _OWNER == os.getpid():        # a forked child must not remove its parent's
        shutil.rmtree(_ROOT, ignore_errors=True)


def scratch_root() -> Path:
    global _ROOT, _OWNER
    if _ROOT is None or _OWNER != os.getpid() or not _ROOT.is_dir():
        _ROOT, _OWNER = Path(tempfile.mkdtemp(prefix="harvester-e2e-")), os.getpid()
        atexit.register(_remove)
    return _ROOT


def scratch_dir(purpose: str) -> Path:
    """A new private directory under the scratch root (mkdtemp: 0700)."""
    return Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=scratch_root()))


def scratch_file(purpose: str, data: bytes) -> Path:
    """A new private file (0600) holding `data`."""
    fd, name = tempfile.mkstemp(prefix=f"{purpose}-", dir=scratch_root())
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return Path(name)


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` readable by its owner only (0600, also when the file already existed); the
    directories made for it are 0700. For credentials that must outlive the process (keys, kubeconfigs)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)            # O_CREAT's mode does not apply to a file that already existed
    return path
