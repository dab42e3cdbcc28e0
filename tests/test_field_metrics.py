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


def test_salun_published_rows_are_consistent_as_stored():
    """The SalUn Table 1 rows were transcribed from an image: each row's Avg. Gap must be the mean
    of its four gaps to Retrain (to the table's rounding), and each names an mnog method or none."""
    import json
    from mnog.compare import PAPER_TABLES
    from mnog.methods import METHODS
    rows = json.loads((PAPER_TABLES / "random_forgetting.json").read_text())["published"]
    retrain = next(r for r in rows if r["method"] == "Retrain")
    assert retrain["mnog"] == "GT" and retrain["average_gap"] == 0
    for row in rows:
        gaps = [abs(row[k] - retrain[k]) for k in ("ua", "ra", "ta", "mia_efficacy")]
        assert abs(sum(gaps) / 4 - row["average_gap"]) <= 0.011, row["method"]
        assert row["mnog"] in (None, "GT", *METHODS), row["method"]
        assert all(0 <= row[k] <= 100 for k in ("ua", "ra", "ta", "mia_efficacy"))


def test_field_limits_score_fixed_subsamples_and_leave_smaller_sets_whole():
    """--field-retain/--field-test: field_metrics scores the same fixed subsamples in every call
    (retain from the trial's seed, test from seed 0), equal to mnog.evaluate on those subsets;
    a limit of 0, or one above a set's size, keeps the whole set."""
    from mnog.experiment import field_sets
    state = Toy().prepare()
    trial = state.trials[1]
    sets = field_sets(trial, state.test, retain_limit=30, test_limit=25)
    again = field_sets(trial, state.test, retain_limit=30, test_limit=25)
    assert len(sets["retain"][0]) == 30 and len(sets["test"][0]) == 25 and sets["forget"] is trial.forget
    assert torch.equal(sets["retain"][0], again["retain"][0]) and torch.equal(sets["test"][1], again["test"][1])
    rows = {tuple(r.tolist()) for r in trial.retain[0]}
    assert all(tuple(r.tolist()) in rows for r in sets["retain"][0])          # a subset, not new samples
    whole = field_sets(trial, state.test, retain_limit=0, test_limit=1000)
    assert whole["retain"] is trial.retain and whole["test"] is state.test
    model = trial.initial
    limited = field_metrics(model, trial, state.test, retain_limit=30, test_limit=25)
    direct = mnog.evaluate(model, **sets, reference=trial.references["gt"], n_bootstrap=0, seed=trial.seed).as_dict()
    assert limited == pytest.approx(direct)
    assert field_metrics(model, trial, state.test) != limited          # the cached GT evaluation follows the limits


def test_scoring_options_enter_the_setting_only_when_changed():
    from mnog.erasure import PROFILES
    from mnog.sweep import ImageSweepConfig, variant
    assert ImageSweepConfig().scoring_setting() == {}
    assert ImageSweepConfig(field_test=500, eval_precision="bfloat16").scoring_setting() == {
        "field_test": 500, "eval_precision": "bfloat16"}
    assert PROFILES["cpu"].field_limits() == {"retain_limit": 500, "test_limit": 500}
    import dataclasses
    changed = dataclasses.replace(PROFILES["cpu"], eval_precision="bfloat16")
    assert variant(changed, PROFILES["cpu"]) == "+eval_precision=bfloat16"
    assert ImageSweepConfig().field_scored(20, 1000, 1000) == 2020
    assert PROFILES["cpu"].field_scored(20, 1000, 1000) == 1020
