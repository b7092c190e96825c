"""`harvester-e2e chaos`: the stories under injected faults, and interrupted runs; the figures and a JSON summary.

  harvester-e2e chaos [--runs N] [--seed S] [--stories upgrade,precheck,ippool] [--interrupts N]
                      [--faults CLASS,...] [--version V] [--time-scale X] [-k EXPR] [--out DIR]

Exit status 0 when no scenario's verdict differed from the fault-free run (under a fault, or in a run that
ended before its first fault) and nothing was left behind (after the fault runs and after every interrupt);
1 otherwise; 2 for a usage error.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from infra.config import SIMULATED_VERSIONS

from . import report
from .campaign import StoryResult, run_campaign
from .faults import BY_NAME, FAULT_CLASSES
from .interrupts import InterruptResult, plan_interrupts, run_interrupt
from .runs import DEFAULT_VERSION, LAB_TIME_SCALE, PROJECT_ROOT, STORIES


def _names(text: str, valid: dict[str, object], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{what}: {', '.join(unknown) or '(none)'}: valid: {', '.join(valid)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harvester-e2e chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="fault runs per story (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="seed of every random choice (default: from time)")
    parser.add_argument("--stories", default="upgrade,precheck,ippool", help="comma-separated: " + ", ".join(STORIES))
    parser.add_argument("--interrupts", type=int, default=0, help="interrupted runs after the fault runs")
    parser.add_argument("--faults", default=",".join(f.name for f in FAULT_CLASSES),
                        help="comma-separated fault classes: " + ", ".join(BY_NAME))
    parser.add_argument("--version", default=DEFAULT_VERSION, help="the lab's Harvester version")
    parser.add_argument("--time-scale", type=float, default=LAB_TIME_SCALE,
                        help="the labs' simulated seconds per real second (default 60)")
    parser.add_argument("-k", dest="keyword", help="a pytest -k expression narrowing each story's selection")
    parser.add_argument("--out", type=Path, help="where runs and summary.json go (default artifacts/chaos/<time>)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        stories = _names(args.stories, dict(STORIES), "--stories")
        faults = _names(args.faults, dict(BY_NAME), "--faults")
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.version not in SIMULATED_VERSIONS:
        print(f"error: --version: {args.version!r} is not simulated; valid: {', '.join(SIMULATED_VERSIONS)}",
              file=sys.stderr)
        return 2
    if args.runs < 0 or args.interrupts < 0 or args.time_scale <= 0:
        print("error: --runs and --interrupts must not be negative, --time-scale must be above 0", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    out = (args.out or PROJECT_ROOT / "artifacts" / "chaos" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    say = lambda line: print(line, flush=True)  # noqa: E731
    say(f"chaos: seed {seed}; {args.runs} fault runs per story of {', '.join(stories)}; {args.interrupts} "
        f"interrupts; lab at {args.version}; results in {out}")
    wall: dict[str, float] = {}
    started = time.monotonic()
    results: list[StoryResult] = []
    if args.runs:
        for name in stories:
            story_started = time.monotonic()
            results += run_campaign([STORIES[name]], args.runs, [BY_NAME[f] for f in faults], seed=seed + len(results),
                                    out=out, version=args.version, keyword=args.keyword,
                                    time_scale=args.time_scale, progress=say)
            wall[name] = time.monotonic() - story_started
    interrupts: list[InterruptResult] = []
    if args.interrupts:
        interrupts_started = time.monotonic()
        for plan in plan_interrupts(random.Random(seed), args.interrupts, stories):
            result = run_interrupt(plan, out, version=args.version, keyword=args.keyword, time_scale=args.time_scale)
            interrupts.append(result)
            say(f"interrupt #{plan.index} {plan.story} {plan.signal} ({plan.backend}) aimed at {plan.moment}"
                f"{' ' + plan.phase if plan.phase else ''}: landed in {result.moment_seen}; exit {result.exit_code}; "
                f"leftovers {result.leftovers.count}; {result.wall_s:.0f}s")
        wall["interrupts"] = time.monotonic() - interrupts_started
    wall["total"] = time.monotonic() - started
    data = report.summary(results, interrupts, seed=seed, runs=args.runs, faults=[BY_NAME[f] for f in faults],
                          version=args.version, keyword=args.keyword, wall_s=wall)
    path = report.write(data, out)
    report.render(data)
    say(f"summary: {path}")
    totals = data["totals"]
    clean = not (totals["false_failures"] or totals["leftovers"] or totals["interrupt_leftovers"]
                 or totals["runs_ended_before_a_fault_with_other_verdicts"])
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
