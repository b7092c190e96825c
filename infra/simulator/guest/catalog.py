"""The chart repository a guest's helm-controller installs from (offline: the charts are modelled).

`https://charts.harvesterhci.io` serves harvester/charts' gh-pages index. Only the chart versions
the simulator models are in it; asking for any other version fails the way `helm` fails after
`helm repo add` (klipper-helm adds the HelmChart's `spec.repo` under the chart's name), so a
HelmChart for an unknown version shows Helm's own message in its job's log.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

from . import cloud_provider_chart, csi_chart

HARVESTER_REPO = "https://charts.harvesterhci.io"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Release:
    """What a chart's templates see as `.Release` (plus the revision Helm is writing)."""

    name: str
    namespace: str
    revision: int = 1


@dataclass(frozen=True)
class RenderedObject:
    """One manifest document and the template file it came from (`# Source:` in Helm's manifest)."""

    source: str
    object: Obj


@dataclass(frozen=True)
class ChartVersion:
    name: str
    version: str
    app_version: str
    defaults: Callable[[], Obj]
    renderer: Callable[["ChartVersion", Release, Obj], list[RenderedObject]] = field(repr=False)

    def values(self, overrides: Obj) -> Obj:
        return deep_merge(self.defaults(), overrides)

    def render(self, release: Release, overrides: Obj) -> list[RenderedObject]:
        return self.renderer(self, release, self.values(overrides))


class ChartError(Exception):
    """Helm could not fetch the chart; the text is what `helm` prints after `Error: `."""


def _versions() -> dict[tuple[str, str], ChartVersion]:
    entries = []
    for version in csi_chart.VERSIONS:
        entries.append(ChartVersion(csi_chart.CHART, version, csi_chart.APP_VERSION, csi_chart.default_values,
                                    csi_chart.render))
    for version in cloud_provider_chart.VERSIONS:
        entries.append(ChartVersion(cloud_provider_chart.CHART, version, cloud_provider_chart.APP_VERSION,
                                    cloud_provider_chart.default_values, cloud_provider_chart.render))
    return {(e.name, e.version): e for e in entries}


CHARTS = _versions()


def chart_versions(chart: str) -> list[str]:
    return [version for (name, version) in CHARTS if name == chart]


def resolve(repo: str, chart: str, version: str, repo_alias: str) -> ChartVersion:
    """The chart version a HelmChart names, or ChartError worded as helm words it."""
    if repo.rstrip("/") != HARVESTER_REPO:
        raise ChartError(f'looks like "{repo}" is not a valid chart repository or cannot be reached: '
                         f'failed to fetch {repo.rstrip("/")}/index.yaml : 404 Not Found')
    known = chart_versions(chart)
    if not known:
        raise ChartError(f'chart "{chart}" matching {version} not found in {repo_alias} index. '
                         f"(try 'helm repo update'): no chart name found")
    if not version:
        version = max(known, key=lambda v: tuple(int(p) for p in v.split(".")))
    if (chart, version) not in CHARTS:
        raise ChartError(f'chart "{chart}" matching {version} not found in {repo_alias} index. '
                         f"(try 'helm repo update'): no chart version found for {chart}-{version}")
    return CHARTS[(chart, version)]


def deep_merge(base: Obj, top: Obj) -> Obj:
    """Helm's values coalescing: maps merge key by key, anything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in (top or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def set_path(values: Obj, dotted: str, value: Any) -> None:
    """`--set a.b=c` (HelmChart `spec.set`)."""
    node = values
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
