"""`make plan` and `--plan` (mnog.plan): the counts are the sweeps' own, planning runs nothing;
several workers per device (--workers-per-gpu) store the records of one."""
import importlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mnog.results
from mnog import executors, plan
from mnog.errors import cli
from mnog.sweep import Job
from mnog.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_executors  # noqa: E402  (its synthetic sweep and helpers)
from test_artifacts import plan_table  # noqa: E402


def python(results, *args, env=(), timeout=1800):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MNOG_RESULTS": str(results), **dict(env)})
    return proc


@pytest.mark.slow
def test_make_plan_at_smoke_plans_every_target_measures_what_no_calibration_has_and_runs_nothing(tmp_path):
    """`make plan` on every target, then with measuring on two (each recipe is measured the same
    way). That its counts are what the sweeps then run is checked where the sweeps run anyway:
    tests/test_artifacts.py (table5) and test_artifacts_images.py (figure6)."""
    proc = python(tmp_path, "-m", "mnog.plan", "--profile", "smoke", "--no-measure")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = plan_table(proc.stdout)
    assert set(table) == {t.name for t in TARGETS} | {"all"}               # every target
    assert table["figure2"]["to run"] == 0 < table["figure2"]["jobs"]      # Figures 6 and 7's records
    assert table["table5"]["to train"] == 4 and table["table5"]["to run"] == table["table5"]["jobs"] > 0
    proc = python(tmp_path, "-m", "mnog.plan", "--profile", "smoke", "table5", "figure6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = plan_table(proc.stdout)
    assert "no calibration" in proc.stdout and (tmp_path / f"calibration-{plan.device_slug()}.json").is_file()
    assert all(row["projected"] != "unknown" for row in measured.values()) and "table5" in measured
    assert {k: v for k, v in measured["figure6"].items() if k != "projected"} == {
        k: v for k, v in table["figure6"].items() if k != "projected"}
    assert not (tmp_path / "cache").exists() and not list(tmp_path.glob("*/records.jsonl"))   # nothing ran


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
def test_bad_plan_and_worker_options_are_one_line(tmp_path, argv, message, capsys, monkeypatch):
    module = importlib.import_module(argv[1])
    for owner in (mnog.results, plan, module):                        # nothing may be written there
        monkeypatch.setattr(owner, "RESULTS", tmp_path, raising=False)
    try:                                                               # as `python -m` runs it
        code = cli(lambda: module.main(argv[2:]))
    except SystemExit as stop:                                         # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


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
