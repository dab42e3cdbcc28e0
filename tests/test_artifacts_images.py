"""The image experiments' artifact scripts at the smoke profile, in subprocesses, as a user runs
them (a file of its own, so that `make test`'s two workers share the end-to-end runs evenly)."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from test_artifacts import ROOT, env, jobs_run, planned, records, run

pytestmark = pytest.mark.slow


def test_table2_smoke_runs_every_method_on_a_synthetic_image_set(tmp_path):
    proc = run("table2_representation_collapse", tmp_path)
    out = tmp_path / "table2" / "smoke"
    best = pd.read_csv(out / "table2.csv")
    assert set(best["method"]) == {"Retrain", "MinNorm-OG", "GD", "GA", "NGP", "NGD", "Ridge", "L1Sparse", "SCRUB",
                                   "NPO", "SalUn"}
    assert ((0 <= best["mean"]) & (best["mean"] <= 100)).all() and (best["n"] == 2).all()
    comparison = pd.read_csv(out / "comparison.csv")
    assert len(comparison) == 11 and set(comparison["check"]) == {"sigma:3"}
    config = json.loads((out / "config.json").read_text())
    assert set(config["references"]) == {"1", "2"}
    assert "Representation Collapse" in proc.stdout and "MinNorm-OG is the best unlearning method" in proc.stdout
    cached = list((tmp_path / "cache").glob("collapse-*.pt"))
    assert len(cached) == 4                                   # θ* and GT of both trials, reused by a re-run
    # The field's metrics beside color accuracy: in every record, and for each selected configuration.
    stored = [json.loads(line) for line in (tmp_path / "table2" / "records.jsonl").read_text().splitlines()]
    assert all({"color_accuracy", "ua", "ra", "ta", "mia_efficacy", "gap_ua", "average_gap"} <= set(r["metrics"])
               for r in stored)
    assert {"ua", "average_gap"} <= set(comparison.columns) and "avg gap" in proc.stdout


def test_label_erasure_smoke_plots_frontiers_and_table3_times_every_method(tmp_path):
    before = planned("figure6", tmp_path)
    proc = run("figure2_label_erasure", tmp_path, "--figure", "6")
    # `make plan` counted what the sweep then ran and trained; planned again, nothing is left.
    assert jobs_run(proc.stdout) == [(before["to run"], before["jobs"])] and before["to run"] > 0
    assert len(list((tmp_path / "cache").glob("erasure-*.pt"))) == before["to train"] > 0
    after = planned("figure6", tmp_path)
    assert (after["to run"], after["to train"], after["jobs"]) == (0, 0, before["jobs"])
    out = tmp_path / "figure6" / "smoke"
    assert (out / "figure6.png").stat().st_size > 10_000 and (out / "figure6.pdf").exists()
    points = pd.read_csv(out / "figure6.csv")
    assert set(points["method"]) == {"Retrain", "MinNorm-OG", "GD", "GA", "NGP", "NGD", "Ridge", "L1Sparse", "SCRUB",
                                     "NPO", "SalUn"}
    assert points.groupby("method")["frontier"].any().all()          # every method has a frontier
    assert ((0 <= points["mean_quality"]) & (points["mean_quality"] <= 1) & (points["mean_error"] >= 0)).all()
    assert "frontier is closest to (1, 0)" in proc.stdout and (out / "claims.md").exists()
    stored = [json.loads(line) for line in (tmp_path / "label_erasure" / "records.jsonl").read_text().splitlines()]
    # The authors' protocol, recorded in every record (docs/authors-code.md): BatchNorm sees both batches,
    # float32 training, the authors' SalUn; our MinNorm-OG order.
    assert all((r["setting"]["bn_stats"], r["setting"]["precision"]) == ("both", "float32") for r in stored)
    assert all((r["config"]["mask_loss"], r["config"]["unmasked"]) == ("batch_sum", "decay")
               for r in stored if r["method"] == "SalUn")
    assert all(r["config"]["order"] == "project_first" for r in stored if r["method"] == "MinNorm-OG")
    # The field's metrics per head (class, color) beside the paper's two, in every record and the CSV.
    assert all({"retain_quality", "forget_error", "head0_ua", "head1_ua", "head1_mia_efficacy", "head1_average_gap"}
               <= set(r["metrics"]) for r in stored)
    assert {"head0_ta", "head1_average_gap"} <= set(points.columns) and "color avg gap" in proc.stdout
    fit = json.loads((out / "config.json").read_text())["initial"]["6"]["fit"]  # the regime: does θ* interpolate?
    assert set(fit) == {"initial on D_r", "initial on D_f", "GT on D_r"}
    assert all(0 <= v <= 1 for f in fit.values() for v in f.values()) and "train accuracy" in proc.stdout

    diagnosis = subprocess.run([sys.executable, "-m", "benchmarks.diagnose_erasure", "--profile", "smoke"], cwd=ROOT,
                               env=env(tmp_path), capture_output=True, text=True, timeout=1800)
    assert diagnosis.returncode == 0, diagnosis.stderr[-3000:]
    assert "initial model" not in diagnosis.stderr                     # it reads the figure's cached models
    steps = pd.read_csv(tmp_path / "diagnostics" / "figure6-smoke" / "steps.csv")
    projections = pd.read_csv(tmp_path / "diagnostics" / "figure6-smoke" / "projections.csv")
    per_run = steps.groupby(["bn_stats", "trial", "method"])["step"].agg(list)
    assert len(per_run) == 2 * 2 * 2 and all(s == list(range(len(s))) and len(s) > 1 for s in per_run)
    assert len(projections) == 2 * 2 * (len(per_run.iloc[0]) - 1)     # MinNorm-OG projects before every step
    assert ((projections["rank"] <= projections["k"]) & (projections["orthogonal_share"] > 0)
            & (projections["orthogonal_share"] <= 1)).all()

    proc = run("table3_runtime", tmp_path)                            # reuses the cached initial models
    table = pd.read_csv(tmp_path / "table3" / "smoke" / "table3.csv")
    assert len(table) == 13 and (table[["ours_seconds", "authors_seconds"]] > 0).all().all()
    per_class = table.set_index("method")["subsample_per_class"]
    assert per_class["MinNorm-OG"] == 0                                # the paper's regime: B'_r empty
    assert per_class["MinNorm-OG, n_pert 10"] == per_class["MinNorm-OG, n_pert 10, eval BN"] >= 1
    gd = table.set_index("method").loc["GD"]
    assert gd["ours_ratio_to_gd"] == gd["authors_ratio_to_gd"] == 1.0
    assert "MinNorm-OG / GD" in proc.stdout and "the authors' timer" in proc.stdout
    assert "initial model" not in proc.stderr                          # no model was trained again


def test_random_forgetting_smoke_scores_every_method_by_the_fields_metrics(tmp_path):
    proc = run("random_forgetting", tmp_path)
    table = pd.read_csv(tmp_path / "random_forgetting" / "smoke" / "random_forgetting.csv")
    assert list(table["method"][:2]) == ["GT (retrained on D_r)", "θ* (before unlearning)"]
    assert set(table["method"][2:]) == {"Retrain", "MinNorm-OG", "GD", "GA", "NGP", "NGD", "Ridge", "L1Sparse", "SCRUB",
                                        "NPO", "SalUn"}
    assert table["average_gap"][0] == 0 and (table["average_gap"][1:] > 0).all()     # GT is its own reference
    assert ((table[["ua", "ra", "ta", "mia_efficacy"]] >= 0) & (table[["ua", "ra", "ta", "mia_efficacy"]] <= 1)).all().all()
    stored = [json.loads(line) for line in (tmp_path / "random_forgetting" / "records.jsonl").read_text().splitlines()]
    assert len(stored) == 2 * 11 and all({"ua", "loss_mia_kit", "gap_ta", "average_gap"} <= set(r["metrics"])
                                         for r in stored)
    assert "smallest mean over the trials of the average gap" in proc.stdout and "| SalUn" in proc.stdout
    # SalUn's published rows beside ours: ours where mnog has the method (GT for Retrain), none elsewhere.
    beside = pd.read_csv(tmp_path / "random_forgetting" / "smoke" / "published.csv").set_index("method")
    assert beside.loc["Retrain", "published_ua"] == 5.24 and beside.loc["SalUn", "published_average_gap"] == 1.15
    gt = table.set_index("method").loc["GT (retrained on D_r)"]
    assert beside.loc["Retrain", "ours_ta"] == pytest.approx(100 * gt["ta"])
    assert beside.loc["FT", "ours_ua"] == pytest.approx(100 * table.set_index("method").loc["GD", "ua"])
    assert beside.loc[["RL", "IU", "BE", "BS", "SalUn-soft"], "ours_ua"].isna().all()
    assert "Published (not checked" in proc.stdout and "| l1-sparse" in proc.stdout


def test_ablation_smoke_tables_every_variant_and_keys_their_records_apart(tmp_path):
    proc = run("ablation", tmp_path, "--executor", "serial")
    out = tmp_path / "ablation" / "smoke"
    frame = pd.read_csv(out / "ablation.csv")
    variants = {e: set(part["variant"]) for e, part in frame.groupby("experiment")}
    common = {"MinNorm-OG", "span none", "span none, γ_reg 1", "scope heads", "scope body", "GD", "Ridge"}
    assert variants == {"table5": common, "figure6": common | {"MinNorm-OG, bn_stats loss", "GD, bn_stats loss"},
                        "table2": common | {"MinNorm-OG, bn_stats loss", "GD, bn_stats loss"}}
    assert set(frame.loc[frame["experiment"] == "figure6", "metric"]) == {"retain_quality", "forget_error", "distance"}
    assert (frame["n"] == 2).all() and frame["center"].notna().all()
    text = (out / "ablation.md").read_text()
    assert "### Data Poisoning (Table 5)" in text and "| span none" in text and "| span none" in proc.stdout
    shares = pd.read_csv(out / "shares.csv")
    assert set(shares["variant"]) == {"MinNorm-OG", "scope heads", "scope body", "MinNorm-OG, bn_stats loss"}
    assert shares["span_share"].between(0, 1).all() and (out / "ablation.png").stat().st_size > 10_000
    # Each variant's records sit in its experiment's store, keyed by its options: none takes another's key.
    stored = records(tmp_path)
    assert len({r["key"] for r in stored}) == len(stored)
    assert {(c.get("span", "full"), c.get("scope", "all"), c["gamma_reg"] == 1) for c in (
        r["config"] for r in stored if r["method"] == "MinNorm-OG")} == {
        ("full", "all", False), ("none", "all", False), ("none", "all", True), ("full", "heads", False),
        ("full", "body", False)}
    erasure = [json.loads(line) for line in (tmp_path / "label_erasure" / "records.jsonl").read_text().splitlines()]
    assert {(r["method"], r["setting"]["bn_stats"]) for r in erasure} == {
        ("MinNorm-OG", "both"), ("GD", "both"), ("Ridge", "both"), ("MinNorm-OG", "loss"), ("GD", "loss")}
