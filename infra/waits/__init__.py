"""Honest waiting: named budgets with deadlines, and retry policies named by failure class."""
from .budget import Budget, Deadline, WaitTimeout
from .retry import RETRY_POLICIES, is_api_unavailable, is_conflict, retry_api_unavailable, retry_conflict

__all__ = ["Budget", "Deadline", "WaitTimeout", "RETRY_POLICIES", "is_api_unavailable", "is_conflict",
           "retry_api_unavailable", "retry_conflict"]
