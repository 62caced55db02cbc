"""Where the Hopper kernel's time goes, per CTA, from a timing-probe build
(WgmmaConfig.spec(probe=True)): the producer thread's cycles waiting for
empty stages and issuing copies, consumer warpgroup 0's cycles waiting for
full stages and in the epilogue (stream-K reduction + stores), and each CTA's
start and end on the global timer, and when consumer 0 had issued a quarter,
half and three quarters of its units. Medians over CTAs, and the spread of
end times (the stream-K tail).
  python benchmarks/probe_stages.py M,N,K[:config] ...   (heuristic plan, or forced)
The probe build schedules differently from the real kernel (the bn8 and bn16
builds, capped at 80 registers for two CTAs per SM, spill 136-184 bytes):
compare its numbers with each other (old against new, shape against shape,
CTA against CTA), not with lqq bench."""
import os
import sys

import numpy as np


def probe(M, N, K, rng):
    import cupy as cp

    import lqq
    from lqq import configs, gpu_gemm, launch, tune_cache
    w = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
    x = cp.asarray(rng.standard_normal((M, K), dtype=np.float32).astype(np.float16))
    xq, xs = lqq.quantize_activation(x)
    y = cp.empty((M, N), cp.float16)
    plan = gpu_gemm.choose(M, N, K, 64)
    if not isinstance(plan.config, configs.WgmmaConfig):
        raise SystemExit(f"{tune_cache.plan_text(plan)} is not a Hopper plan")
    p = gpu_gemm.packed(w)
    rec = gpu_gemm._launch(w, p, plan, M, np.float16, 0)
    kernel = gpu_gemm.function(plan.config.spec(probe=True), rec.smem)
    stream = cp.cuda.get_current_stream()
    words = configs.WgmmaConfig.PROBE_WORDS
    buf = cp.zeros(rec.grid[0] * words, cp.uint64)
    args = gpu_gemm.kernel_args(rec, p, xq, xs, None, y, stream) + (buf,)
    for _ in range(3):                          # warm up, then keep the last run
        launch.launch(kernel, rec.grid, (rec.threads,), args, rec.smem, stream, pdl=False)
    stream.synchronize()
    ref = lqq.gemm((xq, xs), w)                 # the probe build must still be exact
    assert bool((ref == y).all()), "probe build disagrees with lqq.gemm"
    r = buf.get().reshape(-1, words).astype(np.float64)
    return tune_cache.plan_text(plan), r


def summary(text, r):
    # the SM clock from consumer 0's cycles over its global-timer nanoseconds
    mhz = np.median(r[:, 11] / np.maximum(r[:, 12] - r[:, 13], 1)) * 1e3
    t0 = r[:, 0].min()
    units = np.maximum(r[:, 4], 1)
    us = lambda cycles: cycles / mhz
    span = (r[:, 12].max() - t0) / 1e3
    end = (r[:, 12] - t0) / 1e3
    return (f"{text}: span {span:.1f} us over {len(r)} CTAs, CTA ends median {np.median(end):.1f} "
            f"max {end.max():.1f} us | producer per unit: wait {np.median(us(r[:, 2] / units)):.3f}"
            f" us, issue {np.median(us(r[:, 3] / units)):.3f} us, ring's first reuse after "
            f"{np.median(us(r[:, 5])):.2f} us | consumer 0: waits {np.median(r[:, 8] / r[:, 11]):.0%}"
            f" of its time, epilogue {np.median(us(r[:, 9] / np.maximum(r[:, 10], 1))):.2f} us "
            f"per tile, {np.median(r[:, 10]):.0f} tiles | SM clock {mhz:.0f} MHz\n  "
            + shares(r) + "\n  " + tail(r, t0))


# consumer 0's cycles (medians over CTAs, shares of its total in column 11)
SHARES = (("full-wait", 8), ("wgmma issue", 16), ("wgmma wait", 17), ("dequantization", 18),
          ("epilogue", 9))


def shares(r):
    """Where consumer warpgroup 0's time goes, per unit of work: waiting for
    stages, issuing the wgmmas, waiting for the previous unit's (wait_group 1),
    dequantizing the next stage, the epilogue; the rest is loop overhead."""
    if r.shape[1] <= max(c for _, c in SHARES):
        return "consumer time shares: not in this build"
    parts = [f"{name} {np.median(r[:, c] / r[:, 11]):.0%}" for name, c in SHARES]
    rest = 1 - sum(np.median(r[:, c] / r[:, 11]) for _, c in SHARES)
    return "consumer 0's time: " + ", ".join(parts) + f", other {rest:.0%}"


def tail(r, t0):
    """What the late CTAs have in common: end-time quantiles, ends by segment
    count, the start spread, and the SMs of the ten latest."""
    end, start = (r[:, 12] - t0) / 1e3, (r[:, 13] - t0) / 1e3
    by_segs = ", ".join(f"{int(k)} seg: {np.median(end[r[:, 10] == k]):.1f} us ({(r[:, 10] == k).sum()})"
                        for k in np.unique(r[:, 10]))
    late = np.argsort(end)[-10:]
    rest = np.setdiff1d(np.arange(len(r)), late)
    return (f"ends p10/p50/p90/max {np.percentile(end, 10):.1f}/{np.median(end):.1f}/"
            f"{np.percentile(end, 90):.1f}/{end.max():.1f} us; consumer starts max "
            f"{start.max():.1f} us; median end by segments: {by_segs}; latest CTAs' SMs "
            f"{sorted(int(x) for x in r[late, 6])}, their full-wait share "
            f"{np.median(r[late, 8] / r[late, 11]):.0%}; " + quarters(r, t0, late, rest)
            + "; " + by_segments(r, t0) + "; " + same_sm(end, r[:, 6]))


# consumer 0's global-timer stamps at 1/4, 1/2 and 3/4 of its units issued,
# and at its end (0 where a CTA had fewer than 4 units)
MARKS = (7, 14, 15, 12)


def marked(r):
    """The CTAs that stamped every quarter mark."""
    return (r[:, list(MARKS)] > 0).all(axis=1)


def marks_text(r, t0, rows):
    """The median quarter marks and end of `rows` (a boolean mask), in us."""
    return "/".join(f"{np.median((r[rows, c] - t0) / 1e3):.1f}" for c in MARKS)


def by_segments(r, t0):
    """Quarter marks (1/4, 1/2, 3/4, end; median) by segment count: whether
    the CTAs of one kind are slow from their start or only at their end."""
    ok = marked(r)
    parts = [f"{int(k)} seg " + marks_text(r, t0, ok & (r[:, 10] == k)) for k in np.unique(r[ok, 10])]
    return "quarter marks by segments: " + (", ".join(parts) + " us" if parts else "none")


def same_sm(end, sm):
    """Median end-time spread between CTAs that shared an SM, against pairs of
    CTAs taken in index order across SMs: a much smaller spread within an SM
    means some SMs are slow, not some CTAs."""
    within = [np.ptp(end[sm == s]) for s in np.unique(sm) if (sm == s).sum() > 1]
    if not within:
        return "one CTA per SM"
    across = np.abs(np.diff(end))
    return (f"end spread within an SM {np.median(within):.1f} us (median of {len(within)} SMs), "
            f"between neighbouring CTAs {np.median(across):.1f} us")


def quarters(r, t0, late, rest):
    """The quarter marks, median over the ten latest CTAs against the rest:
    late all along means a slow SM, late only at the end means the tail."""
    if len(rest) == 0:
        return "quarter marks: too few CTAs to compare"
    ok = marked(r)
    is_late = np.zeros(len(r), bool)
    is_late[late] = True
    if not (ok & is_late).any() or not (ok & ~is_late).any():
        return "quarter marks: fewer than 4 units per CTA"
    return ("quarter marks (1/4, 1/2, 3/4, end) latest 10 " + marks_text(r, t0, ok & is_late)
            + " us, rest " + marks_text(r, t0, ok & ~is_late) + " us")


def main():
    rng = np.random.default_rng(0)
    for arg in sys.argv[1:]:
        shape, _, force = arg.partition(":")
        if force:
            os.environ["LQQ_FORCE_CONFIG"] = force
        else:
            os.environ.pop("LQQ_FORCE_CONFIG", None)
        M, N, K = map(int, shape.split(","))
        text, r = probe(M, N, K, rng)
        print(f"M={M} N={N} K={K} " + summary(text, r), flush=True)
        if os.environ.get("PROBE_CSV"):          # every CTA's counters, for a closer look
            np.savetxt(f"{os.environ['PROBE_CSV']}/probe-{M}-{N}-{K}.csv", r, fmt="%.0f",
                       delimiter=",")


if __name__ == "__main__":
    main()
