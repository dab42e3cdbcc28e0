"""Records, resumable sweeps, selection and the comparison with the paper's tables."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnog.compare import check, compare, comparison_markdown, load_paper_table
from mnog.results import RecordStore
from mnog.sweep import Job, central_range, method_grid, run_sweep, select_best, summarize

ROOT = Path(__file__).resolve().parent.parent


def rec(key, **fields):
    return {"key": key, "method": "GD", "trial": 1, **fields}


def test_a_torn_last_line_is_never_read_back_and_is_cut_before_appending(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl")
    store.append([rec("a", v=1), rec("b", v=2)])
    with open(store.path, "ab") as f:
        f.write(b'{"key": "c", "v"')                      # a crash in the middle of a write
    with pytest.warns(UserWarning, match="incomplete record"):
        assert [r["key"] for r in store.load()] == ["a", "b"]
    store.append([rec("d", v=4)])
    assert [r["key"] for r in store.load()] == ["a", "b", "d"]
    assert store.path.read_text().count("\n") == 3


def test_a_complete_but_unterminated_line_is_also_discarded(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl")
    store.append([rec("a")])
    with open(store.path, "ab") as f:
        f.write(b'{"key": "b", "method": "GD", "trial": 1}')   # no newline: the write was cut short
    with pytest.warns(UserWarning):
        assert [r["key"] for r in store.load()] == ["a"]


def fake_runner(calls, fail_at=None):
    def run(job, trials):
        calls.append((job.method, job.config["eta"], tuple(trials)))
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt  # the user stops the sweep
        return {t: {"err": job.config["eta"] * t} for t in trials}
    return run


def test_an_interrupted_sweep_resumes_without_recomputing(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl")
    jobs = [Job.of("GD", 10, {"eta": eta}) for eta in (1.0, 2.0, 3.0, 4.0)]
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_sweep(jobs, [1, 2, 3], fake_runner(calls, fail_at=3), store, {"s": 1})
    assert len(store.load()) == 6                           # two jobs × three trials survived
    calls.clear()
    records = run_sweep(jobs, [1, 2, 3], fake_runner(calls), store, {"s": 1})
    assert [c[1] for c in calls] == [3.0, 4.0]                # only the missing jobs ran
    assert len(records) == 12 and len({r["key"] for r in records}) == 12
    assert all(r["provenance"]["torch"] and r["wall_s"] >= 0 for r in records)
    # Another setting shares nothing with this one.
    calls.clear()
    run_sweep(jobs[:1], [1], fake_runner(calls), store, {"s": 2})
    assert len(calls) == 1


def test_missing_trials_of_a_job_are_run_alone(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl")
    job = Job.of("GD", 10, {"eta": 1.0})
    run_sweep([job], [1, 2], fake_runner([]), store, {})
    calls = []
    run_sweep([job], [1, 2, 3, 4], fake_runner(calls), store, {})
    assert calls == [("GD", 1.0, (3, 4))]


def test_central_range_discards_a_quarter_at_each_end():
    assert central_range(np.arange(10.0)) == (2.0, 7.0)      # ⌊10/4⌋ = 2 at each end
    assert central_range(np.arange(4.0)) == (1.0, 2.0)


def test_selection_by_median_with_ties_broken_by_the_narrower_range():
    def recs(method, config, values):
        return [{"method": method, "epochs": 10, "config": config, "trial": t, "metrics": {"e": v}}
                for t, v in enumerate(values)]
    records = (recs("GD", {"eta": 1}, [1, 2, 3, 4, 100]) + recs("GD", {"eta": 2}, [0, 2, 3, 9, 9])
               + recs("GD", {"eta": 3}, [2.5, 2.9, 3, 3.1, 3.5]) + recs("GA", {"eta": 1}, [1, float("nan"), 1, 1, 1]))
    best = select_best(summarize(records, "e"), n=5).set_index("method")
    assert json.loads(best.loc["GD", "config"]) == {"eta": 3}   # median 3 for all; narrowest range wins
    # A diverged (NaN) trial counts as +inf: it is discarded from the central range, not the mean.
    assert best.loc["GA", "median"] == 1 and best.loc["GA", "high"] == 1 and best.loc["GA", "mean"] == math.inf


def test_method_grid_takes_only_the_axes_a_method_uses():
    axes = {"eta": [1e-3, 1e-4], "lambda_reg": [0.1, 1.0, 3.0], "gamma_reg": [0.5], "t_gd": [1], "t_proj": [1],
            "n_pert": [50], "sigma": [0.1, 1.0], "lambda_ga": [0.1]}
    assert len(method_grid("GD", axes)) == 2
    assert len(method_grid("NGD", axes)) == 4
    assert len(method_grid("Ridge", axes)) == 6
    assert all(c["lambda_reg"] <= 1 for c in method_grid("MinNorm-OG", axes)) and len(method_grid("MinNorm-OG", axes)) == 4
    assert len(method_grid("Ridge", axes, max_values=1)) == 1


def test_table7_grid_sizes_match_the_paper():
    axes = json.loads((load_paper_table.__globals__["PAPER_TABLES"] / "table7.json").read_text())
    assert len(method_grid("MinNorm-OG", axes["100"])) == 72
    assert len(method_grid("MinNorm-OG", axes["1000"])) == 162
    assert len(method_grid("NGP", axes["10"])) == 12


def test_paper_table5_holds_the_paper_numbers():
    paper = load_paper_table("table5").set_index(["epochs", "method"])
    assert len(paper) == 24
    assert paper.loc[(100, "MinNorm-OG"), ["median", "low", "high"]].tolist() == [1.08, 1.00, 1.63]
    assert paper.loc[(1000, "GA"), "median"] == 1400


def test_tolerance_checks():
    paper = pd.Series({"median": 1.5, "low": 1.0, "high": 2.0})
    ours = lambda median, low, high: pd.Series({"median": median, "low": low, "high": high})  # noqa: E731
    assert check("overlap", ours(2.5, 1.9, 3.0), paper) and not check("overlap", ours(2.5, 2.1, 3.0), paper)
    assert check("overlap", ours(0.5, 0.2, 1.0), paper) and check("overlap", ours(1.5, 0.1, 9.0), paper)
    assert check("range", ours(1.5, 0, 9), paper) and not check("range", ours(2.1, 1.5, 2.5), paper)
    assert check("at_least:100", ours(1e4, 1, 1e5), paper) and check("at_least:100", ours(math.inf, 1, 2), paper)
    assert not check("at_least:100", ours(50, 40, 60), paper) and not check("range", ours(math.nan, 1, 2), paper)
    with pytest.raises(ValueError, match="unknown check"):
        check("close", ours(1, 1, 1), paper)


def test_compare_marks_failing_cells_and_known_deviations():
    paper = pd.DataFrame({"epochs": [10, 10, 10], "method": ["GD", "GA", "NGP"], "median": [2.0, 3.0, 3.0],
                          "low": [1.5, 2.5, 2.5], "high": [2.5, 3.5, 3.5], "check": ["range"] * 3,
                          "expected": ["pass", "pass", "deviation"]})
    ours = pd.DataFrame({"epochs": [10, 10, 10], "method": ["GD", "GA", "NGP"], "median": [2.2, 9.0, 9.0],
                         "low": [2, 8, 8], "high": [3, 10, 10]})
    result = compare(ours, paper, ["epochs", "method"]).set_index("method")
    assert result.loc["GD", "pass"] and result.loc["GD", "ok"]
    assert not result.loc["GA", "pass"] and not result.loc["GA", "ok"]
    assert not result.loc["NGP", "pass"] and result.loc["NGP", "ok"]     # failing, but documented
    text = comparison_markdown(result.reset_index(), ["epochs", "method"], ("median", "low", "high"))
    assert "✗ known deviation" in text and text.count("✗") == 2


HAMMER = """
import os, sys
from mnog.results import RecordStore
os.fsync = lambda fd: None   # the race is in the repair and the append, not the flush: keep the test fast
store = RecordStore(sys.argv[1])
for b in range(int(sys.argv[3])):
    store.append([{"key": f"{sys.argv[2]}-{b}-{i}", "method": "GD", "trial": 1, "pad": "x" * 100} for i in range(4)])
"""


def test_two_processes_appending_to_one_store_lose_and_duplicate_nothing(tmp_path):
    # Without the lock, the torn-line repair of one writer cut the other's append in progress
    # (8 of 24,000 records lost in this very test).
    path = tmp_path / "records.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", HAMMER, str(path), name, "3000"], cwd=ROOT)
               for name in ("a", "b")]
    assert [w.wait(timeout=1800) for w in writers] == [0, 0]
    lines = path.read_text().splitlines()
    keys = {r["key"] for r in RecordStore(path).load()}
    assert len(lines) == len(keys) == 2 * 3000 * 4


def test_a_second_run_of_the_same_work_waits_and_names_the_first(tmp_path):
    lock = tmp_path / ".work.lock"
    script = ("import sys\nfrom pathlib import Path\nfrom mnog.results import exclusive\n"
              "with exclusive(Path(sys.argv[1]), sys.argv[2]):\n    print('holding', flush=True)\n    input()\n")
    first = subprocess.Popen([sys.executable, "-c", script, str(lock), "first"], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert first.stdout.readline().strip() == "holding"
    second = subprocess.Popen([sys.executable, "-c", script, str(lock), "second"], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    waiting = second.stderr.readline()                            # blocks until the second run has to wait
    assert waiting.startswith(f"second: waiting for pid {first.pid} on") and str(lock) in waiting
    first.communicate("\n", timeout=900)                          # the first run ends ...
    assert second.stdout.readline().strip() == "holding"          # ... and the second goes on
    second.communicate("\n", timeout=900)
    assert first.returncode == second.returncode == 0


def test_lines_that_are_json_but_not_records_are_skipped_with_a_warning(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl")
    store.append([rec("a")])
    with open(store.path, "a") as f:
        f.write('42\n{"key": "b", "trial": 1}\n["key"]\n')
    with pytest.warns(UserWarning, match="not a record"):
        assert [r["key"] for r in store.load()] == ["a"]


def test_a_trial_whose_model_diverged_is_recorded_as_diverged_and_ranks_last(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl")

    def run(job, trials):                                       # η = 2 diverges on trial 2
        return {t: {"err": math.nan if (job.config["eta"], t) == (2.0, 2) else job.config["eta"]} for t in trials}

    jobs = [Job.of("GD", 10, {"eta": eta}) for eta in (1.0, 2.0)]
    records = run_sweep(jobs, [1, 2], run, store, {"s": 1})
    diverged = {(r["config"]["eta"], r["trial"]): r["diverged"] for r in records}
    assert diverged == {(1.0, 1): False, (1.0, 2): False, (2.0, 1): False, (2.0, 2): True}
    summary = summarize(records, "err").set_index("config")
    assert math.isinf(summary.loc['{"eta": 2.0}', "mean"])      # a diverged trial counts as the worst value
