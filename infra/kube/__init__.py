"""The Kubernetes facade: any kind through the dynamic client, and watch-based waits."""
from .client import ApiFailure, Kube, NotFound
from .predicates import condition_status, has_condition

__all__ = ["ApiFailure", "Kube", "NotFound", "condition_status", "has_condition"]
