"""Opening libvirt: a clear message when the binding or the daemon is missing, and no noise on stderr.

libvirt prints every error to stderr by default, even ones the caller handles (an object that is already
gone during teardown); the harness reports errors itself, so that handler is replaced by a silent one.
"""
from __future__ import annotations

from typing import Any


class LibvirtUnavailable(RuntimeError):
    """libvirt-python is not installed, or the URI cannot be opened; the message says what to do."""


def libvirt_module() -> Any:
    try:
        import libvirt
    except ImportError:
        raise LibvirtUnavailable(
            "the libvirt backend needs libvirt-python: apt-get install libvirt-dev pkg-config gcc python3-dev, "
            "then .venv/bin/pip install libvirt-python (see ci/bootstrap-system.sh)") from None
    libvirt.registerErrorHandler(lambda _context, _error: None, None)
    return libvirt


def open_connection(uri: str) -> Any:
    libvirt = libvirt_module()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtUnavailable(f"cannot open libvirt at {uri}: {exc.get_error_message()}") from None


def error_code(exc: BaseException) -> int | None:
    getter = getattr(exc, "get_error_code", None)
    return getter() if getter else None


def is_missing(exc: BaseException) -> bool:
    """True for libvirt's 'no such domain/network/pool/volume' errors: already gone is fine in teardown."""
    libvirt = libvirt_module()
    return error_code(exc) in {libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK,
                               libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL,
                               libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT}


def is_test_driver(conn: Any) -> bool:
    return conn.getURI().startswith("test:")
