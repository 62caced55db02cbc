"""`lqq bench`'s table from result rows (no GPU: the rows are made up)."""
from lqq import bench


def _row(layer, M, lqq_ms, TBps, copy, fp16=None):
    r = {"layer": layer, "M": M, "lqq": lqq_ms, "lqq_q": lqq_ms * 1.1, "lqq_TOPs": 10.0,
         "lqq_TBps": TBps, "copy_TBps": copy, "pct_copy": 100 * TBps / copy, "fp16": fp16}
    if fp16:
        r["x_fp16"] = fp16 / lqq_ms
    return r


def test_table_reports_weight_stream_as_share_of_copy_bandwidth():
    rows = [_row("L3-70B down", 1, 0.05, 3.96, 4.40, fp16=0.17), _row("L3-8B o", 1, 0.01, 0.9, 4.40)]
    text = bench.table(rows)
    lines = text.splitlines()
    assert "% of copy" in lines[0]
    assert lines[1].count("---") == lines[0].count("|") - 1   # a column rule for every column
    assert "| 90% |" in lines[2] and "| 20% |" in lines[3]
    assert "3.40x" in lines[2]                                 # 0.17 / 0.05 against fp16
    assert "4.40 TB/s" in text.splitlines()[-1]
    rows[0]["fp16_TBps"], rows[1]["fp16_TBps"] = 4.45, 1.2
    assert text.splitlines()[-1] in bench.table(rows)
    assert bench.table(rows).splitlines()[-1].endswith("FP16 in this run: 4.45 TB/s (read only)")


def test_table_without_copy_measurement():
    rows = [_row("L3-8B o", 1, 0.01, 0.9, 4.40)]
    del rows[0]["copy_TBps"], rows[0]["pct_copy"]
    text = bench.table(rows)
    assert "TB/s (bytes read" not in text
    assert "| - |" in text.splitlines()[2]
