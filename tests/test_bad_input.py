"""Bad input, tried as a hostile new user would: every case fails at once with one clear line.

Library calls raise one exception whose message names the problem; the artifact scripts'
command lines exit with status 2 and a single line on stderr, before anything is trained;
known errors (missing data, an unreachable cluster) print as their message alone.
"""
import dataclasses
import importlib
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mnog
import mnog.download
from mnog.colors import CIFAR_NORM, PALETTE, ColoredImages
from mnog.errors import NonFiniteError, cli
from mnog.models import ColorResNet, mlp
from mnog.results import ResultsFolderError, stable_hash, write_json
from mnog.training import Phase, SGDConfig, load_only, train_cached

from conftest import TwoHeadCNN

ROOT = Path(__file__).resolve().parent.parent

# -- the library ---------------------------------------------------------------------------------

X, Y = torch.randn(12, 5), torch.randn(12, 1)
IMAGES = torch.randn(10, 3, 8, 8)
LABELS = (torch.arange(10) % 4, torch.arange(10) % 3)
MINNORM = dict(eta=1e-3, lambda_reg=0.5, gamma_reg=0.8, t_gd=0, t_proj=1, n_pert=8)


class NoParameters(nn.Module):
    def forward(self, x):
        return x


def regression(**overrides):
    call = dict(model=mlp(width=8, inputs=5), method="GD", forget=(X[:3], Y[:3]), retain=(X, Y), loss="mse",
                epochs=2, eta=1e-3)
    return {**call, **overrides}


def classification(**overrides):
    call = dict(model=TwoHeadCNN(), method="GD", forget=(IMAGES[:4], tuple(t[:4] for t in LABELS)),
                retain=(IMAGES, LABELS), loss="cross_entropy", epochs=1, eta=1e-3)
    return {**call, **overrides}


def nan_model():
    model = mlp(width=8, inputs=5)
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan
    return model


LIBRARY = [
    ("mse targets (N,) against outputs (N, 1)", regression(retain=(X, Y.squeeze(1))), ValueError,
     "mse needs targets shaped like the outputs"),
    ("mse targets (N, 7) against outputs (N, 1)", regression(retain=(X, Y.expand(12, 7))), ValueError,
     "mse needs targets shaped like the outputs"),
    ("MinNorm-OG with t_gd = epochs", regression(method="MinNorm-OG", **{**MINNORM, "t_gd": 2}), ValueError,
     "never projects"),
    ("MinNorm-OG with t_gd > epochs", regression(method="MinNorm-OG", **{**MINNORM, "t_gd": 5}), ValueError,
     "never projects"),
    ("a model without parameters", regression(model=NoParameters()), ValueError, "no trainable parameters"),
    ("inputs of the wrong width", regression(retain=(torch.randn(12, 4), Y)), ValueError,
     "cannot take the retain inputs"),
    ("inputs of the wrong dtype", regression(forget=(X[:3].double(), Y[:3])), ValueError,
     "cannot take the forget inputs"),
    ("class labels out of range", classification(retain=(IMAGES, (LABELS[0] + 4, LABELS[1]))), ValueError,
     r"must lie in \[0, 4\)"),
    ("negative class labels", classification(forget=(IMAGES[:4], (-torch.ones(4, dtype=torch.long),
                                                                   LABELS[1][:4]))), ValueError,
     r"must lie in \[0, 4\)"),
    ("float class labels", classification(retain=(IMAGES, (LABELS[0].float(), LABELS[1]))), ValueError,
     "integer class labels"),
    ("one head of targets for a two-head model", classification(retain=(IMAGES, LABELS[0])), ValueError,
     r"2 head\(s\)"),
    ("labels of the wrong shape", classification(retain=(IMAGES, (LABELS[0].view(10, 1), LABELS[1]))), ValueError,
     "one label per sample"),
    ("an unknown method", regression(method="Foo"), ValueError, "unknown method 'Foo'; known methods"),
    ("an unknown hyperparameter", regression(sigma=0.1), TypeError, "unknown hyperparameter"),
    ("a missing hyperparameter", regression(method="NGP"), TypeError, "missing hyperparameter"),
    ("a non-positive learning rate", regression(eta=0.0), ValueError, "eta must be positive"),
    ("a NaN learning rate", regression(eta=math.nan), TypeError, "finite number"),
    ("MinNorm-OG with lambda_reg > 1", regression(method="MinNorm-OG", **{**MINNORM, "lambda_reg": 3.0}),
     ValueError, "lambda_reg <= 1"),
    ("gamma_reg > 1", regression(method="Ridge", lambda_reg=0.1, gamma_reg=1.5), ValueError, "gamma_reg"),
    ("zero epochs", regression(epochs=0), ValueError, "epochs must be a positive integer"),
    ("a zero batch size", regression(batch_size=0), ValueError, "batch_size"),
    ("p_retain 0", regression(p_retain=0.0), ValueError, "p_retain must lie in"),
    ("p_retain keeping no sample", regression(p_retain=0.01, batch_size=2), ValueError, "keeps no sample"),
    ("an empty forget set", regression(forget=(X[:0], Y[:0])), ValueError, "forget set is empty"),
    ("a forget set that is not a pair", regression(forget=X[:3]), TypeError, "must be a pair"),
    ("inputs and targets of different lengths", regression(retain=(X, Y[:5])), ValueError, "targets of lengths"),
    ("an unknown bn_stats", regression(bn_stats="all"), ValueError, "bn_stats"),
    ("an unknown on_nonfinite", regression(on_nonfinite="shrug"), ValueError, "on_nonfinite"),
    ("an unknown MinNorm-OG order", regression(method="MinNorm-OG", order="backwards", **MINNORM), ValueError,
     "order must be one of"),
    ("an unknown MinNorm-OG precision", regression(method="MinNorm-OG", precision="float16", **MINNORM), ValueError,
     "precision must be one of"),
    ("SCRUB on a regression model", regression(method="SCRUB", lambda_reg=0.1, lambda_ga=0.1, t_gd=0), ValueError,
     "classifiers only"),
    ("a NaN model", regression(model=nan_model()), NonFiniteError, "unlearning needs a finite model"),
    ("GA at eta 1e6 diverges", regression(method="GA", eta=1e6, epochs=20), NonFiniteError, "GA diverged"),
    ("NaN forget inputs with GA", regression(method="GA", forget=(torch.full((3, 5), math.nan), Y[:3])),
     NonFiniteError, "GA diverged"),
    ("NaN forget inputs with NGP", regression(method="NGP", lambda_ga=0.5,
                                              forget=(torch.full((3, 5), math.nan), Y[:3])),
     NonFiniteError, "NGP diverged"),
    ("a bool batch size", regression(batch_size=True), ValueError, r"batch_size must be .* got True \(a bool"),
    ("a bool p_retain", regression(p_retain=True), ValueError, r"p_retain must lie in .* got True \(a bool"),
    ("bool epochs", regression(epochs=True), ValueError, "epochs must be a positive integer, got True"),
    ("a bool eta", regression(eta=True), TypeError, "eta must be a finite number, got True"),
    ("a negative seed", regression(seed=-1), ValueError, "seed must be a non-negative integer, got -1"),
    ("a bool seed", regression(seed=False), ValueError, "seed must be a non-negative integer, got False"),
    ("a negative retain_seed", regression(retain_seed=-5), ValueError, "retain_seed must be a non-negative integer"),
]


@pytest.mark.parametrize("case, call, error, message", LIBRARY, ids=[c[0] for c in LIBRARY])
def test_bad_library_input_raises_one_clear_error(case, call, error, message):
    with pytest.raises(error, match=message):
        mnog.unlearn(**call)


def test_a_diverged_run_can_warn_or_report_instead():
    with pytest.warns(UserWarning, match="GA diverged"):
        result = mnog.unlearn(**regression(method="GA", eta=1e6, epochs=20, on_nonfinite="warn"))
    assert not result.finite
    assert mnog.unlearn(**regression(method="GA", eta=1e6, epochs=20, on_nonfinite="ignore")).finite is False
    assert mnog.unlearn(**regression()).finite is True


# -- the command lines ------------------------------------------------------------------------------

CLI = [
    ("table5_data_poisoning", ["--grid-values", "-1"], "--grid-values must be at least 0"),
    ("table5_data_poisoning", ["--width", "0"], "--width must be at least 1"),
    ("table5_data_poisoning", ["--train-epochs", "0"], "--train-epochs must be at least 1"),
    ("table5_data_poisoning", ["--budgets", "0"], "invalid choice: 0"),
    ("table5_data_poisoning", ["--trials", "0"], "--trials must be at least 1"),
    ("table5_data_poisoning", ["--test-points", "0"], "--test-points must be at least 2"),
    ("table5_data_poisoning", ["--train-lr", "nan"], "--train-lr must be a finite number"),
    ("table5_data_poisoning", ["--train-lr", "-1"], "--train-lr must be greater than 0"),
    ("table5_data_poisoning", ["--device", "foo"], "'foo' is not a torch device"),
    ("table5_data_poisoning", ["--device", "cpu:5"], "torch has one CPU device"),
    ("table5_data_poisoning", ["--first-seed", "-1"], "--first-seed must be at least 0, got -1"),
    ("figure2_label_erasure", ["--first-seed", "-3"], "--first-seed must be at least 0, got -3"),
    ("figure2_label_erasure", ["--device", "cpu:1"], "torch has one CPU device"),
    ("table5_data_poisoning", ["--methods", "Foo"], "invalid choice: 'Foo'"),
    ("table5_data_poisoning", ["--methods", "GD", "SalUn"], "invalid choice: 'SalUn'"),
    ("table5_data_poisoning", ["--executor", "dask"], "invalid choice: 'dask'"),
    ("table5_data_poisoning", ["--executor", "ray", "--address", "nohost"], "'nohost' is not HOST:PORT"),
    ("table5_data_poisoning", ["--address", "10.0.0.1:6379"], "it needs --executor ray"),
    ("table5_data_poisoning", ["--workers", "-1"], "workers must be an integer ≥ 0"),
    ("table5_data_poisoning", ["--minnorm-order", "backwards"], "invalid choice: 'backwards'"),
    ("table5_data_poisoning", ["--minnorm-span", "half"], "invalid choice: 'half'"),
    ("figure2_label_erasure", ["--minnorm-scope", "bn"], "invalid choice: 'bn'"),
    ("ablation", ["--image-variants", "SalUn"], "invalid choice: 'SalUn'"),
    ("ablation", ["--experiments", "figure7"], "invalid choice: 'figure7'"),
    ("table5_data_poisoning", ["--trials", "two"], "invalid int value: 'two'"),
    ("table5_data_poisoning", ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ("table5_data_poisoning", ["--profile", "huge"], "invalid choice: 'huge'"),
    ("figure2_label_erasure", ["--figure", "99"], "invalid choice: '99'"),
    ("figure2_label_erasure", ["--dataset", "mnist"], "unknown data set 'mnist'; choose one of cifar10"),
    ("figure2_label_erasure", ["--trials", "0"], "--trials must be at least 1"),
    ("figure2_label_erasure", ["--logit-clamp", "0"], "--logit-clamp must be greater than 0"),
    ("figure2_label_erasure", ["--grids", "mine"], "invalid choice: 'mine'"),
    ("figure2_label_erasure", ["--bn-stats", "some"], "invalid choice: 'some'"),
    ("figure2_label_erasure", ["--width", "0"], "--width must be at least 1"),
    ("table2_representation_collapse", ["--rows", "0.5:3"], "invalid choice: '0.5:3'"),
    ("table2_representation_collapse", ["--p-forget", "0"], "--p-forget must be greater than 0"),
    ("table2_representation_collapse", ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("table2_representation_collapse", ["--precision", "fp8"], "invalid choice: 'fp8'"),
    ("random_forgetting", ["--p-forget", "1.5"], "--p-forget must be below 1, got 1.5"),
    ("table3_runtime", ["--erasure-profile", "nosuch"], "invalid choice: 'nosuch'"),
    ("table3_runtime", ["--target", "0"], "--target must be greater than 0"),
    ("figure1_data_poisoning_fits", ["--epochs", "7"], "invalid choice: 7"),
    ("report", ["run", "nosuch", "--", "true"], "unknown target 'nosuch'"),
    ("report", ["nosuch"], "invalid choice: 'nosuch'"),
]
if not torch.cuda.is_available():
    CLI.append(("table5_data_poisoning", ["--device", "cuda"], "no CUDA device is visible"))


@pytest.mark.parametrize("script, argv, message", CLI, ids=[f"{c[0]} {' '.join(c[1])}" for c in CLI])
def test_bad_command_lines_stop_with_one_line_before_anything_runs(script, argv, message, capsys, monkeypatch,
                                                                   tmp_path):
    module = importlib.import_module(f"artifact.{script}")
    for owner in (mnog.results, module):                               # nothing may be written there
        monkeypatch.setattr(owner, "RESULTS", tmp_path, raising=False)
    main = module.main
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_a_results_folder_that_is_a_file_stops_with_one_line(capsys, monkeypatch, tmp_path):
    results = tmp_path / "results"
    results.write_text("not a folder")
    table5 = importlib.import_module("artifact.table5_data_poisoning")
    for owner in (mnog.results, importlib.import_module("mnog.poisoning"), table5):
        monkeypatch.setattr(owner, "RESULTS", results)
    with pytest.raises(SystemExit) as stop:
        table5.main(["--profile", "smoke"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"the results folder {results} (MNOG_RESULTS) cannot be created" in err


# -- known errors: the message alone, exit status 2 -------------------------------------------------

def test_missing_data_prints_its_message_alone_with_status_2(capsys, monkeypatch, tmp_path):
    figure2 = importlib.import_module("artifact.figure2_label_erasure")
    monkeypatch.setattr(mnog.datasets, "DATA", tmp_path / "data")
    for owner in (mnog.results, figure2):
        monkeypatch.setattr(owner, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(mnog.download, "_download", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    status = cli(lambda: figure2.main(["--profile", "smoke", "--dataset", "cifar10", "--figure", "6",
                                       "--executor", "serial"]))
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and "cifar-10-python.tar.gz" in err
    assert "Traceback" not in err


def test_an_unreachable_ray_cluster_is_one_line_and_quick(tmp_path):
    # In a subprocess: importing Ray here would keep tests/test_executors.py's cluster token from working.
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install -e '.[dev]')")
    # Quick: our own check of the address said so, not ray.init after half a minute of retries.
    proc = subprocess.run([sys.executable, "-m", "artifact.table5_data_poisoning", "--profile", "smoke",
                           "--executor", "ray", "--address", "127.0.0.1:9"], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800, env={**os.environ, "MNOG_RESULTS": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot reach the Ray cluster at 127.0.0.1:9")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists()                            # it stopped before training anything


# -- unusable results folders and results files ------------------------------------------------------

def one_error_line(err: str) -> str:
    """The error line of a script's stderr (progress bars aside), asserting it is the only one."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1 and err.strip().endswith(errors[0]), err
    return errors[0]


def tiny_table5(monkeypatch, results: Path):
    """Table 5's module with its results folder at `results`, and a smoke run small enough to
    reach the sweep at once (1 trial, θ* trained for 10 epochs, T = 10 only)."""
    table5 = importlib.import_module("artifact.table5_data_poisoning")
    for owner in (mnog.results, mnog.experiment, importlib.import_module("mnog.poisoning"), table5):
        monkeypatch.setattr(owner, "RESULTS", results)
    argv = ["--profile", "smoke", "--trials", "1", "--train-epochs", "10", "--budgets", "10", "--executor", "serial"]
    cfg = dataclasses.replace(table5.PROFILES["smoke"], trials=1, train_epochs=10, budgets=(10,))
    return table5, argv, table5.DataPoisoning(cfg)


@pytest.mark.parametrize("damage", ["records.jsonl is a folder", "the sweep's lock file is a folder",
                                    "a file where the table's folder belongs", "read-only"])
def test_a_results_folder_table5_cannot_use_stops_with_one_line(damage, capsys, monkeypatch, tmp_path):
    table5, argv, experiment = tiny_table5(monkeypatch, tmp_path)
    store = tmp_path / "table5"
    store.mkdir()
    if damage == "records.jsonl is a folder":
        (store / "records.jsonl").mkdir()
    elif damage == "the sweep's lock file is a folder":
        (store / f".records-{stable_hash(experiment.setting())}.lock").mkdir()
    elif damage == "a file where the table's folder belongs":
        (store / "smoke").write_text("not a folder")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        store.chmod(0o555)
    status = cli(lambda: table5.main(argv))
    line = one_error_line(capsys.readouterr().err)
    assert status == 2 and str(store) in line, line
    assert ("it is a folder, where mnog keeps a file" in line) == ("is a folder" in damage)
    assert ("a file stands where a folder" in line) == ("a file where" in damage)


def test_make_writes_no_run_record_where_it_cannot_and_leaves_the_scripts_error_alone(tmp_path, monkeypatch):
    from artifact import report
    monkeypatch.setenv("PROFILE", "smoke")
    (tmp_path / "table2").write_text("a file where the target's folder belongs")
    monkeypatch.setattr(report.subprocess, "call", lambda command, env: 2)     # the script failed, and said why
    assert report.run("table2", [], tmp_path) == 2
    monkeypatch.setattr(report.subprocess, "call", lambda command, env: 0)
    with pytest.raises(ResultsFolderError, match=f"cannot write {tmp_path / 'table2'}"):
        report.run("table2", [], tmp_path)


GARBAGE = [("run.json", "{not json", "a run record"),
           ("run.json", '{"target": "table5"}', "a run record"),
           ("config.json", "[1, 2", "a run's configuration"),
           ("config.json", '["a list"]', "a run's configuration"),
           ("comparison.csv", "a,b\n1,2,3,4\n", "the comparison with the paper"),
           ("comparison.csv", "x\n1\n", "the comparison with the paper"),
           ("claims.json", '{"claim": "MinNorm-OG is best", "holds": true}', 'a list of {"claim"')]


@pytest.mark.parametrize("name, text, message", GARBAGE, ids=[f"{g[0]} {g[1][:12]}" for g in GARBAGE])
def test_check_and_report_on_a_garbage_results_file_stop_with_one_line(name, text, message, tmp_path, capsys):
    from artifact import report
    from test_report import PROFILE, table5
    table5(tmp_path)
    write_json(tmp_path / "table5" / PROFILE / "run.json", {"target": "table5", "exit_status": 0, "wall_s": 1.0,
                                                           "finished": "2026-01-01T00:00:00+00:00"})
    (tmp_path / "table5" / PROFILE / name).write_text(text)
    for command in ("check", "write"):
        status = cli(lambda: report.main([command, "--profile", PROFILE, "--results", str(tmp_path)]))
        line = one_error_line(capsys.readouterr().err)
        assert status == 2 and f"{tmp_path / 'table5' / PROFILE / name}: expected {message}" in line, line
        assert "`make table5` writes it again" in line


@pytest.mark.parametrize("table", ["missing", "malformed", "a folder"])
def test_a_bad_checksums_table_stops_make_data_and_verify_with_one_line(table, tmp_path, capsys):
    path = tmp_path / "checksums.txt"
    if table == "malformed":
        path.write_text("md5  zz  file.tar.gz  https://example.org/file.tar.gz\n")
    elif table == "a folder":
        path.mkdir()
    message = {"missing": f"cannot read the checksums table {path}: No such file",
               "malformed": "'zz' is not a md5 digest", "a folder": f"the checksums table {path} is a folder"}[table]
    for command in ("verify", "fetch"):
        status = cli(lambda: mnog.download.main([command, "--checksums", str(path), "--data", str(tmp_path / "data")]))
        line = one_error_line(capsys.readouterr().err)
        assert status == 2 and message in line, line
    assert not (tmp_path / "data").exists()


def test_table5_training_that_diverges_says_so_in_one_line_with_the_flag_to_change(capsys, monkeypatch, tmp_path):
    table5, _, _ = tiny_table5(monkeypatch, tmp_path)
    status = cli(lambda: table5.main(["--profile", "smoke", "--trials", "1", "--train-epochs", "1000", "--train-lr",
                                      "1e308", "--executor", "serial"]))
    line = one_error_line(capsys.readouterr().err)
    assert status == 2 and "training diverged" in line and "lower --train-lr" in line, line
    assert not list((tmp_path / "cache").glob("poisoned-*.pt"))            # nothing cached


def test_a_models_cache_key_and_records_do_not_depend_on_how_its_device_is_spelled():
    from mnog.poisoning import PROFILES, DataPoisoning
    cpu, cpu0 = (DataPoisoning(dataclasses.replace(PROFILES["smoke"], device=d)) for d in ("cpu", "cpu:0"))
    assert cpu.cache_spec() == cpu0.cache_spec() and cpu.setting() == cpu0.setting()
    assert cpu.model_costs()[0].path == cpu0.model_costs()[0].path and cpu.recipe().key == cpu0.recipe().key


# -- cached models: corrupt, or trained for another configuration ----------------------------------

LABELS16 = torch.arange(16) % 4
IMAGES16 = ColoredImages(torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator()
                                       .manual_seed(0)), colors=LABELS16, labels=LABELS16, palette=PALETTE,
                         norm=CIFAR_NORM)


def cached_model(path: Path, epochs: int = 1) -> nn.Module:
    """A small ColorResNet trained for `epochs` epochs, cached at `path` (whatever its name)."""
    torch.manual_seed(0)
    return train_cached(path, ColorResNet(18, heads=(4,), width=4), [Phase(IMAGES16, epochs)],
                        SGDConfig(lr=0.05, batch_size=8), seed=0, desc="model", spec={"epochs": epochs})


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_corrupt_cached_model_is_named_moved_aside_and_trained_again(damage, tmp_path):
    path = tmp_path / "cache" / "model.pt"
    reference = cached_model(path).state_dict()
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncated" else bytes(range(256)) * 8)
    with pytest.warns(UserWarning, match=f"{path} is corrupt .*; moved it to model.pt.corrupt-"):
        again = cached_model(path)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in reference.items())   # trained again, the same
    assert len(list(path.parent.glob("model.pt.corrupt-*"))) == 1
    assert torch.load(path, weights_only=True)["model"].keys() == reference.keys()    # and cached again


@pytest.mark.parametrize("stored", ["another configuration", "no configuration"])
def test_a_cached_model_of_another_configuration_is_moved_aside_and_trained_again(stored, tmp_path):
    path = tmp_path / "cache" / "model.pt"
    if stored == "another configuration":
        cached_model(path, epochs=1)                      # a valid model, trained for 1 epoch, where 2 are wanted
        message = r"for another configuration \(epochs 1, not 2\)"
    else:
        path.parent.mkdir()
        torch.save(ColorResNet(18, heads=(4,), width=4).state_dict(), path)   # a bare state dict: no configuration
        message = r"with no record of the configuration they were computed for \(written by an older mnog.*\)"
    with load_only(), pytest.raises(FileNotFoundError, match="for this configuration"):
        cached_model(path, epochs=2)                      # a sweep's worker never trains: it says so
    with pytest.warns(UserWarning, match=f"{path} holds model {message}; moved it to model.pt.mismatch-"):
        again = cached_model(path, epochs=2)
    reference = cached_model(tmp_path / "fresh.pt", epochs=2).state_dict()
    assert all(torch.equal(again.state_dict()[k], v) for k, v in reference.items())   # trained for 2 epochs
    assert torch.load(path, weights_only=True)["spec"] == {"epochs": 2}
    assert len(list(path.parent.glob("model.pt.mismatch-*"))) == 1


def test_a_cached_theta_star_trained_for_other_epochs_is_retrained_not_used(monkeypatch, tmp_path):
    poisoning = importlib.import_module("mnog.poisoning")
    monkeypatch.setattr(poisoning, "RESULTS", tmp_path)
    short, wanted = (poisoning.DataPoisoning(dataclasses.replace(poisoning.PROFILES["smoke"], trials=1, train_epochs=e))
                     for e in (10, 20))
    short.prepare()
    path = wanted.model_costs()[0].path
    os.replace(short.model_costs()[0].path, path)          # valid models, trained for 10 epochs, under the 20's name
    with pytest.warns(UserWarning, match=r"holds poisoned models θ\* for another configuration \(epochs 10, not 20\)"):
        wanted.prepare()
    assert torch.load(path, weights_only=True)["spec"]["epochs"] == 20
