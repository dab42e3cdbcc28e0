"""mnog.evaluate: the field's standard metrics (UA, RA, TA, two membership attacks, the gap to a
reference) on toy classifiers whose answers are known."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mnog

DIM, CLASSES = 400, 10


def data(n, seed, classes=CLASSES):
    """n Gaussian points in 400 dimensions with random labels: nothing to generalise from."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, DIM, generator=g), torch.randint(classes, (n,), generator=g)


def memoriser(x, y, classes=CLASSES, scale=8.0):
    """A lookup table as a linear classifier: the minimum-norm weights whose logits on x are
    exactly scale·one-hot(y) (n < d points are interpolated), so it classifies every training
    point right with confidence e⁸/(e⁸ + 9) ≈ 0.997 and has learnt nothing about new points."""
    model = nn.Linear(x.shape[1], classes, bias=False)
    with torch.no_grad():
        model.weight.copy_((x.T @ torch.linalg.solve(x @ x.T, scale * F.one_hot(y, classes).double())).T)
    return model


@pytest.fixture(scope="module")
def sets():
    return {"retain": data(200, 1), "forget": data(100, 2), "test": data(200, 3)}


@pytest.fixture(scope="module")
def models(sets):
    (x_r, y_r), (x_f, y_f) = sets["retain"], sets["forget"]
    x_r, x_f = x_r.double(), x_f.double()
    trained = memoriser(torch.cat([x_r, x_f]), torch.cat([y_r, y_f])).float()
    retrained = memoriser(x_r, y_r).float()                # Retrain: never saw the forget set
    x_o, y_o = data(300, 9)
    unseen = memoriser(x_o.double(), y_o).float()          # saw none of the three sets
    return {"trained": trained, "retrained": retrained, "unseen": unseen}


@pytest.fixture(scope="module")
def plain(sets, models):
    """Each model's scores without intervals (one evaluation each, shared by the tests)."""
    return {name: mnog.evaluate(model, **sets, n_bootstrap=0).heads[0].scores for name, model in models.items()}


def accuracy(model, inputs, labels):
    model.eval()
    with torch.no_grad():
        return int((model(inputs).argmax(-1) == labels).sum()) / len(labels)


def test_a_memorised_training_set_is_found_by_both_attacks_and_unseen_data_is_not(plain):
    trained = plain["trained"]
    assert (trained.ua.value, trained.ra.value) == (0.0, 1.0) and trained.ta.value < 0.2     # chance is 0.1
    # The forget set was memorised like the retain set: the loss attack finds it, SalUn's SVC
    # calls (almost) every forget sample a member.
    assert trained.loss_mia_cv.value > 0.9 and trained.loss_mia_kit.value > 0.9
    assert trained.loss_mia_forget_auc.value > 0.95 and trained.loss_mia_forget_accuracy.value > 0.9
    assert trained.mia_efficacy.value < 0.05

    unseen = plain["unseen"]
    for name in ("loss_mia_cv", "loss_mia_kit", "loss_mia_forget_auc", "loss_mia_forget_accuracy"):
        assert abs(getattr(unseen, name).value - 0.5) < 0.1, name   # 200 per class: SE ≈ 0.035

    # Retrain memorised only the retain set: retain still leaks, the forget set looks like test data.
    retrained = plain["retrained"]
    assert retrained.loss_mia_cv.value > 0.9 and retrained.ua.value > 0.8
    assert abs(retrained.loss_mia_forget_auc.value - 0.5) < 0.1 and abs(retrained.loss_mia_kit.value - 0.5) < 0.1
    assert retrained.mia_efficacy.value > 0.8


@pytest.mark.parametrize("feature", ["entropy", "m_entropy"])   # "confidence", the default: above
def test_every_mia_feature_tells_memorised_forget_samples_from_retrained_ones(sets, models, feature):
    efficacy = {name: mnog.evaluate(models[name], **sets, n_bootstrap=0, mia_feature=feature).heads[0].scores
                .mia_efficacy.value for name in ("trained", "retrained")}
    assert efficacy["trained"] < 0.2 and efficacy["retrained"] > 0.6, efficacy


def test_retrain_as_its_own_reference_has_gap_zero_and_gaps_are_differences(sets, models):
    own = mnog.evaluate(models["retrained"], **sets, reference=copy.deepcopy(models["retrained"]), n_bootstrap=50)
    head = own.heads[0]
    assert head.reference == head.scores
    for name in mnog.evaluation.METRICS:
        assert getattr(head.gap, name) == mnog.evaluation.Estimate(0.0, 0.0, 0.0), name
    assert head.average_gap == mnog.evaluation.Estimate(0.0, 0.0, 0.0)

    ev = mnog.evaluate(models["trained"], **sets, reference=models["retrained"], n_bootstrap=50)
    head = ev.heads[0]
    alone = mnog.evaluate(models["retrained"], **sets, n_bootstrap=50).heads[0].scores
    assert head.reference == alone                          # the reference is scored as if alone
    for name in mnog.evaluation.METRICS:
        assert getattr(head.gap, name).value == abs(getattr(head.scores, name).value - getattr(alone, name).value)
    four = [getattr(head.gap, name).value for name in ("ua", "ra", "ta", "mia_efficacy")]
    assert head.average_gap.value == pytest.approx(sum(four) / 4, abs=1e-15)
    assert head.gap.ua.value > 0.8 and head.gap.mia_efficacy.value > 0.8 and head.gap.ra.value == 0


class Tagged(nn.Module):
    """An MLP with dropout (train mode makes its predictions random) and a sub-module the
    caller left in eval mode, to see that evaluate runs in eval mode and restores both."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(DIM, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, CLASSES))
        self.body[0].eval()

    def forward(self, x):
        return self.body(x)


def test_accuracies_equal_a_hand_computation_in_eval_mode_in_any_batch_size(sets):
    model = Tagged()
    modes = [m.training for m in model.modules()]
    ev = mnog.evaluate(model, **sets, batch_size=7, n_bootstrap=0)
    assert [m.training for m in model.modules()] == modes
    scores = ev.heads[0].scores
    expected = {name: accuracy(copy.deepcopy(model), *sets[name]) for name in ("forget", "retain", "test")}
    assert scores.ua.value == 1 - expected["forget"]
    assert (scores.ra.value, scores.ta.value) == (expected["retain"], expected["test"])
    assert mnog.evaluate(model, **sets, batch_size=1000, n_bootstrap=0) == ev


class TwoHeads(nn.Module):
    def __init__(self, memorised: nn.Linear):
        super().__init__()
        self.memorised, self.other = memorised, nn.Linear(DIM, 3)

    def forward(self, x):
        return self.memorised(x), self.other(x)


def test_a_two_head_model_gives_per_head_results(sets, models, plain):
    g = torch.Generator().manual_seed(5)
    two = {name: (x, (y, torch.randint(3, (len(y),), generator=g))) for name, (x, y) in sets.items()}
    model = TwoHeads(models["trained"])
    ev = mnog.evaluate(model, **two, n_bootstrap=0)
    assert len(ev.heads) == 2
    for h in range(2):
        head = nn.Sequential(model.memorised if h == 0 else model.other)
        scores = ev.heads[h].scores
        assert scores.ra.value == accuracy(head, two["retain"][0], two["retain"][1][h])
        assert scores.ta.value == accuracy(head, two["test"][0], two["test"][1][h])
        assert scores.ua.value == 1 - accuracy(head, two["forget"][0], two["forget"][1][h])
    # Head 0 is the memoriser and gives its single-head numbers; head 1 learnt nothing.
    assert ev.heads[0].scores == plain["trained"]
    assert ev.heads[1].scores.loss_mia_forget_auc.value < 0.65 < ev.heads[0].scores.loss_mia_forget_auc.value
    flat = ev.as_dict()
    assert flat["head0_ra"] == 1.0 and flat["head1_ta"] == ev.heads[1].scores.ta.value
    assert all(key.startswith(("head0_", "head1_")) for key in flat)


def width(estimate):
    return estimate.high - estimate.low


def test_bootstrap_intervals_contain_the_estimate_and_shrink_with_more_samples():
    # Two classes, so that every number sits near 1/2, where a binomial interval is widest
    # and scales as 1/sqrt(n) without small-count effects.
    x_o, y_o = data(300, 9, classes=2)
    model = memoriser(x_o.double(), y_o, classes=2).float()
    reference = memoriser(x_o.double(), 1 - y_o, classes=2).float()

    def run(scale):
        sized = {"retain": data(50 * scale, 1, 2), "forget": data(25 * scale, 2, 2), "test": data(50 * scale, 3, 2)}
        return mnog.evaluate(model, **sized, reference=reference, n_bootstrap=200)
    small, large = run(1), run(16)
    for ev in (small, large):
        head = ev.heads[0]
        for part in (head.scores, head.reference, head.gap):
            for name in mnog.evaluation.METRICS:
                estimate = getattr(part, name)
                assert estimate.low <= estimate.value <= estimate.high, (name, estimate)
    for name in mnog.evaluation.METRICS:
        # 16 times the samples: intervals 4 times narrower (2.5 asked for here).
        assert width(getattr(large.heads[0].scores, name)) < width(getattr(small.heads[0].scores, name)) / 2.5, name
    assert small.as_dict()["ta_low"] == small.heads[0].scores.ta.low


def test_the_same_seed_gives_the_same_numbers_and_the_record_is_plain_floats(sets, models):
    def run(seed):
        return mnog.evaluate(models["unseen"], **sets, reference=models["retrained"], n_bootstrap=30,
                             seed=seed).as_dict()
    first = run(3)
    assert run(3) == first and run(4) != first
    assert all(type(v) is float for v in first.values())
    assert "ta_low" in first and "ta_low" not in mnog.evaluate(models["unseen"], **sets, n_bootstrap=0).as_dict()
    json.dumps(first, allow_nan=False)
    assert {"ua", "ra", "ta", "mia_efficacy", "loss_mia_kit", "reference_ua", "gap_mia_efficacy",
            "average_gap", "average_gap_low"} <= set(first)


class Outputs(nn.Module):
    """A module returning whatever `make` builds from its input batch."""

    def __init__(self, make):
        super().__init__()
        self.make, self.weight = make, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.make(x)


def logits(x):
    return x[:, :CLASSES]


BAD = [
    (dict(forget=(torch.zeros(0, DIM), torch.zeros(0, dtype=torch.long))), ValueError, "the forget set is empty"),
    (dict(retain=torch.zeros(5, DIM)), TypeError, "the retain set must be a pair"),
    (dict(test=(torch.zeros(6, DIM), torch.zeros(5, dtype=torch.long))), ValueError, "has 6 inputs but targets"),
    (dict(forget=data(3, 2)), ValueError, "the forget set has 3 sample(s); the loss attack's 5-fold"),
    (dict(model=Outputs(lambda x: {"logits": logits(x)})), TypeError, "the model's output is a dict"),
    (dict(model=Outputs(lambda x: x[:, :1])), ValueError, "is not logits"),
    (dict(model=Outputs(lambda x: x[:, 0])), ValueError, "is not logits"),
    (dict(model=Outputs(lambda x: logits(x).argmax(-1, keepdim=True).repeat(1, 2))), ValueError, "is not logits"),
    (dict(model=Outputs(lambda x: (logits(x), logits(x)))), ValueError, "the model has 2 head(s) but the forget set"),
    (dict(model=nn.Linear(3, CLASSES)), ValueError, "the model cannot take the forget inputs"),
    (dict(reference=Outputs(lambda x: logits(x) * float("nan"))), mnog.NonFiniteError, "the reference's logits on the "
     "forget set hold NaN/Inf"),
    (dict(reference=Outputs(lambda x: (logits(x), logits(x)))), ValueError, "the reference has 2 head(s)"),
    (dict(reference=Outputs(lambda x: x[:, :12])), ValueError, "the reference's heads do not match"),
    (dict(reference="Retrain"), TypeError, "the reference must be a torch.nn.Module"),
    (dict(model=mnog.Ensemble([nn.Linear(DIM, CLASSES), nn.Linear(DIM, CLASSES)])), TypeError, "evaluate its members"),
    (dict(test=(torch.zeros(8, DIM), torch.full((8,), 10))), ValueError, "must lie in [0, 10)"),
    (dict(test=(torch.zeros(8, DIM), torch.zeros(8))), ValueError, "must be integer class labels"),
    (dict(retain=(torch.zeros(8, DIM), torch.zeros(8, 1, dtype=torch.long))), ValueError, "one label per sample"),
    (dict(retain=(torch.zeros(8, DIM), F.one_hot(torch.zeros(8, dtype=torch.long), CLASSES))), ValueError,
     "the retain set's targets must hold one label per sample"),
    (dict(test=(torch.zeros(8, DIM), (torch.zeros(8, dtype=torch.long),) * 2)), ValueError,
     "the model has 1 head(s) but the test set has targets for 2"),
    (dict(model=Outputs(lambda x: logits(x) / 0)), mnog.NonFiniteError, "the model's logits on the forget set hold"),
    (dict(model=Outputs(lambda x: torch.cat([logits(x)[:-1], logits(x)[-1:] * float("nan")]))), mnog.NonFiniteError,
     "NaN/Inf (a diverged model?)"),
    (dict(model=Outputs(lambda x: None)), TypeError, "the model's output is a NoneType"),
    (dict(n_bootstrap=-1), ValueError, "n_bootstrap must be a non-negative integer"),
    (dict(confidence=1.0), ValueError, "confidence must lie in (0, 1)"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
    (dict(mia_feature="loss"), ValueError, "unknown mia_feature 'loss'"),
    (dict(cv_folds=1), ValueError, "cv_folds must be an integer ≥ 2"),
    (dict(seed=-1), ValueError, "seed must be a non-negative integer"),
]


@pytest.mark.parametrize("change, error, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_gives_one_clear_error(sets, change, error, message):
    arguments = {"model": Outputs(logits), **sets, "n_bootstrap": 0, **change}
    with pytest.raises(error) as raised:
        mnog.evaluate(arguments.pop("model"), **arguments)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_importing_mnog_does_not_import_scikit_learn():
    # 0.75 s per process on a 2-core Intel Xeon, paid by every worker and script otherwise.
    code = "import sys, mnog; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
