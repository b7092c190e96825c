"""Upgrades, observed as a state machine: per-phase budgets, a stall detector, and a diagnosis."""
from .diagnosis import AwaitedRelease, Diagnosis, awaited_release, diagnose
from .run import UpgradeRun
from .tracker import (PHASES, PhaseBudgetExceeded, PhaseRecord, PhaseTracker, UpgradeFailed, UpgradeOutcome,
                      UpgradeStalled, default_phase_budgets)

__all__ = ["PHASES", "AwaitedRelease", "Diagnosis", "PhaseBudgetExceeded", "PhaseRecord", "PhaseTracker",
           "UpgradeFailed", "UpgradeOutcome", "UpgradeRun", "UpgradeStalled", "awaited_release", "diagnose",
           "default_phase_budgets"]
