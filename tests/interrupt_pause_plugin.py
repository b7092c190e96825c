"""A pytest plugin for tests/test_precheck_interrupt.py only: hold a scenario right after it injected.

Loaded into the child pytest with `-p tests.interrupt_pause_plugin`; it changes no harness code. After
the step that injects an orphan it sleeps (H5_PAUSE_AFTER_INJECT seconds, default 60), so the parent's
signal lands while the fake Machine exists and the scenario is still running.
"""
from __future__ import annotations

import os
import time
from typing import Any


def pytest_bdd_after_step(request: Any, feature: Any, scenario: Any, step: Any, step_func: Any,
                          step_func_args: dict) -> None:
    if step.name.startswith("I inject "):
        print("\n[interrupt-pause] injected; holding the scenario for a signal", flush=True)
        time.sleep(float(os.environ.get("H5_PAUSE_AFTER_INJECT", "60")))
