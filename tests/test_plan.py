"""`make plan` and `--plan` (mnog.plan): the counts are the sweeps' own, planning runs nothing;
several workers per device (--workers-per-gpu) store the records of one."""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mnog import executors, plan
from mnog.sweep import Job
from mnog.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_executors  # noqa: E402  (its synthetic sweep and helpers)


def python(results, *args, env=(), timeout=1800):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MNOG_RESULTS": str(results), **dict(env)})
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


@pytest.mark.slow
def test_make_plan_at_smoke_counts_what_the_sweeps_then_run(tmp_path):
    proc = python(tmp_path, "-m", "mnog.plan", "--profile", "smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = plan_table(proc.stdout)
    assert set(table) == {t.name for t in TARGETS} | {"all"}               # every target
    assert "no calibration" in proc.stdout and (tmp_path / f"calibration-{plan.device_slug()}.json").is_file()
    assert not (tmp_path / "cache").exists() and not list(tmp_path.glob("*/records.jsonl"))   # nothing ran
    assert all(row["projected"] != "unknown" for row in table.values())
    assert table["figure2"]["to run"] == 0 < table["figure2"]["jobs"]      # Figures 6 and 7's records

    for target, script in [("table5", "table5_data_poisoning"), ("figure6", "figure2_label_erasure")]:
        args = [a for t in TARGETS if t.name == target for a in t.args]
        ran = python(tmp_path, "-m", f"artifact.{script}", *args, "--profile", "smoke", "--executor", "serial")
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        assert jobs_run(ran.stdout) == [(table[target]["to run"], table[target]["jobs"])]
        trained = len(list((tmp_path / "cache").glob("erasure-*.pt" if target == "figure6" else "poisoned-*.pt")))
        assert trained * (4 if target == "table5" else 1) == table[target]["to train"]

    again = plan_table(python(tmp_path, "-m", "mnog.plan", "--profile", "smoke", "table5", "figure6").stdout)
    assert again["table5"]["to run"] == again["figure6"]["to run"] == 0
    assert again["table5"]["to train"] == again["figure6"]["to train"] == 0
    assert again["table5"]["jobs"] == table["table5"]["jobs"]


def test_plan_on_a_script_takes_its_overrides_and_runs_nothing(tmp_path):
    proc = python(tmp_path, "-m", "artifact.table5_data_poisoning", "--profile", "smoke", "--budgets", "10",
                  "--trials", "2", "--plan")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "models: 2, 2 to train" in proc.stdout
    from mnog import poisoning as t5
    cfg = t5.PROFILES["smoke"].__class__(**{**t5.PROFILES["smoke"].__dict__, "budgets": (10,), "trials": 2})
    assert f"sweep table5: {len(t5.jobs(cfg))} jobs, {len(t5.jobs(cfg))} to run" in proc.stdout
    assert "projected: " in proc.stdout and not (tmp_path / "cache").exists()


def test_plan_without_a_calibration_says_what_it_measures_and_how_long_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "RESULTS", tmp_path)
    monkeypatch.setattr(plan, "COMMITTED", tmp_path / "committed")              # no calibration of this device
    out = io.StringIO()
    lines_before = []

    def measure(recipe, quick=False):                                         # what was said before measuring
        lines_before.append(out.getvalue().splitlines())
        labels = [label for label, _, _ in recipe.variants]
        return {"train_per_s": 1e4, "step_s": dict.fromkeys(labels, 1e-3), "run_s": dict.fromkeys(labels, 0.0),
                "score_per_s": 1e3, "units": "epochs", "seconds": 2.0, "quick": quick}

    monkeypatch.setattr(plan, "measure", measure)
    lines = plan.plan_targets(["table5"], "smoke", out=out)
    said = lines_before[0]
    assert len(lines_before) == 1 and len(said) == 2                          # one recipe, announced first
    assert said[1].startswith("  [1/1] 4 MLPs 1-300-300-1")
    assert said[0].startswith(f"no calibration of 1 recipe(s) for {plan.device_name()}")
    assert re.search(r"about \d+ s in all on 2 CPU cores", said[0]) and "make calibrate" in said[0]
    text = out.getvalue().splitlines()
    assert re.fullmatch(r"  \[1/1\] 4 MLPs 1-300-300-1 .*: about \d+ s \.\.\. 2 s", text[1])
    assert lines[0].seconds is not None and text[2].startswith("plan at profile smoke")


def test_a_minnorm_job_costs_projecting_steps_and_descent_steps():
    job = Job.of("MinNorm-OG", 10, {"eta": 1e-3, "lambda_reg": 0.1, "gamma_reg": 0.9, "t_gd": 2, "t_proj": 3,
                                    "n_pert": 50})
    assert plan.method_steps(job, 4) == (("MinNorm-OG", 12), ("GD", 28))        # epochs 0, 3, 6 project
    assert plan.method_steps(Job.of("GD", 5, {"eta": 1e-3}), 2) == (("GD", 10),)


@pytest.mark.parametrize("argv, message", [
    (["-m", "artifact.table2_representation_collapse", "--profile", "smoke", "--workers-per-gpu", "0", "--plan"],
     "--workers-per-gpu must be at least 1, got 0"),
    (["-m", "artifact.table2_representation_collapse", "--profile", "huge", "--plan"], "invalid choice: 'huge'"),
    (["-m", "mnog.plan", "--profile", "huge"], "invalid choice: 'huge'"),
    (["-m", "mnog.plan", "--profile", "smoke", "table99"], "unknown target(s) table99"),
    (["-m", "artifact.table5_data_poisoning", "--executor", "serial", "--workers-per-gpu", "2"],
     "--workers-per-gpu > 1 needs --executor local or ray"),
])
def test_bad_plan_and_worker_options_are_one_line(tmp_path, argv, message):
    proc = python(tmp_path, *argv)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# -- several workers per device ----------------------------------------------------------------------

def test_two_workers_per_device_store_the_records_of_one(tmp_path, serial_records):
    executor = executors.Local(per_device=2)
    assert executor.workers == 2 * executors.cpu_cores()
    records = test_executors.sweep(tmp_path, executor)
    assert test_executors.stable(records) == serial_records and len(records) == 24


def test_workers_per_gpu_pins_n_workers_to_every_gpu(tmp_path):
    with executors.Local(gpus=["0", "1"], per_device=2) as executor:
        seen = test_executors.identities(executor, tmp_path)
    assert executor.workers == 4 and sorted(device for device, _ in seen.values()) == ["0", "0", "1", "1"]
    assert "2 per GPU" in executor.describe()


@pytest.fixture(scope="module")
def serial_records(tmp_path_factory):
    return test_executors.stable(test_executors.sweep(tmp_path_factory.mktemp("serial"), executors.Serial()))


@pytest.mark.slow
def test_table5_smoke_sweep_with_two_workers_per_core_stores_the_serial_records(tmp_path):
    args = ["-m", "artifact.table5_data_poisoning", "--profile", "smoke", "--budgets", "10", "--no-enforce"]
    serial = python(tmp_path / "serial", *args, "--executor", "serial", env={"OMP_NUM_THREADS": "1"})
    assert serial.returncode == 0, serial.stderr[-2000:]
    (tmp_path / "shared").mkdir()
    os.symlink(tmp_path / "serial" / "cache", tmp_path / "shared" / "cache")
    shared = python(tmp_path / "shared", *args, "--workers-per-gpu", "2")
    assert shared.returncode == 0, shared.stderr[-2000:]
    assert "worker process(es), 2 per core" in shared.stdout
    load = lambda folder: test_executors.stable(  # noqa: E731
        map(json.loads, (folder / "table5" / "records.jsonl").read_text().splitlines()))
    assert load(tmp_path / "shared") == load(tmp_path / "serial") and len(load(tmp_path / "serial")) == 32
