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
    assert "quarter marks: too few CTAs to compare" in text
    assert "wait 0.200 us, issue 0.100 us, ring's first reuse after 1.50 us" in text
    assert "waits 25% of its time, epilogue 1.00 us per tile, 2 tiles" in text
    assert "consumer time shares: not in this build" in text        # 16 words: the old build
    r = np.hstack([r, np.zeros((4, 4))])
    r[:, 16], r[:, 17], r[:, 18] = 3900, 11700, 7800                # 10%, 30%, 20%
    assert ("consumer 0's time: full-wait 25%, wgmma issue 10%, wgmma wait 30%, "
            "dequantization 20%, epilogue 10%, other 5%") in probe_stages.summary("plan", r)


def test_quarter_marks_compare_latest_ctas_with_the_rest():
    n = 20
    r = np.zeros((n, 16))
    r[:, 0] = 1000
    r[:, 13] = 1500
    r[:, 11] = 2.0e4
    r[:, 4], r[:, 10] = 8, 1
    # CTAs 10..19 end late; every one of them was already 1 us late at a quarter
    late = np.arange(n) >= 10
    r[:, 7] = 1000 + np.where(late, 6000, 5000)
    r[:, 14] = 1000 + np.where(late, 11000, 10000)
    r[:, 15] = 1000 + np.where(late, 16000, 15000)
    r[:, 12] = 1000 + np.where(late, 22000, 20000)
    text = probe_stages.summary("plan", r)
    assert "quarter marks (1/4, 1/2, 3/4, end) latest 10 6.0/11.0/16.0/22.0 us, rest " \
           "5.0/10.0/15.0/20.0 us" in text
    r[:, 15] = 0                                    # a CTA of fewer than 4 units marks nothing
    assert "fewer than 4 units" in probe_stages.summary("plan", r)


def test_segments_and_shared_sms_in_the_summary():
    n = 8
    r = np.zeros((n, 16))
    r[:, 0], r[:, 13], r[:, 11], r[:, 4] = 1000, 1500, 2.0e4, 8
    r[:, 10] = [2, 3] * 4                           # segments
    r[:, 6] = [0, 1, 2, 3, 0, 1, 2, 3]              # CTAs i and i + 4 share SM i
    slow = r[:, 10] == 3
    for c, t in ((7, 5000), (14, 10000), (15, 15000), (12, 20000)):
        r[:, c] = 1000 + t * np.where(slow, 1.2, 1.0)
    text = probe_stages.summary("plan", r)
    assert "quarter marks by segments: 2 seg 5.0/10.0/15.0/20.0, 3 seg 6.0/12.0/18.0/24.0 us" in text
    # SM-mates end together (spread 0), neighbours alternate slow and fast (4 us)
    assert "end spread within an SM 0.0 us (median of 4 SMs), between neighbouring CTAs 4.0 us" in text
