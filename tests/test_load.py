"""A small run of benchmarks/bench_load.py: a server under several short sessions, with a cancelled
generation, ends with no errors, no work left running and its temp files bounded. (The full run,
8 clients and 100+ generations, and its memory figures: ``python benchmarks/bench_load.py``.)"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_short_sessions_under_load():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_load

    args = bench_load.parser().parse_args(["--tiny", "--clients", "2", "--generations", "3", "--images", "2",
                                           "--steps", "3", "--corrector-rounds", "1", "--idle", "2"])
    r = bench_load.run(args)
    assert r["errors"] == [] and r["generations"] == 3 and r["cancelled"] >= 1
    assert r["idle_cpu_s"] < 0.5                                   # nothing left computing after the last request
    assert r["end"]["threads"] <= r["after_first_wave"]["threads"] + 4
    assert r["end"]["disk_mb"] < 20
