"""benchmarks/heuristic_vs_tuned.py: the heuristic scored against a stored
autotune run, and the heuristic's plans on that run's problems were among
the candidates it, or another stored run of the same GPU with the same
kernel source or stored later, timed (a heuristic that picks a plan nobody
measured on these layers shows up here, not only in the next benchmark)."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
spec = importlib.util.spec_from_file_location("heuristic_vs_tuned", ROOT / "benchmarks" / "heuristic_vs_tuned.py")
hvt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hvt)
RUNS = sorted((ROOT / "benchmarks" / "results").glob("autotune-*.json"))


def test_rows_look_up_the_heuristic_plan_among_the_timed_candidates():
    entries = {"4096x4096/g64/m1": {
        "N": 4096, "K": 4096, "group_size": 64, "m_bucket": 1, "m_tuned": 1, "heuristic": "old",
        "heuristic_ms": 0.02,
        "candidates": [{"config": "wgmma_bn8_st8_c256", "ms": 0.015},
                       {"config": "other", "ms": 0.010}, {"config": "broken", "ms": None}]}}
    (key, text, ratio, old, old_ratio), = hvt.rows(entries, 132)
    assert (key, text, old) == ("4096x4096/g64/m1", "wgmma_bn8_st8_c256", "old")
    assert ratio == pytest.approx(1.5) and old_ratio == pytest.approx(2.0)
    # an sm_80 run: the heuristic of the mma.sync families, not timed here
    (_, text, ratio, *_), = hvt.rows(entries, 108, "8.0")
    assert text.startswith("decode_") and ratio != ratio
    entries["4096x4096/g64/m1"]["candidates"] = [{"config": "broken", "ms": None}]
    assert list(hvt.rows(entries, 132)) == [], "a problem with nothing timed is left out"


@pytest.mark.skipif(not RUNS, reason="no stored autotune run in benchmarks/results")
@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_every_heuristic_plan_of_a_stored_run_was_timed(run):
    """On every problem of the run, by that run or by another stored run of
    the same GPU and SM count, at the same token count, where that run timed
    the same kernel source or a newer one (a later run times what a refit
    picks on fewer problems; what ships is the newest source)."""
    data = json.loads(run.read_text())
    rows = list(hvt.rows(data["entries"], data["device"]["sm_count"]))
    same = ("gpu", "sm_count")
    timed_elsewhere = set()
    for other in RUNS:
        doc = json.loads(other.read_text())
        vouches = (doc["device"].get("template_hash") == data["device"].get("template_hash")
                   or doc["updated"] >= data["updated"])
        if vouches and all(doc["device"].get(k) == data["device"].get(k) for k in same):
            timed_elsewhere |= {(key, e["m_tuned"], c["config"]) for key, e in doc["entries"].items()
                                for c in e["candidates"] if c.get("ms") is not None}
    untimed = [(key, text) for key, text, ratio, *_ in rows
               if ratio != ratio and (key, data["entries"][key]["m_tuned"], text) not in timed_elsewhere]
    assert rows and not untimed, (f"the heuristic picks plans no stored run timed on {run.name}'s "
                                  f"problems: {untimed}; time them (lqq autotune) and store the run")
