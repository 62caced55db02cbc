"""benchmarks/probe_stages.py's summary of per-CTA probe counters."""
import importlib.util
from pathlib import Path

import numpy as np

spec = importlib.util.spec_from_file_location(
    "probe_stages", Path(__file__).parents[1] / "benchmarks" / "probe_stages.py")
probe_stages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe_stages)


def test_summary_reads_the_counters():
    r = np.zeros((4, 16))
    r[:, 0] = [1000, 1100, 1050, 1000]            # producer start (global ns)
    r[:, 12] = r[:, 0] + 20000                     # consumer end
    r[:, 13] = r[:, 0] + 500                       # consumer start
    r[:, 11] = 19500 * 2.0                         # consumer cycles: a 2000 MHz clock
    r[:, 4], r[:, 2], r[:, 3], r[:, 5] = 10, 4000, 2000, 3000
    r[:, 8], r[:, 9], r[:, 10] = 9750, 4000, 2
    text = probe_stages.summary("plan", r)
    assert "span 20.1 us over 4 CTAs" in text and "SM clock 2000 MHz" in text
    assert "wait 0.200 us, issue 0.100 us, first issue after 1.50 us" in text
    assert "waits 25% of its time, epilogue 1.00 us per tile, 2 tiles" in text
