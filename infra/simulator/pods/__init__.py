"""The process model of simulated pods: filesystems, exec/attach shells and served ports (see `runtime`)."""
from .filesystem import FileTree, Mount, PodFilesystem
from .runtime import Listener, NotRunning, PodRuntime, Session, StdinPipe, serve_http

__all__ = ["FileTree", "Listener", "Mount", "NotRunning", "PodFilesystem", "PodRuntime", "Session", "StdinPipe",
           "serve_http"]
