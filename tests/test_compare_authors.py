"""benchmarks/compare_authors.py: its mnog side at a tiny scale, without the authors' code."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mnog_side_runs_without_the_authors_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.compare_authors", "--profile", "smoke", "--per-class",
                           "20", "--test-per-class", "5", "--trials", "1", "--train-epochs", "2", "--methods", "GD",
                           "L1Sparse"], cwd=ROOT, env={**os.environ, "MNOG_RESULTS": str(tmp_path)},
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "compare_authors" / "figure6-smoke"
    table = pd.read_csv(out / "agreement.csv")
    assert table["row"].tolist() == ["GD", "GD, fused AdamW", "L1Sparse", "L1Sparse, schedule per_epoch"]
    assert table["authors_quality"].isna().all() and table["max_parameter_difference"].isna().all()
    assert table["mnog_quality"].between(0, 1).all() and (table["trials"] == 1).all()
    assert json.loads(table.loc[2, "mnog_protocol"]) == {"bn_stats": "both", "adamw": "default"}
    run = json.loads((out / "run.json").read_text())
    assert run["authors_commit"] is None and "--methods" in run["command"]
    assert "mnog side only" in proc.stdout


def test_sweep_needs_the_authors_code(capsys):
    from benchmarks.compare_authors import main
    with pytest.raises(SystemExit) as exit:
        main(["--sweep"])
    assert exit.value.code == 2 and "needs --authors" in capsys.readouterr().err
