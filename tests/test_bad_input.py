"""Bad input, tried as a hostile new user would: every case fails at once with one clear line.

Library calls raise one exception whose message names the problem; the artifact scripts'
command lines exit with status 2 and a single line on stderr, before anything is trained;
known errors (missing data, an unreachable cluster) print as their message alone.
"""
import importlib
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import mnog
from mnog.colors import CIFAR_NORM, PALETTE, ColoredImages
from mnog.errors import NonFiniteError, cli
from mnog.models import ColorResNet, mlp
from mnog.training import Phase, SGDConfig, train_cached

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
    for owner in (mnog.results, table5):
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
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "artifact.table5_data_poisoning", "--profile", "smoke",
                           "--executor", "ray", "--address", "127.0.0.1:9"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "MNOG_RESULTS": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot reach the Ray cluster at 127.0.0.1:9")
    assert len(proc.stderr.strip().splitlines()) == 1 and time.perf_counter() - start < 60
    assert not (tmp_path / "cache").exists()                            # it stopped before training anything


# -- corrupt caches --------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_corrupt_cached_model_is_named_moved_aside_and_trained_again(damage, tmp_path):
    labels = torch.arange(16) % 4
    data = ColoredImages(torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator()
                                       .manual_seed(0)), colors=labels, labels=labels, palette=PALETTE, norm=CIFAR_NORM)
    path = tmp_path / "cache" / "model.pt"

    def cached():
        torch.manual_seed(0)
        return train_cached(path, ColorResNet(18, heads=(4,), width=4), [Phase(data, 1)],
                            SGDConfig(lr=0.05, batch_size=8), seed=0, desc="model")

    reference = cached().state_dict()
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncated" else bytes(range(256)) * 8)
    with pytest.warns(UserWarning, match=f"{path} is corrupt .*; moved it to model.pt.corrupt-"):
        again = cached()
    assert all(torch.equal(again.state_dict()[k], v) for k, v in reference.items())   # trained again, the same
    assert len(list(path.parent.glob("model.pt.corrupt-*"))) == 1
    assert torch.load(path, weights_only=True).keys() == reference.keys()             # and cached again
