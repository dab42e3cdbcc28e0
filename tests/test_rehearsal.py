"""The rehearsal (mnog.rehearse, mnog.rehearsal): its cuts in the core, the driver end to end at the smoke
profile, and what it found at the paper profile, each at smoke scale."""
import copy
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import mnog
from conftest import TwoHeadCNN
from mnog import rehearsal
from mnog.colors import CIFAR_NORM, ERASURE_RGB, ColoredImages
from mnog.sweep import Job
from mnog.training import Phase, SGDConfig, train_classifier

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def rehearsing(monkeypatch, tmp_path):
    """The core cut short as in a rehearsal, measurements logged to a file of the test's own."""
    log = tmp_path / "rehearsal.jsonl"
    monkeypatch.setenv(rehearsal.ENV, json.dumps({"log": str(log), "train_batches": 2, "steps": 3, "scored": 5}))
    monkeypatch.setattr(rehearsal, "_FULL", set())
    monkeypatch.setattr(rehearsal, "_MISSING", [])
    rehearsal.cuts.cache_clear()
    yield lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    monkeypatch.delenv(rehearsal.ENV, raising=False)
    rehearsal.cuts.cache_clear()


def colored(n: int, seed: int = 0) -> ColoredImages:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.randint(4, (n,), generator=g), torch.randint(3, (n,), generator=g))
    return ColoredImages(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g), colors=labels[1],
                         labels=labels, palette=ERASURE_RGB, norm=CIFAR_NORM)


def test_outside_a_rehearsal_nothing_is_cut(two_head_data):
    assert not rehearsal.active()
    jobs = [Job.of("GD", 2, {"eta": e}) for e in (1e-3, 1e-4)]
    assert rehearsal.jobs(jobs, "x") is jobs and rehearsal.scored(10_000, "x") == 10_000
    assert rehearsal.train_epochs(7) == 7 and rehearsal.unlearn_steps() is None
    retain, forget = two_head_data
    result = mnog.unlearn(TwoHeadCNN(), "GD", forget, retain, "cross_entropy", epochs=3, batch_size=4, eta=1e-3)
    assert result.steps == 6


def test_a_rehearsal_cuts_training_unlearning_jobs_and_scoring(rehearsing, two_head_data):
    model, steps = TwoHeadCNN(), []
    model.register_forward_pre_hook(lambda module, args: steps.append(len(args[0])) if module.training else None)
    # Two phases of 5 epochs of 10 batches each: one epoch of 2 batches per phase.
    train_classifier(model, [Phase(colored(40), 5), Phase(colored(40, 1), 5)], SGDConfig(lr=0.01, batch_size=4),
                     seed=0, desc="model")
    assert steps == [4, 4, 4, 4]
    retain, forget = two_head_data
    result = mnog.unlearn(TwoHeadCNN(), "GD", forget, retain, "cross_entropy", epochs=3, batch_size=4, eta=1e-3)
    assert result.steps == 3
    jobs = [Job.of(m, 2, {"eta": e}) for m in ("GD", "GA") for e in (1e-3, 1e-4)]
    assert rehearsal.jobs(jobs, "sweep") == [jobs[0], jobs[2]]
    # The full set once per metric and set size in the whole rehearsal, then the first `scored`.
    first, again = rehearsal.scored(1000, "metric"), rehearsal.scored(1000, "metric")
    assert (first, again, rehearsal.scored(1000, "fit", full=False)) == (1000, 5, 5)
    rehearsal._FULL.clear()                                  # another target's driver process: done already
    assert rehearsal.scored(1000, "metric", predictions=10) == 5
    log = rehearsing()
    assert [e["stage"] for e in log] == ["train", "train", "unlearn", "sweep", "score", "score"]
    assert [e["batches"] for e in log[:2]] == [2, 2] and log[2]["steps"] == 3 and log[2]["method"] == "GD"
    assert log[3]["jobs"] == 4 and log[3]["run"] == 2
    assert [(e["predictions"], e["earlier"]) for e in log[4:]] == [(1000, False), (10_000, True)]
    assert all(e["rss_peak_gb"] > 0 for e in log)


def test_the_rehearsal_of_the_smoke_profile_runs_every_stage(tmp_path):
    """`make rehearse` end to end (here at the smoke profile, one target: Table 3, which trains
    Figure 7's models and times every method): the target's script runs cut short, its
    processes log, the table says every stage completed, the report is written, and nothing
    lands outside <results>/rehearsal."""
    env = {**os.environ, "MNOG_RESULTS": str(tmp_path), "MNOG_DATA": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "mnog.rehearse", "table3", "--profile", "smoke", "--trials", "1",
                           "--memory-limit", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {p.name for p in tmp_path.iterdir()} == {"rehearsal"}
    folder = tmp_path / "rehearsal"
    summary = json.loads((folder / "rehearsal.json").read_text())
    (outcome,) = summary["outcomes"]
    assert outcome["status"] == "completed" and all(outcome["stages"].values()), outcome
    assert outcome["host_gb"] > 0 and {"GD", "MinNorm-OG", "SalUn"} <= set(outcome["step_s"]) and outcome["batch_s"]
    assert summary["tiny_imagenet"] == "not needed"                       # the smoke profile's data are synthetic
    assert (folder / "REPORT.md").is_file() and "✓ results" in (folder / "rehearsal.md").read_text()
    assert (folder / "table3" / "smoke" / "table3.md").is_file()
    log = [json.loads(line) for line in (folder / "logs" / "table3.jsonl").read_text().splitlines()]
    assert {e["stage"] for e in log} >= {"data", "model", "train", "unlearn", "exit"}
    assert all(e["steps"] <= 2 for e in log if e["stage"] == "unlearn")


# -- what the rehearsal found at the paper profile, caught at smoke scale ------------------------------------

def test_trials_hold_their_retain_set_as_uint8_images_not_rendered_floats():
    """At the paper profile every trial held D_r rendered in float32 (Tiny ImageNet: 4.9 GB per
    trial, 24.6 GB for Figure 7's five, in the driver and again in every worker): the trials
    hold the uint8 images, and a job renders its D'_r alone."""
    from mnog import collapse as table2
    cfg = dataclasses.replace(table2.PROFILES["smoke"], per_class=40, warm_epochs=1, initial_epochs=1, gt_epochs=1)
    state = table2.RepresentationCollapse(cfg, 0.01).prepare()
    for trial in state.trials.values():
        assert isinstance(trial.retain, ColoredImages) and trial.retain.images.dtype == torch.uint8
        float_rows = [t.shape[0] for t in _tensors(trial) if t.is_floating_point() and t.dim() == 4]
        assert max(float_rows, default=0) < len(trial.retain), "a float copy of D_r is held"


def _tensors(obj, seen=None):
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, torch.nn.Module):
        return
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _tensors(getattr(obj, f.name), seen)
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item, seen)


def test_unlearning_from_uint8_sets_renders_only_d_r_prime_and_equals_the_rendered_run(monkeypatch):
    retain, forget = colored(200, 1), colored(8, 2)
    model = TwoHeadCNN()
    hp = dict(epochs=2, batch_size=4, p_retain=0.05, seed=3, retain_seed=7, eta=1e-2, lambda_reg=0.5, gamma_reg=0.8,
              t_gd=0, t_proj=1, n_pert=4)
    rows = []
    render = ColoredImages.inputs
    monkeypatch.setattr(ColoredImages, "inputs", lambda self, *a, **k: rows.append(len(self)) or render(self, *a, **k))
    lazy, eager = copy.deepcopy(model), copy.deepcopy(model)
    result = mnog.unlearn(lazy, "MinNorm-OG", forget, retain, "cross_entropy", **hp)
    assert max(rows) == 10 and len(result.retain_indices) == 10           # D'_r: 5% of 200; D_f: 8
    mnog.unlearn(eager, "MinNorm-OG", (forget.inputs(), forget.targets()), (retain.inputs(), retain.targets()),
                 "cross_entropy", **hp)
    for a, b in zip(lazy.state_dict().values(), eager.state_dict().values()):
        assert torch.equal(a, b)


def test_the_synthetic_tiny_imagenet_archive_loads_as_the_official_one(tmp_path):
    from mnog.datasets import load_tiny_imagenet, write_tiny_imagenet
    from mnog.download import Resource
    archive = write_tiny_imagenet(tmp_path / "tiny-imagenet-200.zip", classes=3, train_per_class=4, val=5, test=2)
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        annotations = z.read("tiny-imagenet-200/val/val_annotations.txt").decode().splitlines()
    assert {"tiny-imagenet-200/wnids.txt", "tiny-imagenet-200/val/images/val_4.JPEG",
            "tiny-imagenet-200/test/images/test_1.JPEG"} <= names and len(annotations) == 5
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    table = {archive.name: [Resource(archive.name, archive.as_uri(), "md5", md5)]}
    data = load_tiny_imagenet(tmp_path, download=False, resources=table)
    assert data.train_images.shape == (12, 3, 64, 64) and data.test_images.shape == (5, 3, 64, 64)
    assert data.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and data.classes[0] == "synthetic class 0"


def test_without_resnet50_weights_a_rehearsal_says_so_once_and_goes_on(rehearsing, monkeypatch, tmp_path, capsys):
    """No network and no `make data`: the real download path fails with its message; a rehearsal
    says so in one line and builds ColorResNet-50 from random weights, without asking again."""
    from mnog import datasets, download
    from mnog.models import ColorResNet
    monkeypatch.setattr(datasets, "DATA", tmp_path)
    monkeypatch.setenv("MNOG_MIRROR", (tmp_path / "nowhere").as_uri())
    calls = []
    fetch = download.fetch
    monkeypatch.setattr(download, "fetch", lambda *a, **k: calls.append(a) or fetch(*a, **k))
    for _ in range(2):
        model = ColorResNet(50, heads=(200, 3), imagenet=True)
    assert model.heads[0].out_features == 200 and len(calls) == 1
    err = capsys.readouterr().err
    assert err.count("resnet50-0676ba61.pth is needed but unavailable") == 1 and len(err.strip().splitlines()) == 1
    assert [e["stage"] for e in rehearsing()] == ["weights"]
    monkeypatch.delenv(rehearsal.ENV)
    rehearsal.cuts.cache_clear()
    with pytest.raises(download.DataUnavailable, match="Place the file by hand"):
        ColorResNet(50, heads=(200, 3), imagenet=True)
