"""benchmarks/ab_table.py: the A/B summary averages each variant's rounds per
shape and compares with the first variant."""
import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "ab_table", Path(__file__).parents[1] / "benchmarks" / "ab_table.py")
ab_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ab_table)


def test_means_and_ratios_per_shape():
    log = ["main M=64 N=8192 K=8192 wgmma_bn64_st8_wg4_c132: 0.0300 ms, 1 TOP/s, 1 TB/s",
           "new M=64 N=8192 K=8192 wgmma_bn64_st8_wg4_c132: 0.0200 ms, 1 TOP/s, 1 TB/s",
           "noise line",
           "new M=64 N=8192 K=8192 wgmma_bn64_st8_wg4_c132: 0.0400 ms, 1 TOP/s, 1 TB/s",
           "main M=64 N=8192 K=8192 wgmma_bn64_st8_wg4_c132: 0.0300 ms, 1 TOP/s, 1 TB/s",
           "main M=1 N=4096 K=4096 wgmma_bn8_st8_c264: 0.0100 ms, 1 TOP/s, 1 TB/s"]
    lines = ab_table.table(log).splitlines()
    assert lines[0] == "| M | N x K | main ms | new ms | new vs main |"
    assert lines[2] == ("| 64 | 8192 x 8192 | 0.0300 (bn64_st8_wg4_c132) | "
                        "0.0300 (bn64_st8_wg4_c132) | 1.00x |")
    assert lines[3] == "| 1 | 4096 x 4096 | 0.0100 (bn8_st8_c264) | - | - |"
