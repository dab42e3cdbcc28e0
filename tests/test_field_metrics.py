"""The field's metrics in the experiments' records (mnog.experiment.field_metrics): the same
numbers as mnog.evaluate of the same model, and a reference evaluated once per trial."""
import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import mnog
import mnog.experiment as experiment_module
from mnog.experiment import Experiment, Prepared, Trial, field_metrics, prepared, sweep
from mnog.executors import ExecutorConfig
from mnog.results import RecordStore
from mnog.sweep import Job
from mnog.tasks import Task


def classifier(seed, inputs=12, classes=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, 64), nn.ReLU(), nn.Linear(64, classes))


def fitted(model, x, y, steps=200):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model


@dataclass(frozen=True)
class Config:
    trials: int = 2
    first_seed: int = 1
    device: str = "cpu"


@dataclass(frozen=True)
class Toy(Experiment):
    """Random labels on Gaussian inputs: θ* memorises D_r ∪ D_f, GT only D_r."""
    cfg: Config = Config()
    store, metrics, task = "toy_field", ("average_gap",), Task("cross_entropy")

    def setting(self):
        return {"experiment": "toy_field"}

    def protocol(self):
        return {"batch_size": 10}

    def prepare(self):
        trials = {}
        for seed in self.seeds():
            g = torch.Generator().manual_seed(seed)
            x, y = torch.randn(120, 12, generator=g), torch.randint(4, (120,), generator=g)
            retain, forget = (x[20:], y[20:]), (x[:20], y[:20])
            trials[seed] = Trial(seed, fitted(classifier(seed), x, y), retain, forget,
                                 {"gt": fitted(classifier(seed + 10), *retain)})
        g = torch.Generator().manual_seed(99)
        return Prepared(trials, test=(torch.randn(80, 12, generator=g), torch.randint(4, (80,), generator=g)))

    def score(self, model, prepared, trial):
        return field_metrics(model, trial, prepared.test)


def test_a_records_field_metrics_equal_mnog_evaluate_of_the_same_model(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment_module, "RESULTS", tmp_path)
    prepared.cache_clear()
    toy, job = Toy(), Job.of("NGP", 3, {"eta": 1e-3, "lambda_ga": 0.5})
    records = sweep(toy, [job], ExecutorConfig(executor="serial"), desc="toy")
    assert records == RecordStore(tmp_path / "toy_field" / "records.jsonl").load() and len(records) == 2
    state = prepared(toy)
    for record in records:
        trial = state.trials[record["trial"]]
        model, _ = toy.unlearned(job, trial)                     # the same unlearned model, again
        alone = mnog.evaluate(model, forget=trial.forget, retain=trial.retain, test=state.test,
                              reference=trial.references["gt"], n_bootstrap=0, seed=trial.seed).as_dict()
        assert json.loads(json.dumps(alone)) == record["metrics"]  # what JSON stores: every float equal
        assert record["metrics"]["average_gap"] > 0 and not record["diverged"]
    prepared.cache_clear()


def test_a_reference_given_as_its_evaluation_gives_the_reference_models_numbers():
    trial = Toy().prepare().trials[1]
    g = torch.Generator().manual_seed(5)
    sets = {"forget": trial.forget, "retain": trial.retain, "test": (torch.randn(50, 12, generator=g),
                                                                    torch.randint(4, (50,), generator=g))}
    gt, model = trial.references["gt"], trial.initial
    reference = mnog.evaluate(gt, **sets, n_bootstrap=0, seed=3)
    assert (mnog.evaluate(model, **sets, reference=reference, n_bootstrap=0, seed=3).as_dict()
            == mnog.evaluate(model, **sets, reference=gt, n_bootstrap=0, seed=3).as_dict())
    own = mnog.evaluate(gt, **sets, reference=reference, n_bootstrap=0, seed=3)
    assert own.heads[0].average_gap.value == 0                 # Retrain as its own reference
    with pytest.raises(ValueError, match="needs n_bootstrap=0") as error:
        mnog.evaluate(model, **sets, reference=reference, n_bootstrap=10, seed=3)
    assert len(str(error.value).splitlines()) == 1
    with pytest.raises(ValueError, match="other seed") as error:
        mnog.evaluate(model, **sets, reference=reference, n_bootstrap=0, seed=4)
    assert len(str(error.value).splitlines()) == 1
