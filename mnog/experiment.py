"""One interface for the paper's experiments: a script declares what is its own, the core does
what every experiment repeats.

An artifact script subclasses `Experiment` as a frozen dataclass holding its configuration:

    @dataclass(frozen=True)
    class LabelErasure(Experiment):
        cfg: Config
        store = "label_erasure"                      # results/label_erasure/records.jsonl
        metrics = ("retain_quality", "forget_error")

        def setting(self): ...        # everything besides (method, T, config, trial) that determines a record
        def prepare(self): ...        # the data and the trained models every job needs -> Prepared
        def score(self, model, prepared, trial): ...   # {metric: value} of one model unlearned from `trial`
        task = Task("cross_entropy", logit_clamp=30)   # the loss of mnog.unlearn
        def protocol(self): ...       # mnog.unlearn's protocol: batch_size, p_retain, bn_stats, adamw

and runs `sweep(experiment, jobs, executor_options, desc)`. The core owns the rest:

* `prepared(experiment)`: `prepare()` once per process. The driver trains what is missing
  (every model is cached by a hash of what determines it: mnog.training.cached_state); a
  sweep's worker only loads (`load_only`): it never trains.
* `Experiment.run(prepared, job, seeds)`: each trial's initial model copied and unlearned by
  the job, seeded by one convention (`Experiment.run_seed`: a hash of the job's key, or with
  the config's seeding="trial" of the trial alone; D'_r from the trial alone,
  `mnog.sweep.retain_seed`), scored; a run that diverges is recorded as such. An
  experiment that runs its trials together (Table 5's ensembles) overrides `run`.
* `field_metrics(model, trial, test)`: the unlearning field's standard metrics (mnog.evaluate:
  UA, RA, TA, membership attacks, gaps to the trial's GT model), which a classification
  experiment's `score` returns beside its paper's metrics.
* `sweep`: the record store, the executor, resuming, and the records (mnog.sweep.run_sweep);
  selection and publishing are mnog.sweep.select_best and mnog.compare.publish.

Experiment instances travel to worker processes and Ray tasks by pickle, their class by module
name: scripts run as `python -m artifact.<name>` and end with `script_main(__spec__)`, which
runs the importable module (not `__main__`) so that workers find the same classes.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import math
import sys
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from mnog import mkl, rehearsal
from mnog.colors import ColoredImages, rendered
from mnog.config import PlanRequested
from mnog.errors import NonFiniteError, cli
from mnog.evaluation import evaluate
from mnog.executors import ExecutorConfig, from_config, job_device
from mnog.loop import UnlearnResult, unlearn
from mnog.metrics import fit_accuracy, scoring_batch
from mnog.results import RESULTS, RecordStore
from mnog.sweep import FIELD_RETAIN, Job, Metrics, Runner, diverged_metrics, retain_seed, run_sweep, trial_seed
from mnog.tasks import Task
from mnog.training import load_only


@dataclass(frozen=True, eq=False)
class Trial:
    """One trial: its seed, the initial model θ* and what `mnog.unlearn` takes."""
    seed: int
    initial: nn.Module
    retain: Any         # D_r (D'_r is drawn from it, per trial): (inputs, targets), or a ColoredImages
    forget: Any         # D_f, likewise (a ColoredImages holds uint8 images, rendered where a job uses them)
    references: dict[str, nn.Module] = field(default_factory=dict)   # e.g. {"gt": the ground-truth model}


@dataclass(frozen=True, eq=False)
class Prepared:
    """What every job of an experiment needs, built once per process: the trials by seed and
    whatever the scoring reads (a test set)."""
    trials: dict[int, Trial]
    evaluation: Any = None
    test: tuple | None = None   # (inputs, targets): unseen data rendered as the trials' sets, for field_metrics


def job_seed(job: Job, setting: dict, trial: int) -> int:
    """The seed of every random draw of `job` on `trial` (batches, subsamples, noise): a hash
    of the job's key, so the same wherever and whenever it runs. Trials run together as one
    ensemble use trial = -1."""
    return int(job.key(setting, trial), 16) % 2**63


class Experiment:
    """What an experiment declares (see the module's docstring); subclasses are frozen
    dataclasses whose first field `cfg` is the script's configuration."""
    store: ClassVar[str]                  # the record store: results/<store>/records.jsonl
    metrics: ClassVar[tuple[str, ...]]    # the names `score` returns
    task: ClassVar[Task]

    def setting(self) -> dict:
        raise NotImplementedError

    def seeds(self) -> list[int]:
        """The trials' seeds: cfg.first_seed, cfg.first_seed + 1, ... (cfg.trials of them)."""
        return list(range(self.cfg.first_seed, self.cfg.first_seed + self.cfg.trials))

    def device(self) -> torch.device:
        return resolve_device(self.cfg.device)

    def prepare(self) -> Prepared:
        raise NotImplementedError

    def score(self, model: nn.Module, prepared: Prepared, trial: Trial) -> dict[str, float]:
        """The metrics of `model`, unlearned from `trial`'s initial model: at least `metrics`."""
        raise NotImplementedError

    def protocol(self) -> dict:
        """mnog.unlearn's keyword arguments besides the job's (batch_size, p_retain, bn_stats, adamw)."""
        return {}

    def run_seed(self, job: Job, trial: int) -> int:
        """The seed of `job`'s run on `trial`: `job_seed`, or where the config's seeding is
        "trial" `mnog.sweep.trial_seed` (every configuration of the trial draws alike: the
        common random numbers of the authors' code)."""
        if getattr(getattr(self, "cfg", None), "seeding", "job") == "trial":
            return trial_seed(trial)
        return job_seed(job, self.setting(), trial)

    # -- what planning reads (mnog.plan; cheap: no data loaded, nothing trained) ----------------
    def model_costs(self) -> list:
        """[mnog.plan.ModelCost]: every cache file of trained models `prepare` needs, and what
        training it costs."""
        raise NotImplementedError

    def job_cost(self, job: Job, trials: int):
        """mnog.plan.Cost of `job` on `trials` of the trials: its unlearning steps and scoring."""
        raise NotImplementedError

    # -- what the core does ------------------------------------------------------------------
    def unlearned(self, job: Job, trial: Trial) -> tuple[nn.Module, UnlearnResult]:
        """A copy of the trial's initial model unlearned by `job` (NonFiniteError if it diverged)."""
        model = copy.deepcopy(trial.initial)
        result = unlearn(model, job.method, forget=trial.forget, retain=trial.retain, loss=self.task,
                         epochs=job.epochs, seed=self.run_seed(job, trial.seed),
                         retain_seed=retain_seed(trial.seed), **self.protocol(), **job.config)
        return model, result

    def run(self, prepared: Prepared, job: Job, seeds: list[int]) -> Metrics:
        """One job on the given trials: {seed: metrics}; a diverged trial gets NaN metrics."""
        out = {}
        for seed in seeds:
            try:
                model, _ = self.unlearned(job, prepared.trials[seed])
            except NonFiniteError:
                out[seed] = diverged_metrics(self.metrics)
                continue
            out[seed] = self.score(model, prepared, prepared.trials[seed])
        return out


# -- the field's standard metrics --------------------------------------------------------------

FIELD_CV_FOLDS = 5    # mnog.evaluate's default; fewer when a set is smaller
_REFERENCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # Trial -> (test, limits, GT's Evaluation)


def field_sets(trial: Trial, test: tuple, retain_limit: int = FIELD_RETAIN, test_limit: int = 0
               ) -> dict[str, tuple]:
    """The sets `field_metrics` scores: forget = the trial's D_f; retain = D_r, or when it holds
    more than `retain_limit` samples a fixed random subsample of that many (drawn from the
    trial's seed alone: the same for every job; the attacks balance members against the test
    set anyway, and SalUn's SVC fit grows quadratically: 6.5 s for 10,000 samples a side on the
    2-core CPU); test = the experiment's test set, or with `test_limit` > 0 and a larger set a
    fixed random subsample of that many (seed 0: the same for every trial and job). A limit of
    0 keeps the whole set."""
    sets = {"forget": trial.forget, "retain": _subsample(trial.retain, retain_limit, trial.seed),
            "test": _subsample(test, test_limit, 0)}
    shape = tuple(rendered(_first(sets["forget"], 1))[0].shape[1:])
    keep = rehearsal.scored(max(map(_size, sets.values())), f"field metrics {shape}")     # a rehearsal's cut
    return {name: rendered(_first(data, keep)) for name, data in sets.items()}


def _size(data) -> int:
    return len(data) if isinstance(data, ColoredImages) else len(data[0])


def _pick(data, index: torch.Tensor):
    """The samples at `index` of a set, given as the set is: a ColoredImages or an (inputs, targets) pair."""
    if isinstance(data, ColoredImages):
        return data.take(index.to(data.images.device))
    inputs, targets = data
    index = index.to(inputs.device)
    pick = lambda t: t[index]  # noqa: E731
    return pick(inputs), tuple(map(pick, targets)) if isinstance(targets, tuple) else pick(targets)


def _first(data, count: int):
    return data if _size(data) <= count else _pick(data, torch.arange(count))


def _subsample(data, limit: int, seed: int):
    if not limit or _size(data) <= limit:
        return data
    index = torch.randperm(_size(data), generator=torch.Generator().manual_seed(seed))[:limit]
    return _pick(data, index.sort().values)


def training_fit(prepared: Prepared) -> dict[str, tuple[float, ...]]:
    """How well the trials' models fit their training sets (the paper's regime: θ*
    interpolates D_r ∪ D_f): for θ* on D_r, θ* on D_f and GT on D_r, the lowest over trials of
    mnog.metrics.fit_accuracy (per head, then all heads at once for a multi-head model)."""
    def fit(model, data):
        data = _first(data, rehearsal.scored(_size(data), "training fit", full=False))    # a rehearsal's cut
        return fit_accuracy(model, data) if isinstance(data, ColoredImages) else fit_accuracy(model, *data)

    fits = {"initial on D_r": [fit(t.initial, t.retain) for t in prepared.trials.values()],
            "initial on D_f": [fit(t.initial, t.forget) for t in prepared.trials.values()],
            "GT on D_r": [fit(t.references["gt"], t.retain) for t in prepared.trials.values()]}
    return {name: tuple(min(column) for column in zip(*values)) for name, values in fits.items()}


def field_metrics(model: nn.Module, trial: Trial, test: tuple, retain_limit: int = FIELD_RETAIN,
                  test_limit: int = 0) -> dict[str, float]:
    """The field's standard metrics of `model` as a record stores them: mnog.evaluate(model,
    **field_sets(trial, test, retain_limit, test_limit), reference=trial's GT model,
    n_bootstrap=0, seed=trial.seed)
    .as_dict() (UA, RA, TA, the membership attacks, gaps to GT and the average gap; per head
    "head0_", "head1_", ... for a multi-head model). The GT model's own evaluation is computed
    once per trial and process and reused (the same numbers: mnog.evaluate). Cross-validation
    uses FIELD_CV_FOLDS folds, or as many as the smallest set has samples; with a set of one
    sample there is nothing to cross-validate and the result is empty. A model whose logits are
    not finite gets NaN for every number."""
    sets = field_sets(trial, test, retain_limit, test_limit)
    folds = min(FIELD_CV_FOLDS, *(len(inputs) for inputs, _ in sets.values()))
    if folds < 2:
        return {}
    options = {"n_bootstrap": 0, "seed": trial.seed, "cv_folds": folds, "batch_size": scoring_batch(model)}
    limits = (retain_limit, test_limit, *(len(inputs) for inputs, _ in sets.values()))   # (a rehearsal cuts the sets)
    cached = _REFERENCES.get(trial)
    if cached is None or cached[0] is not test or cached[1] != limits:
        cached = (test, limits, evaluate(trial.references["gt"], **sets, **options))
        _REFERENCES[trial] = cached
    reference = cached[2]
    try:
        return evaluate(model, **sets, reference=reference, **options).as_dict()
    except NonFiniteError:
        return dict.fromkeys(evaluate(trial.references["gt"], **sets, reference=reference, **options).as_dict(),
                             math.nan)


def resolve_device(name: str) -> torch.device:
    """A config's device: "auto" is cuda when one is visible, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def prepared(experiment: Experiment) -> Prepared:
    """`experiment.prepare()`, once per process (the last experiment's)."""
    return experiment.prepare()


def _load(experiment: Experiment) -> Prepared:
    """A worker's trials: loaded, never trained (the driver trained them before the sweep)."""
    with load_only():
        return prepared(experiment)


def _run(experiment: Experiment, state: Prepared, job: Job, seeds: list[int]) -> Metrics:
    return experiment.run(state, job, seeds)


def sweep(experiment: Experiment, jobs: list[Job], options: ExecutorConfig, desc: str,
          store: RecordStore | None = None) -> list[dict]:
    """Every record of `jobs` on the experiment's trials, running on the executor `options`
    names whatever the record store lacks (mnog.sweep.run_sweep: resumable, one writer); the
    store is results/<experiment.store>/records.jsonl unless `store` names another."""
    prepared(experiment)                        # the driver trains (or loads) every model first
    jobs = rehearsal.jobs(jobs, desc)           # a rehearsal runs one job per method
    device = experiment.device()
    # Workers see their device as the driver chose it (one GPU each: "cuda").
    for_workers = experiment if options.executor == "serial" else _on_device(experiment, job_device(options, device))
    if options.executor != "serial":
        prepared.cache_clear()                  # the workers load their own copies
    store = store or RecordStore(RESULTS / experiment.store / "records.jsonl")
    with from_config(options, gpu=device.type == "cuda") as executor:
        return run_sweep(jobs, experiment.seeds(), Runner(_load, _run, for_workers), store, experiment.setting(), desc,
                         executor)


def _on_device(experiment: Experiment, device: str) -> Experiment:
    if experiment.cfg.device == device:
        return experiment
    return dataclasses.replace(experiment, cfg=dataclasses.replace(experiment.cfg, device=device))


def script_main(spec) -> None:
    """The `__main__` block of every artifact script: `script_main(__spec__)`. Runs the
    importable module's `main` (so that worker processes and Ray unpickle its classes by
    module name), known errors as one line with exit status 2 (mnog.errors.cli). With
    --plan, `main` stops once its command line is parsed and checked (mnog.config.PlanRequested)
    and the module's `plan(cfg)` is printed instead: what the run would train and run, and
    how long it would take here (mnog.plan). On an AMD CPU the script first re-executes itself
    with MKL's fast kernels (mnog.mkl)."""
    if spec is None:
        sys.exit("run the artifact scripts as modules: python -m artifact.<name> (or through make)")
    mkl.reexec()
    module = importlib.import_module(spec.name)

    def main():
        try:
            return module.main()
        except PlanRequested as request:
            from mnog.plan import print_script_plan
            return print_script_plan(module, request)

    sys.exit(cli(main))


