"""The unlearning field's standard evaluation of a classifier: UA, RA, TA, two membership
inference attacks, the gap to a Retrain reference, and a bootstrap interval for every number.

    ev = mnog.evaluate(model, forget=(x_f, y_f), retain=(x_r, y_r), test=(x_t, y_t), reference=retrained)
    ev.heads[0].scores.ua.value, ev.heads[0].average_gap, ev.as_dict()

The paper scores its image experiments by its own metrics (mnog.metrics); these are the ones
most unlearning papers report, so that MinNorm-OG's results can be read beside theirs. Each is
computed per head of a multi-head model (the colored-image models' content and color heads):

- UA = 1 − accuracy on the forget set; RA, TA: accuracy on the retain and test sets (SalUn,
  Fan et al., ICLR 2024, Table 1; Jia et al., NeurIPS 2023).
- MIA-efficacy, as SalUn's code computes it (OPTML-Group/Unlearn-Saliency,
  Classification/evaluation/SVC_MIA.py, called with shadow_train = retain, shadow_test = test,
  target_test = forget): an RBF SVC (C=3, gamma="auto") on one feature of the softmax output,
  fitted to retain samples (members, 1) against test samples (non-members, 0); MIA-efficacy
  is the fraction of forget samples it calls non-members (higher: the forget set looks unseen).
  The feature is the confidence of the true class (`mia_feature="confidence"`, the number
  SalUn's tables report), or the entropy of the softmax (`"entropy"`), or Song & Mittal's
  modified entropy (`"m_entropy"`, USENIX Security 2021, Eq. 5; SalUn's m_entropy indexes the
  label columns of the whole batch in every row, so theirs is not per sample and is not
  reproduced). SalUn balances the two classes by taking the first len(test) retain samples; we
  draw the larger set's subsample at random from `seed`.
- The loss attack of the NeurIPS 2023 Machine Unlearning challenge's starting kit
  (unlearning-challenge/starting-kit, `simple_mia`): scikit-learn's default LogisticRegression
  on each sample's cross-entropy. `loss_mia_cv`: its cross-validated accuracy separating
  retain (members) from test (non-members), classes balanced by subsampling the larger;
  `loss_mia_forget_accuracy`, `loss_mia_forget_auc`: the attack fitted to all of that balanced
  set, applied to the forget set (members, 1) against the test set (0): the class-balanced
  accuracy (the mean of its accuracy on each set, as SVC_MIA.py averages its target sets) and
  the ROC AUC of its score. 0.5 is ideal: forget samples look like test samples; 1: they look
  like the retain samples the model was trained on. (Test samples the attack was fitted to are
  among those it scores: a two-parameter fit on one feature barely overfits, and the AUC
  depends on the fit only through its sign.) `loss_mia_kit` is the kit's own number: the
  attack's cross-validated accuracy on forget (members) against test, balanced (ideal 0.5).
  The kit cross-validates by 10 random 90/10 splits (StratifiedShuffleSplit); we use
  `cv_folds` stratified folds (StratifiedKFold), so that every sample is predicted once, out of
  fold, which the bootstrap resamples.

With a `reference` (Retrain, or a ground-truth model) every number also gets its absolute gap
to the reference's number on the same sets, and `average_gap` is the mean gap of UA, RA, TA
and MIA-efficacy, SalUn's "Avg. Gap".

Intervals: a percentile bootstrap (`n_bootstrap` resamples, `confidence` level) over the
samples of each set, each set resampled with replacement on its own. The model runs once: a
resample recomputes a metric from per-sample quantities (correctness flags; the SVC's and the
logistic regression's predictions and scores, whose fits are not redone; the out-of-fold
predictions of the cross-validations, resampled within each class). A gap's resamples use the
same indices for the model and the reference (a paired bootstrap); its interval is that of the
signed difference mapped through |·| (when it spans 0: from 0 to its larger end), so that it
contains the gap whenever the signed interval contains the difference.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, fields

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from mnog.batches import Batch, as_batch
from mnog.ensemble import Ensemble
from mnog.errors import NonFiniteError, is_integer, is_number
from mnog.tasks import as_heads, get_task

MIA_FEATURES = ("confidence", "entropy", "m_entropy")
# SalUn's Avg. Gap averages the gaps of these four (Fan et al. 2024, Table 1).
AVERAGE_GAP_OF = ("ua", "ra", "ta", "mia_efficacy")


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float | None = None   # the bootstrap interval; None when n_bootstrap=0
    high: float | None = None


@dataclass(frozen=True)
class Scores:
    """One model's numbers on one head (see the module's docstring for each definition)."""
    ua: Estimate                        # 1 − forget accuracy
    ra: Estimate                        # retain accuracy
    ta: Estimate                        # test accuracy
    mia_efficacy: Estimate              # SalUn: fraction of forget samples the SVC calls non-members
    loss_mia_cv: Estimate               # loss attack, cross-validated accuracy on retain vs test
    loss_mia_forget_accuracy: Estimate  # that attack on forget vs test, class-balanced accuracy
    loss_mia_forget_auc: Estimate       # ... and its ROC AUC (forget = positive)
    loss_mia_kit: Estimate              # the starting kit's number: cross-validated on forget vs test


METRICS = tuple(f.name for f in fields(Scores))


@dataclass(frozen=True)
class HeadEvaluation:
    scores: Scores
    reference: Scores | None = None       # the reference's numbers on the same sets
    gap: Scores | None = None             # |scores − reference|, metric by metric
    average_gap: Estimate | None = None   # mean gap of UA, RA, TA and MIA-efficacy


@dataclass(frozen=True)
class Evaluation:
    heads: tuple[HeadEvaluation, ...]
    n_bootstrap: int
    confidence: float
    seed: int
    mia_feature: str
    sizes: tuple[int, int, int] | None = None     # samples in (forget, retain, test)
    classes: tuple[int, ...] | None = None        # classes per head

    def as_dict(self) -> dict[str, float]:
        """Every number as a flat {name: float} for a JSON record: "ua", "ua_low", "ua_high", ...,
        "reference_ua", "gap_ua", ..., "average_gap"; names prefixed "head0_", "head1_", ... for
        a multi-head model; no "_low"/"_high" entries when n_bootstrap=0."""
        flat = {}
        for h, head in enumerate(self.heads):
            prefix = f"head{h}_" if len(self.heads) > 1 else ""
            for part, scores in (("", head.scores), ("reference_", head.reference), ("gap_", head.gap)):
                if scores is not None:
                    for name in METRICS:
                        flat.update(_flat(prefix + part + name, getattr(scores, name)))
            if head.average_gap is not None:
                flat.update(_flat(prefix + "average_gap", head.average_gap))
        return flat


def _flat(name: str, estimate: Estimate) -> dict[str, float]:
    if estimate.low is None:
        return {name: estimate.value}
    return {name: estimate.value, f"{name}_low": estimate.low, f"{name}_high": estimate.high}


def evaluate(model: nn.Module, *, forget, retain, test, reference: nn.Module | Evaluation | None = None,
             batch_size: int = 1000, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
             mia_feature: str = "confidence", cv_folds: int = 5) -> Evaluation:
    """UA, RA, TA, the membership attacks and (with `reference`) their gaps, per head.

    model, reference: classifiers returning logits (N, C), or a tuple of them, one per head.
                Run in eval mode, without gradients, in batches of `batch_size` on the device of
                their parameters; each module's train/eval mode is restored afterwards. The
                reference may also be its own Evaluation on the same sets with the same options
                and n_bootstrap=0 (`evaluate(reference_model, ..., n_bootstrap=0)`): its numbers
                are reused, not recomputed, and the result equals the one with the reference
                model (a sweep scores every job against one Retrain model per trial this way).
    forget, retain, test: (inputs, targets) tensor pairs, targets a tuple for a multi-head
                model. D_f, D_r and unseen data from the same distribution.
    n_bootstrap: resamples behind every interval (0: no intervals); confidence: their level.
    seed:       the attacks' class-balancing subsamples, their cross-validation folds and the
                bootstrap; the same seed gives the same numbers.
    mia_feature: the SVC's feature for MIA-efficacy: "confidence" (SalUn's reported number),
                "entropy" or "m_entropy".
    cv_folds:   folds of the loss attack's cross-validations (each set needs as many samples).
    """
    _check_options(batch_size, n_bootstrap, confidence, seed, mia_feature, cv_folds)
    if isinstance(reference, Evaluation):
        if n_bootstrap or reference.n_bootstrap:
            raise ValueError("a reference given as an Evaluation needs n_bootstrap=0, here and in it (the paired "
                             "bootstrap of the gaps needs the reference's per-sample numbers): pass the reference "
                             "model instead")
        alone = evaluate(model, forget=forget, retain=retain, test=test, batch_size=batch_size, n_bootstrap=0,
                         seed=seed, mia_feature=mia_feature, cv_folds=cv_folds)
        return _against(alone, reference)
    sets = {name: as_batch(data, None, name) for name, data in (("forget", forget), ("retain", retain),
                                                                ("test", test))}
    for name, batch in sets.items():
        if len(batch) < cv_folds:
            raise ValueError(f"the {name} set has {len(batch)} sample(s); the loss attack's {cv_folds}-fold "
                             f"cross-validation needs at least {cv_folds} in each of forget, retain and test")
    models = {"model": model} if reference is None else {"model": model, "reference": reference}
    classes = {who: _check_classifier(m, sets, who) for who, m in models.items()}
    if reference is not None and classes["reference"] != classes["model"]:
        raise ValueError(f"the reference's heads do not match the model's: the model has "
                         f"{len(classes['model'])} head(s) with {list(classes['model'])} classes, the reference "
                         f"{len(classes['reference'])} with {list(classes['reference'])}")

    n = {name: len(batch) for name, batch in sets.items()}
    rng = np.random.default_rng([seed, 0])
    split = {"cv": _balanced(n["retain"], n["test"], rng), "kit": _balanced(n["forget"], n["test"], rng)}
    per_set = {who: {name: _per_sample(m, batch, batch_size, mia_feature, who, name) for name, batch in sets.items()}
               for who, m in models.items()}
    # The attacks fit one feature: BLAS threads only cost here (a logistic regression took 72 ms
    # with 2 threads against 2 ms with one on a 2-core Intel Xeon, another job running).
    with threadpool_limits(1):
        stats = {(who, h): _attacks({name: heads[h] for name, heads in per_set[who].items()}, split, seed, cv_folds)
                 for who in models for h in range(len(classes["model"]))}
        point = {key: _metrics(s, None) for key, s in stats.items()}
        boot = _bootstrap(stats, {**n, "cv": len(split["cv"][0]), "kit": len(split["kit"][0])}, n_bootstrap, seed)

    heads = []
    for h in range(len(classes["model"])):
        scores = _scores(point["model", h], boot["model", h], confidence)
        if reference is None:
            heads.append(HeadEvaluation(scores))
            continue
        diff = {name: point["model", h][name] - point["reference", h][name] for name in METRICS}
        diff_boot = boot["model", h] - boot["reference", h]
        gap = Scores(**{name: _absolute(diff[name], diff_boot[:, j], confidence) for j, name in enumerate(METRICS)})
        averaged = [METRICS.index(name) for name in AVERAGE_GAP_OF]
        average = _estimate(float(np.mean([abs(diff[name]) for name in AVERAGE_GAP_OF])),
                            np.abs(diff_boot[:, averaged]).mean(1), confidence)
        heads.append(HeadEvaluation(scores, _scores(point["reference", h], boot["reference", h], confidence),
                                    gap, average))
    return Evaluation(tuple(heads), n_bootstrap, confidence, seed, mia_feature,
                      (n["forget"], n["retain"], n["test"]), classes["model"])


def _against(alone: Evaluation, reference: Evaluation) -> Evaluation:
    """`alone` (no reference) with the gaps to `reference`, both without intervals: the same
    numbers as evaluating with the reference model (its scores do not depend on the model's)."""
    same = [(what, getattr(alone, what), getattr(reference, what)) for what in ("sizes", "classes", "seed",
                                                                                 "mia_feature")]
    for what, ours, theirs in same:
        if ours != theirs:
            raise ValueError(f"the reference Evaluation was computed with other {what} ({theirs}) than this one "
                             f"({ours}); evaluate the reference on the same sets with the same options")
    heads = []
    for head, ref in zip(alone.heads, reference.heads):
        theirs = ref.scores
        diff = {name: getattr(head.scores, name).value - getattr(theirs, name).value for name in METRICS}
        gap = Scores(**{name: Estimate(abs(diff[name])) for name in METRICS})
        average = Estimate(float(np.mean([abs(diff[name]) for name in AVERAGE_GAP_OF])))
        heads.append(HeadEvaluation(head.scores, theirs, gap, average))
    return Evaluation(tuple(heads), 0, alone.confidence, alone.seed, alone.mia_feature, alone.sizes, alone.classes)


# ---------------------------------------------------------------- checks

def _check_options(batch_size, n_bootstrap, confidence, seed, mia_feature, cv_folds) -> None:
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not is_integer(n_bootstrap) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer (0: no intervals), got {n_bootstrap!r}")
    if not is_number(confidence) or not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if mia_feature not in MIA_FEATURES:
        raise ValueError(f"unknown mia_feature {mia_feature!r}; choose one of {list(MIA_FEATURES)}")
    if not is_integer(cv_folds) or cv_folds < 2:
        raise ValueError(f"cv_folds must be an integer ≥ 2, got {cv_folds!r}")


def _check_classifier(model: nn.Module, sets: dict[str, Batch], who: str) -> tuple[int, ...]:
    """Run `model` on each set's first sample and check that it returns logits (N, C ≥ 2) per
    head and that the set's targets are labels of those classes; the number of classes per head."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"the {who} must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, Ensemble):
        raise TypeError(f"the {who} is an mnog.Ensemble; evaluate its members one at a time")
    classes = None
    for name, batch in sets.items():
        first = batch.inputs[:1].to(_device(model, batch.inputs.device))
        with _evaluating(model):
            outputs = _forward(model, first, f"the {who} cannot take the {name} inputs (shape "
                                             f"{tuple(batch.inputs.shape)}, {batch.inputs.dtype})")
        heads = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        if len(heads) != len(as_heads(batch.targets)):
            raise ValueError(f"the {who} has {len(heads)} head(s) but the {name} set has targets for "
                             f"{len(as_heads(batch.targets))}")
        for h, o in enumerate(heads):
            where = f"the {who}'s output" + (f" {h}" if len(heads) > 1 else "")
            if not isinstance(o, Tensor):
                raise TypeError(f"{where} is a {type(o).__name__}; evaluate needs a classifier returning logits "
                                f"(a tensor (N, classes), or a tuple of them, one per head)")
            if not o.is_floating_point() or o.dim() != 2 or o.shape[-1] < 2:
                raise ValueError(f"{where} is not logits: evaluate needs floating-point (N, classes ≥ 2) per head, "
                                 f"got {o.dtype} of shape {tuple(o.shape)} for one sample")
        get_task("cross_entropy").check_targets(tuple(heads), batch.targets, name)
        classes = tuple(o.shape[-1] for o in heads)
    return classes


# ---------------------------------------------------------------- the model's per-sample quantities

def _forward(model: nn.Module, inputs: Tensor, failure: str):
    try:
        return model(inputs)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{failure}: {reason}") from None


def _device(model: nn.Module, fallback: torch.device) -> torch.device:
    tensor = next(model.parameters(), None)
    tensor = next(model.buffers(), None) if tensor is None else tensor
    return fallback if tensor is None else tensor.device


@contextmanager
def _evaluating(model: nn.Module):
    """Eval mode and no autograd; afterwards every submodule's own train/eval mode again."""
    modes = [m.training for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for m, mode in zip(model.modules(), modes):
            m.training = mode


def _per_sample(model: nn.Module, batch: Batch, batch_size: int, feature: str, who: str, name: str
                ) -> list[dict[str, np.ndarray]]:
    """Per head: each sample's correctness, cross-entropy and the SVC's feature (float64, CPU)."""
    device = _device(model, batch.inputs.device)
    parts = []
    with _evaluating(model):
        for start in range(0, len(batch), batch_size):
            part = batch.take(torch.arange(start, min(start + batch_size, len(batch)), device=batch.inputs.device))
            outputs = as_heads(model(part.inputs.to(device)))
            if not all(bool(torch.isfinite(o).all()) for o in outputs):
                raise NonFiniteError(f"the {who}'s logits on the {name} set hold NaN/Inf (a diverged model?); "
                                     f"its accuracy and membership attacks are undefined")
            parts.append([_quantities(o.to("cpu", torch.float64), t.to("cpu"), feature)
                          for o, t in zip(outputs, as_heads(part.targets))])
    return [{key: np.concatenate([p[h][key] for p in parts]) for key in parts[0][h]} for h in range(len(parts[0]))]


def _quantities(logits: Tensor, labels: Tensor, feature: str) -> dict[str, np.ndarray]:
    log_p = logits.log_softmax(-1)                                 # (N, C)
    p = log_p.exp()
    log_p_y = log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)   # (N,)
    p_y = log_p_y.exp()
    if feature == "confidence":                      # softmax probability of the true class
        value = p_y
    elif feature == "entropy":                       # −Σ_i p_i log p_i
        value = -torch.xlogy(p, p).sum(-1)
    else:                                            # −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i)
        p_log_1m = p * torch.log1p(-p.clamp(max=1 - 1e-12))
        others = p_log_1m.sum(-1) - p_log_1m.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        value = -(1 - p_y) * log_p_y - others
    return {"correct": (logits.argmax(-1) == labels).numpy(), "loss": (-log_p_y).numpy(), "feature": value.numpy()}


# ---------------------------------------------------------------- the attacks

def _balanced(n_members: int, n_nonmembers: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of as many members as non-members: the larger set subsampled at random."""
    k = min(n_members, n_nonmembers)
    return np.sort(rng.permutation(n_members)[:k]), np.sort(rng.permutation(n_nonmembers)[:k])


def _attacks(q: dict[str, dict[str, np.ndarray]], split, seed: int, cv_folds: int) -> dict[str, np.ndarray]:
    """Fit both attacks on one head's per-sample quantities; return the per-sample flags and
    scores the metrics (and their bootstrap) are computed from."""
    # scikit-learn is imported here, not with mnog: it adds 0.75 s to every `import mnog` (each
    # worker process, each script) on a 2-core Intel Xeon, and only evaluate uses it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.svm import SVC

    members, nonmembers = split["cv"]
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]

    # SalUn's MIA-efficacy: an SVC on the feature, retain (1) vs test (0), predicting forget.
    svc = SVC(C=3, gamma="auto", kernel="rbf")
    svc.fit(np.r_[q["retain"]["feature"][members], q["test"]["feature"][nonmembers]][:, None], labels)
    forget_nonmember = svc.predict(q["forget"]["feature"][:, None]) == 0

    # The starting kit's loss attack: retain (1) vs test (0), cross-validated, then on forget vs test.
    losses = np.r_[q["retain"]["loss"][members], q["test"]["loss"][nonmembers]][:, None]
    folds = StratifiedKFold(cv_folds, shuffle=True, random_state=seed)
    cv_correct = cross_val_predict(LogisticRegression(), losses, labels, cv=folds) == labels
    attack = LogisticRegression().fit(losses, labels)
    forget_score = attack.decision_function(q["forget"]["loss"][:, None])
    test_score = attack.decision_function(q["test"]["loss"][:, None])

    # The kit's own number: the same attack cross-validated on forget (1) vs test (0).
    kit_members, kit_nonmembers = split["kit"]
    kit_labels = np.r_[np.ones(len(kit_members)), np.zeros(len(kit_nonmembers))]
    kit_losses = np.r_[q["forget"]["loss"][kit_members], q["test"]["loss"][kit_nonmembers]][:, None]
    kit_correct = cross_val_predict(LogisticRegression(), kit_losses, kit_labels, cv=folds) == kit_labels

    return {"forget_correct": q["forget"]["correct"], "retain_correct": q["retain"]["correct"],
            "test_correct": q["test"]["correct"], "forget_nonmember": forget_nonmember,
            "cv_members": cv_correct[:len(members)], "cv_nonmembers": cv_correct[len(members):],
            "forget_score": forget_score, "test_score": test_score,
            "kit_members": kit_correct[:len(kit_members)], "kit_nonmembers": kit_correct[len(kit_members):]}


def _metrics(s: dict[str, np.ndarray], index: dict[str, np.ndarray] | None) -> dict[str, float]:
    """Every metric from the per-sample quantities, on all samples (index None) or on one
    bootstrap resample (index: positions drawn with replacement in each set)."""
    from sklearn.metrics import roc_auc_score      # imported on first use, as in _attacks

    def pick(key, where):
        return s[key] if index is None else s[key][index[where]]
    forget_score, test_score = pick("forget_score", "forget"), pick("test_score", "test")
    metrics = {
        "ua": 1 - pick("forget_correct", "forget").mean(),
        "ra": pick("retain_correct", "retain").mean(),
        "ta": pick("test_correct", "test").mean(),
        "mia_efficacy": pick("forget_nonmember", "forget").mean(),
        "loss_mia_cv": (pick("cv_members", "cv").mean() + pick("cv_nonmembers", "cv_nonmembers").mean()) / 2,
        "loss_mia_forget_accuracy": ((forget_score > 0).mean() + (test_score <= 0).mean()) / 2,
        "loss_mia_forget_auc": roc_auc_score(np.r_[np.ones(len(forget_score)), np.zeros(len(test_score))],
                                             np.r_[forget_score, test_score]),
        "loss_mia_kit": (pick("kit_members", "kit").mean() + pick("kit_nonmembers", "kit_nonmembers").mean()) / 2,
    }
    return {name: float(value) for name, value in metrics.items()}


# ---------------------------------------------------------------- intervals

def _bootstrap(stats: dict, sizes: dict[str, int], n_bootstrap: int, seed: int) -> dict[object, np.ndarray]:
    """Each metric on `n_bootstrap` resamples: (n_bootstrap, len(METRICS)) per (model, head).
    Every set, and each class of the two cross-validated attack sets, is resampled with
    replacement on its own; all models and heads see the same resamples (paired gaps)."""
    boot = {key: np.empty((n_bootstrap, len(METRICS))) for key in stats}
    rng = np.random.default_rng([seed, 1])
    for b in range(n_bootstrap):
        index = {name: rng.integers(0, size, size) for name, size in sizes.items()}
        index.update({f"{name}_nonmembers": rng.integers(0, sizes[name], sizes[name]) for name in ("cv", "kit")})
        for key, s in stats.items():
            metrics = _metrics(s, index)
            boot[key][b] = [metrics[name] for name in METRICS]
    return boot


def _estimate(value: float, draws: np.ndarray, confidence: float) -> Estimate:
    if len(draws) == 0:
        return Estimate(float(value))
    low, high = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Estimate(float(value), float(low), float(high))


def _absolute(diff: float, draws: np.ndarray, confidence: float) -> Estimate:
    """|diff| with the signed difference's percentile interval mapped through |·|."""
    signed = _estimate(diff, draws, confidence)
    if signed.low is None:
        return Estimate(abs(diff))
    if signed.low <= 0 <= signed.high:
        return Estimate(abs(diff), 0.0, max(-signed.low, signed.high))
    return Estimate(abs(diff), min(abs(signed.low), abs(signed.high)), max(abs(signed.low), abs(signed.high)))


def _scores(point: dict[str, float], draws: np.ndarray, confidence: float) -> Scores:
    return Scores(**{name: _estimate(point[name], draws[:, j], confidence) for j, name in enumerate(METRICS)})
