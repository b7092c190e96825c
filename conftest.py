"""pytest wiring: run configuration, the backend, per-scenario cleanup, and the plugins."""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Iterator

import pytest

from infra.backends import Backend, BackendError, backend_for
from infra.cleanup import CleanupStack
from infra.cluster import CLUSTER_KEY
from infra.config import ConfigError, RunConfig, load_config

def _step_modules() -> list[str]:
    """Every module in steps/ (but the scenario bindings): pytest-bdd finds steps only in plugins."""
    steps = Path(__file__).parent / "steps"
    return [f"steps.{p.stem}" for p in sorted(steps.glob("*.py")) if not p.stem.startswith(("test_", "_"))]


pytest_plugins = ["infra.report.plugin", "infra.pause", *_step_modules()]

CONFIG_KEY = pytest.StashKey[RunConfig]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harvester-e2e")
    group.addoption("--config", type=Path, help="YAML run configuration (see README)")
    group.addoption("--backend", help="simulated | libvirt | existing")
    group.addoption("--harvester-version", help="the version the cluster runs")
    group.addoption("--keep-on-failure", action="store_true", default=None,
                    help="keep what a failed scenario created, for inspection")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Where scenarios that upgrade the cluster (@upgrades_cluster) run.

    A cluster that is handed out, not made (`existing`, `libvirt`), is upgraded in place: those scenarios
    go last, so every other scenario meets the version the cluster started at. The simulated backend
    starts a cluster per version and retires an upgraded one, so there they start first, one in every
    other place: pytest-xdist's load scheduling hands each worker two items to begin with (`make e2e`:
    --maxschedchunk 2), so each worker begins with one long upgrade instead of one worker ending the run
    with all of them."""
    upgrading = [item for item in items if item.get_closest_marker("upgrades_cluster") is not None]
    if not upgrading:
        return
    rest = [item for item in items if item.get_closest_marker("upgrades_cluster") is None]
    if CONFIG_KEY in config.stash and config.stash[CONFIG_KEY].backend != "simulated":
        items[:] = rest + upgrading
        return
    items[:] = [item for pair in zip(upgrading, rest) for item in pair] + upgrading[len(rest):] + rest[len(upgrading):]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    try:
        run_config = load_config(config.getoption("--config"), cli={
            "backend": config.getoption("--backend"),
            "harvester_version": config.getoption("--harvester-version"),
            "keep_on_failure": config.getoption("--keep-on-failure"),
        })
    except ConfigError as exc:
        raise pytest.UsageError(f"config error: {exc}") from None
    config.stash[CONFIG_KEY] = run_config
    from infra.report.redact import register_secret

    for secret in run_config.secrets():
        register_secret(secret)
    from infra.report.keys import ENVIRONMENT_KEY

    config.stash[ENVIRONMENT_KEY] = {
        "backend": run_config.backend, "harvester_version": run_config.harvester_version,
        "run_id": run_config.run_id, "simulated_time_scale": str(run_config.simulated.time_scale),
    }
    # SIGTERM (CI cancelling a job) unwinds like Ctrl-C, so cleanup stacks still run.
    signal.signal(signal.SIGTERM, _raise_interrupt)


@pytest.fixture(scope="session")
def run_config(pytestconfig: pytest.Config) -> RunConfig:
    return pytestconfig.stash[CONFIG_KEY]


@pytest.fixture(scope="session")
def backend(run_config: RunConfig) -> Iterator[Backend]:
    chosen = backend_for(run_config)
    try:
        chosen.preflight()
    except BackendError as exc:     # the wrong cluster, or none: no scenario can mean anything
        pytest.exit(f"backend {run_config.backend}: {exc}", returncode=2)
    try:
        yield chosen
    finally:
        chosen.release_all()
        _KEPT.extend(chosen.kept_summary())


_KEPT: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _KEPT:
        terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def cleanup(request: pytest.FixtureRequest, run_config: RunConfig, backend: Backend) -> Iterator[CleanupStack]:
    stack = CleanupStack()
    yield stack
    report = getattr(request.node, "report_call", None)
    # An expected failure (a known issue) is a failure too: its evidence is what the report shows.
    failed = report is not None and (report.failed or hasattr(report, "wasxfail"))
    stack.keep = bool(run_config.keep_on_failure and failed)
    cluster = request.node.stash.get(CLUSTER_KEY, None)
    if stack.keep and cluster is not None:
        backend.keep(cluster)              # the simulated backend keeps the failed scenario's cluster running
    problems = stack.run(failed=failed)
    if problems:
        pytest.fail("cleanup failed: " + "; ".join(problems), pytrace=False)
