"""How good is the heuristic, judged by an autotune run's measured candidates?

For every tuned problem of an autotune cache file (`lqq autotune` writes them
under $LQQ_CACHE_DIR/autotune; benchmarks/results keeps copies), the plan that
the heuristic of *this* checkout picks is looked up among the candidates that
run timed, so a heuristic change is checked against measurements without a
GPU. Columns: the plan, its time over the best candidate's, and the same for
the heuristic of the run that produced the file.

    python benchmarks/heuristic_vs_tuned.py benchmarks/results/autotune-h200-2026-12-02-8a7ec2c.json
"""
from __future__ import annotations

import argparse
import json
import math

from lqq import configs, tune_cache


def rows(entries: dict, sm_count: int, compute_capability: str = "9.0"):
    """(problem, this heuristic's plan, its time / the best, the run's
    heuristic, its time / the best); NaN for a plan the run did not time."""
    cc = str(compute_capability).replace(".", "")
    for key in sorted(entries, key=lambda k: (entries[k]["m_bucket"], entries[k]["N"] * entries[k]["K"])):
        e = entries[key]
        timed = {c["config"]: c["ms"] for c in e["candidates"] if c.get("ms") is not None}
        if not timed:
            continue
        best = min(timed.values())
        wgmma = configs.wgmma_eligible(e["K"], e["group_size"], cc)
        plan = configs.heuristic(e["m_tuned"], e["N"], e["K"], sm_count, wgmma=wgmma)
        text = tune_cache.plan_text(plan)
        ms = timed.get(text)
        yield (key, text, ms / best if ms else math.nan, e["heuristic"],
               e["heuristic_ms"] / best if e.get("heuristic_ms") else math.nan)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", help="an autotune cache file (JSON)")
    args = ap.parse_args(argv)
    data = json.load(open(args.file))
    device = data["device"]
    now, then, missing = [], [], 0
    print(f"{'problem':24s} {'heuristic here':28s} {'x best':>7s}   {'heuristic of the run':28s} {'x best':>7s}")
    for key, text, ratio, old, old_ratio in rows(data["entries"], device["sm_count"],
                                                 device["compute_capability"]):
        flag = "  (not timed in this run)" if math.isnan(ratio) else ""
        print(f"{key:24s} {text:28s} {ratio:7.3f}   {old:28s} {old_ratio:7.3f}{flag}")
        missing += math.isnan(ratio)
        if not math.isnan(ratio):
            now.append(ratio)
            then.append(old_ratio)
    if not now:
        print(f"\nno problem of this run timed the plan this heuristic picks ({missing} untimed)")
        return 1
    geo = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
    print(f"\ngeometric mean over {len(now)} timed problems: here {geo(now):.3f}x the best, "
          f"the run's heuristic {geo(then):.3f}x; worst here {max(now):.3f}x; "
          f"{missing} plans not timed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
