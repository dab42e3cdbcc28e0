"""The documentation's examples run as written (README.md and docs/, each marked
`<!-- tested: NAME -->`): the quick start, the new experiment (as a script of its own, at the
smoke profile), the new method (through mnog.unlearn) and the evaluation (mnog.evaluate)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def example(name: str) -> str:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = [m.group(1) for page in pages
             for m in re.finditer(rf"<!-- tested: {name} -->\n```python\n(.*?)```", page.read_text(), re.S)]
    assert len(found) == 1, f"README.md and docs/ hold {len(found)} examples marked {name}"
    return found[0]


def test_the_quick_start_of_the_readme_runs():
    exec(compile(example("quickstart"), "README.md", "exec"), {})


def test_the_new_experiment_of_the_readme_runs_and_stores_its_records(tmp_path):
    package = tmp_path / "examples"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "corrupted_labels.py").write_text(example("new-experiment"))
    proc = subprocess.run([sys.executable, "-m", "examples.corrupted_labels", "--profile", "smoke"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1800,
                          env={"PATH": "/usr/bin:/bin", "MNOG_RESULTS": str(tmp_path / "results"),
                               "PYTHONPATH": f"{tmp_path}:{ROOT}"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "MinNorm-OG" in proc.stdout and "GD" in proc.stdout
    lines = (tmp_path / "results" / "corrupted_labels" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 2 * (2 + 2)                # 2 configurations of GD and of MinNorm-OG, 2 trials each


def test_the_new_method_of_the_readme_registers_and_unlearns(vector_data):
    import mnog
    namespace = {}
    exec(example("new-method"), namespace)
    try:
        assert "L2SP" in mnog.METHODS and mnog.METHODS["L2SP"].hyperparameters() == ["eta", "lambda_reg"]
        model = mnog.models.mlp(width=8, inputs=5)
        before = [p.detach().clone() for p in model.parameters()]
        retain, forget = vector_data
        mnog.unlearn(model, "L2SP", forget, retain, "mse", epochs=3, eta=1e-2, lambda_reg=1e3)
        moved = sum((p - b).pow(2).sum() for p, b in zip(model.parameters(), before))
        free = mnog.models.mlp(width=8, inputs=5)
        free.load_state_dict(dict(zip(free.state_dict(), before)))
        mnog.unlearn(free, "GD", forget, retain, "mse", epochs=3, eta=1e-2)
        assert 0 < moved < sum((p - b).pow(2).sum() for p, b in zip(free.parameters(), before))
    finally:
        mnog.METHODS.pop("L2SP", None)            # the registry is global: leave it as the other tests expect


def test_the_evaluation_of_the_readme_runs_and_tells_the_unlearned_model_from_retrain(capsys):
    namespace = {}
    exec(example("evaluate"), namespace)
    head, record = namespace["head"], namespace["record"]
    assert "average gap" in capsys.readouterr().out
    # Retrain learnt its random labels by heart and never saw the forget set.
    assert head.reference.ra.value == 1 and head.reference.ua.value > 0.5
    assert head.average_gap.low <= head.average_gap.value <= head.average_gap.high and head.average_gap.value > 0
    assert record["gap_ua"] == head.gap.ua.value and all(isinstance(v, float) for v in record.values())
