"""Table of an A/B log (benchmarks/ab_run.sh): per shape, each variant's plan
and mean time over the rounds, and its speed relative to the first variant."""
import re
import sys
from collections import defaultdict

LINE = re.compile(r"^(\S+) M=(\d+) N=(\d+) K=(\d+) (\S+): ([\d.]+) ms")


def table(lines) -> str:
    times, plans, variants, shapes = defaultdict(list), {}, [], []
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        v, shape, plan = m[1], (int(m[2]), int(m[3]), int(m[4]), m[5].rsplit("_c", 1)[0]), m[5]
        if v not in variants:
            variants.append(v)
        if shape not in shapes:
            shapes.append(shape)
        times[v, shape].append(float(m[6]))
        plans[v, shape] = plan
    base = variants[0] if variants else None
    out = ["| M | N x K | " + " | ".join(f"{v} ms" for v in variants) + " | "
           + " | ".join(f"{v} vs {base}" for v in variants[1:]) + " |",
           "|---|---|" + "---|" * (2 * len(variants) - 1)]
    for s in shapes:
        mean = {v: sum(times[v, s]) / len(times[v, s]) for v in variants if times[v, s]}
        cells = [f"{mean[v]:.4f} ({plans[v, s].replace('wgmma_', '')})" if v in mean else "-"
                 for v in variants]
        ratios = [f"{mean[base] / mean[v]:.2f}x" if v in mean and base in mean else "-"
                  for v in variants[1:]]
        out.append(f"| {s[0]} | {s[1]} x {s[2]} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(table(f))
