"""The artifact scripts at the smoke profile, in subprocesses, as a user runs them."""
import ast
import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
METHODS = {"Retrain", "MinNorm-OG", "GD", "GA", "NGP", "NGD", "Ridge", "L1Sparse"}
pytestmark = pytest.mark.slow


def command(script, *args):
    return [sys.executable, "-m", f"artifact.{script}", *args]


def env(results):
    return {**os.environ, "MNOG_RESULTS": str(results), "PROFILE": "smoke"}


def run(script, results, *args, timeout=2400):
    proc = subprocess.run(command(script, *args), cwd=ROOT, env=env(results), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def plan_table(stdout: str) -> dict[str, dict]:
    """The rows of `make plan`'s table: {target: {models, to train, jobs, to run, projected}}."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[1].isdigit():
            rows[cells[0]] = {"models": int(cells[1]), "to train": int(cells[2]), "jobs": int(cells[3]),
                              "to run": int(cells[4]), "projected": cells[7]}
    return rows


def jobs_run(stdout: str) -> list[tuple[int, int]]:
    """(to run, of) of every sweep a script ran: its "desc: N of M jobs to run" lines."""
    return [(int(a), int(b)) for a, b in re.findall(r": (\d+) of (\d+) jobs to run", stdout)]


def planned(target, results):
    """`make plan`'s row of `target` at the smoke profile for `results`, without measuring."""
    proc = subprocess.run([sys.executable, "-m", "mnog.plan", "--profile", "smoke", "--no-measure", target],
                          cwd=ROOT, env=env(results), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return plan_table(proc.stdout)[target]


def records(results):
    return [json.loads(line) for line in (results / "table5" / "records.jsonl").read_text().splitlines()]


# artifact/docs.py renders the report's sections into docs/: neither is a table's or a figure's script.
TOOLS = {"docs.py": {"artifact.report"}}


def test_no_script_imports_another_script():
    """One flat script per table or figure: what two of them share lives in mnog/."""
    for path in sorted((ROOT / "artifact").glob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module == "artifact":
                imported |= {f"artifact.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        scripts = {m for m in imported if m.startswith("artifact.")}
        assert scripts <= TOOLS.get(path.name, set()), f"{path.name} imports {sorted(scripts)}"

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    before = planned("table5", results)
    return results, run("table5_data_poisoning", results), before


def test_make_plan_counts_what_table5_then_runs_and_trains(smoke):
    results, proc, before = smoke
    assert jobs_run(proc.stdout) == [(before["to run"], before["jobs"])] and before["to run"] > 0
    assert 4 * len(list((results / "cache").glob("poisoned-*.pt"))) == before["to train"] == 4   # 4 MLPs, one file
    after = planned("table5", results)
    assert (after["to run"], after["to train"], after["jobs"]) == (0, 0, before["jobs"])


def test_table5_smoke_writes_table_comparison_and_records(smoke):
    results, proc, _ = smoke
    out = results / "table5" / "smoke"
    assert {"table5.md", "table5.csv", "comparison.csv", "config.json"} <= {p.name for p in out.iterdir()}
    best = pd.read_csv(out / "table5.csv")
    assert set(best["method"]) == METHODS and set(best["epochs"]) == {10, 100, 1000}
    assert (best["n"] == 4).all() and (best["low"] <= best["median"]).all() and (best["median"] <= best["high"]).all()
    comparison = pd.read_csv(out / "comparison.csv")
    assert len(comparison) == 24 and {"median", "median_paper", "check", "pass"} <= set(comparison.columns)
    rows = records(results)
    assert len({r["key"] for r in rows}) == len(rows) == 4 * len(rows) // 4
    one = rows[0]
    assert {"config", "trial", "metrics", "wall_s", "provenance", "setting"} <= set(one)
    assert {"git_commit", "torch", "device"} <= set(one["provenance"])
    config = json.loads((out / "config.json").read_text())
    assert config["profile"] == "smoke" and config["config"]["trials"] == 4
    assert "Beside the paper" in proc.stdout and "| GA" in proc.stdout
    minnorm = [r["config"] for r in rows if r["method"] == "MinNorm-OG"]
    assert minnorm and all((c["order"], c["precision"]) == ("project_first", "float32") for c in minnorm)


def test_table5_smoke_with_the_authors_stale_gradient_and_float64_g_writes_a_variant(smoke):
    results, _, _ = smoke
    before = len(records(results))
    proc = run("table5_data_poisoning", results, "--minnorm-order", "authors", "--minnorm-precision", "float64",
               "--budgets", "10")
    variant = results / "table5" / "smoke+minnorm_order=authors,minnorm_precision=float64"
    assert (variant / "table5.md").exists() and "order authors, G in float64" in proc.stdout
    rows = records(results)
    added = rows[before:]
    # Only MinNorm-OG's jobs run again; every other method's records are shared.
    assert added and {r["method"] for r in added} == {"MinNorm-OG"}
    assert all((r["config"]["order"], r["config"]["precision"]) == ("authors", "float64") for r in added)
    assert len({r["key"] for r in rows}) == len(rows)


def test_rerunning_table5_recomputes_nothing(smoke):
    results, _, _ = smoke
    before = (results / "table5" / "records.jsonl").read_text()
    proc = run("table5_data_poisoning", results)
    assert (results / "table5" / "records.jsonl").read_text() == before
    assert "jobs to run" not in proc.stdout and "poisoned models θ*:" not in proc.stderr   # no job, no training


def test_a_record_edited_by_hand_fails_check_and_shows_in_the_report(smoke, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(smoke[0], results)
    best = pd.read_csv(results / "table5" / "smoke" / "table5.csv")
    row = best[(best["method"] == "MinNorm-OG") & (best["epochs"] == 10)].iloc[0]
    store = results / "table5" / "records.jsonl"
    edited = []
    for record in map(json.loads, store.read_text().splitlines()):
        if (record["method"], record["epochs"], json.dumps(record["config"], sort_keys=True)) == (
                "MinNorm-OG", 10, row["config"]):
            record["metrics"]["sup_error"] = 0.01                       # better than anything: still selected
        edited.append(json.dumps(record))
    store.write_text("\n".join(edited) + "\n")
    proc = subprocess.run(command("table5_data_poisoning", "--enforce"), cwd=ROOT, env=env(results),
                          capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 1 and "jobs to run" not in proc.stdout, proc.stderr[-3000:]   # no job ran again
    claim = "the records of the selected configurations are what their re-run gives"
    stored = json.loads((results / "table5" / "smoke" / "claims.json").read_text())
    [failed] = [c for c in stored if c["claim"] == claim]
    assert not failed["holds"] and "MinNorm-OG at T = 10, trial 1: stored 0.01, re-run" in failed["detail"]
    report = [sys.executable, "-m", "artifact.report"]
    check = subprocess.run([*report, "check", "--profile", "smoke", "--results", str(results)], cwd=ROOT,
                           capture_output=True, text=True, timeout=1800)
    assert check.returncode == 1 and f"FAIL  table5: claim does not hold: {claim} (MinNorm-OG at T = 10" in check.stdout
    written = subprocess.run([*report, "write", "--profile", "smoke", "--results", str(results)], cwd=ROOT,
                             capture_output=True, text=True, timeout=1800)
    assert written.returncode == 0 and claim in (results / "REPORT.md").read_text()


def test_figure1_smoke_plots_every_method_from_the_same_results(smoke):
    results, _, _ = smoke
    run("figure1_data_poisoning_fits", results, "--epochs", "100")
    out = results / "figure1" / "smoke"
    assert (out / "figure1.png").stat().st_size > 10_000 and (out / "figure1.pdf").exists()
    curves = pd.read_csv(out / "figure1.csv")
    assert METHODS | {"x", "sin", "poisoned"} == set(curves.columns) and len(curves) == 1000
    # Each plotted fit is the one behind Table 5's record: its sup error is the record's.
    shown = json.loads((out / "config.json").read_text())
    for method, config in shown["configurations"].items():
        record = next(r for r in records(results) if r["method"] == method and r["epochs"] == 100
                      and r["trial"] == 1 and r["config"] == config)
        assert shown["sup_error"][method] == pytest.approx(record["metrics"]["sup_error"], rel=1e-6)
        assert (curves[method] - curves["sin"]).abs().max() == pytest.approx(record["metrics"]["sup_error"], rel=1e-5)
    with pytest.raises(AssertionError, match=r"has trials \[1, 2, 3, 4\], not 99"):
        run("figure1_data_poisoning_fits", results, "--trial", "99")


def test_two_runs_of_table5_on_one_results_folder_cooperate(tmp_path):
    # Two runs at once: each waits for the other (naming it) where both would train θ* or run
    # the sweep, then reuses what it stored: one complete store, nothing computed twice. This
    # test holds θ*'s lock until both runs wait for it, so that they overlap however they are
    # scheduled.
    # T = 10 only (8 of the sweep's 24 jobs): the runs cooperate the same way at every budget.
    from mnog.poisoning import PROFILES, DataPoisoning, jobs
    from mnog.results import exclusive, stable_hash
    cfg = dataclasses.replace(PROFILES["smoke"], budgets=(10,))
    lock = tmp_path / "cache" / f".poisoned-{stable_hash(DataPoisoning(cfg).cache_spec())}.pt.lock"
    logs = [(tmp_path / f"run{i}.out", tmp_path / f"run{i}.err") for i in range(2)]
    with exclusive(lock, "the test"):
        runs = [subprocess.Popen(command("table5_data_poisoning", "--budgets", "10"), cwd=ROOT, env=env(tmp_path), text=True,
                                 stdout=open(out, "w"), stderr=open(err, "w")) for out, err in logs]
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline and not all(f"waiting for pid {os.getpid()} " in err.read_text()
                                                      or run.poll() is not None for run, (_, err) in zip(runs, logs)):
            time.sleep(0.05)
        waited = [err.read_text() for _, err in logs]
    assert [r.wait(timeout=2400) for r in runs] == [0, 0], [err.read_text()[-3000:] for _, err in logs]
    assert all(f"waiting for pid {os.getpid()} " in text for text in waited), waited
    lines = (tmp_path / "table5" / "records.jsonl").read_text().splitlines()
    keys = {json.loads(line)["key"] for line in lines}
    assert len(lines) == len(keys) == len(jobs(cfg)) * cfg.trials
    assert all(len(out.read_text().splitlines()) > 5 for out, _ in logs)          # both printed Table 5


def test_a_killed_sweep_resumes_where_it_stopped(tmp_path):
    args = ("--grid-values", "2", "--budgets", "10", "--trials", "2")
    proc = subprocess.Popen(command("table5_data_poisoning", *args), cwd=ROOT, env=env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = tmp_path / "table5" / "records.jsonl"
    deadline = time.monotonic() + 2400
    while proc.poll() is None and time.monotonic() < deadline:
        if store.exists():
            with open(store, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_SH)         # the sweep cannot append meanwhile (RecordStore.append)
                if f.read().count(b"\n") >= 20:         # 20 of 84 records: the sweep is far from done
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    break
        time.sleep(0.05)
    assert proc.wait() == -signal.SIGKILL, "the sweep ended before it could be interrupted"
    survived = store.read_text().splitlines()
    assert 20 <= len(survived) < 84
    run("table5_data_poisoning", tmp_path, *args)
    final = store.read_text().splitlines()
    assert final[:len(survived)] == survived                  # finished records were kept, not recomputed
    keys = [json.loads(line)["key"] for line in final]
    assert len(keys) == len(set(keys)) > len(survived)
