"""Where clusters come from: `simulated` (default), `libvirt`, `existing`. Each hands steps a `Cluster`."""
from infra.cluster import Cluster, NodeHandle

from .base import Backend, BackendError, backend_for

__all__ = ["Backend", "BackendError", "Cluster", "NodeHandle", "backend_for"]
