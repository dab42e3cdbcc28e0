"""Hyperparameter sweeps: grids, resumable execution on any executor, and best-configuration selection."""
from __future__ import annotations

import functools
import itertools
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mnog.compare import field_columns
from mnog.errors import NonFiniteError
from mnog.config import field
from mnog.executors import Executor, Serial
from mnog.methods import SPANS, get_method
from mnog.projection import SCOPES
from mnog.results import ROOT, RecordStore, exclusive, now, provenance, stable_hash


def grid(**axes: Sequence) -> list[dict]:
    """Every combination of the axes' values, e.g. grid(eta=[1e-3, 1e-4], sigma=[0.1, 1])."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def method_grid(method: str, axes: dict[str, Sequence], max_values: int = 0,
                options: dict[str, dict] | None = None, epochs: int | None = None) -> list[dict]:
    """The configurations `method` sweeps: the product of the axes it takes (its required
    hyperparameters), at most `max_values` values per axis (0: all; `thin_axis`), each with the method's
    fixed `options[method]` (e.g. MinNorm-OG's order). Configurations the method rejects
    (MinNorm-OG's λ_reg > 1, or with `epochs` given its T_GD ≥ T) are left out."""
    method_cls = get_method(method)
    names = method_cls.hyperparameters(required_only=True)
    missing = [n for n in names if n not in axes]
    if missing:
        raise ValueError(f"the grid has no axis for {method}'s {', '.join(missing)}")
    fixed = (options or {}).get(method, {})
    configs = []
    for config in grid(**{n: thin_axis(n, axes[n], max_values) for n in names}):
        config = {**config, **fixed}
        try:
            built = method_cls.build_config(config)
            if epochs is not None:
                method_cls.check_budget(built, epochs)
        except ValueError:
            continue
        configs.append(config)
    return configs


def thin_axis(name: str, values: Sequence, max_values: int) -> list:
    """At most `max_values` of a grid axis (0: all of them). The step size η keeps its largest
    values (a budget of a few unlearning steps moves nothing at the smallest); every other
    axis keeps values spread evenly from its first to its last, so that both ends of the
    paper's range are tried. One value: the axis's first (η: its largest)."""
    values = list(values)
    if not max_values or max_values >= len(values):
        return values
    if name == "eta":
        return sorted(values, reverse=True)[:max_values]
    return [values[round(i)] for i in np.linspace(0, len(values) - 1, max_values)] if max_values > 1 else values[:1]


@dataclass(frozen=True)
class MethodOptions:
    """Method options fixed for a whole sweep: added to every configuration of the method
    (so recorded in every record's config), never swept."""
    minnorm_order: str = field("project_first", "MinNorm-OG's step order: project_first (project, then a fresh "
                                                "descent step: ours), descent_first, or authors (the stale gradient "
                                                "of the authors' code)", choices=("project_first", "descent_first",
                                                                                 "authors"))
    minnorm_precision: str = field("float32", "MinNorm-OG's output gradients G: float32 (authors) or float64",
                                   choices=("float32", "float64"))
    minnorm_span: str = field("full", "MinNorm-OG's span: full (Algorithm 1) or none (G empty: each projection step "
                                      "is θ ← (1 − s)·θ, a scheduled shrinkage; artifact/ablation.py)",
                              choices=SPANS)
    minnorm_scope: str = field("all", "the parameters MinNorm-OG's projection (or shrinkage) acts on: all, body (all "
                                      "but BatchNorm and the heads) or heads (the output layers)", choices=SCOPES)

    def method_options(self) -> dict[str, dict]:
        # span and scope enter a configuration only when not Algorithm 1's, so that MinNorm-OG's
        # records keep their keys and a variant's never take them.
        variant = {**({"span": self.minnorm_span} if self.minnorm_span != "full" else {}),
                   **({"scope": self.minnorm_scope} if self.minnorm_scope != "all" else {})}
        return {"MinNorm-OG": {"order": self.minnorm_order, "precision": self.minnorm_precision, **variant}}


FIELD_RETAIN = 2000   # retain samples the field's metrics score by default (mnog.experiment.field_sets)

# The protocol the `cpu` and `smoke` profiles keep (their published numbers were measured
# with it): each run seeds its own draws, fused AdamW, the paper's ℓ1-Sparse schedule, NPO's
# softplus form. The `paper` profiles follow the authors' code (the fields' defaults).
BEFORE_OPTIONS = {"seeding": "job", "adamw": "fused", "l1_schedule": "per_epoch", "npo_form": "softplus"}


@dataclass(frozen=True)
class ImageSweepConfig(MethodOptions):
    """The options the image experiments' sweeps share (Table 2, Label Erasure); each adds its
    own (where their jobs run is mnog.executors.ExecutorConfig, parsed beside). The protocol
    options default to the authors' code (docs/authors-code.md), the other reading one flag
    away."""
    trials: int = field(5, "trials (a new D_f, initial model, ground-truth model and D'_r each)", minimum=1)
    per_class: int = field(0, "training images per class (0: all)", minimum=0)
    test_per_class: int = field(0, "test images per class for the metrics (0: all)", minimum=0)
    width: int = field(64, "channels of ColorResNet-18's first layer (64: torchvision's)", minimum=1)
    first_seed: int = field(1, "trials use seeds first_seed, first_seed + 1, ...", minimum=0)
    grid_values: int = field(0, "keep at most this many values per grid axis (0: all)", minimum=0)
    n_pert: int = field(0, "MinNorm-OG's n_pert (0: the grid's 50)", minimum=0)
    logit_clamp: float = field(30.0, "logits are clamped to ±this in unlearning losses (authors' code)", above=0)
    device: str = field("auto", "torch device; auto: cuda when available", device=True)
    precision: str = field("float32", "training precision of the initial and ground-truth models: float32 (the "
                                      "authors') or bfloat16 (autocast)", choices=("float32", "bfloat16"))
    bn_stats: str = field("both", "BatchNorm's running statistics see both batches of every step (both: the authors' "
                                  "loop) or only those in the loss (loss)", choices=("both", "loss"))
    field_retain: int = field(FIELD_RETAIN, "retain samples the field's metrics score (a fixed subsample of D_r "
                                            "when larger; 0: all)", minimum=0)
    field_test: int = field(0, "test samples the field's metrics score (a fixed subsample when larger; 0: all)",
                            minimum=0)
    eval_precision: str = field("float32", "the metrics' forward passes: float32, or bfloat16 (autocast, channels-last "
                                           "on CUDA; benchmarks/bench_eval_precision.py measures how many predictions "
                                           "change)", choices=("float32", "bfloat16"))
    grids: str = field("paper", "search grids: paper (the paper's tables) or released (the authors' configs, where "
                                "they differ)", choices=("paper", "released"))
    salun_mask_loss: str = field("batch_sum", "SalUn's mask gradient: batch_sum (authors) or mean (the paper)",
                                 choices=("batch_sum", "mean"))
    salun_unmasked: str = field("decay", "SalUn's entries outside the mask: decay (AdamW's weight decay still "
                                         "shrinks them: authors) or fixed (the paper)", choices=("decay", "fixed"))
    l1_schedule: str = field("one_step_late", "ℓ1-Sparse's weight: one_step_late (λ_reg at the first step, then "
                                              "(2 − 2t/T)·λ_reg of the previous step's epoch t: authors) or "
                                              "per_epoch (the paper's)", choices=("one_step_late", "per_epoch"))
    seeding: str = field("trial", "what seeds a run's batch order, subsamples and noise: trial (the trial alone, so "
                                  "every configuration of a method sees the same batches: authors) or job (the job's "
                                  "key: each configuration its own draws)", choices=("trial", "job"))
    adamw: str = field("default", "AdamW's kernel: default (PyTorch's choice, the for-loop kernel on a CPU and "
                                  "foreach on CUDA: authors), fused, forloop or foreach",
                       choices=("default", "fused", "forloop", "foreach"))
    npo_form: str = field("ratio", "NPO's log(1 + r^β): ratio (the probabilities' ratio, its power, then log1p: "
                                   "authors) or softplus (of β·Δlog p: stable)", choices=("ratio", "softplus"))

    def method_options(self) -> dict[str, dict]:
        return {**super().method_options(),
                "SalUn": {"mask_loss": self.salun_mask_loss, "unmasked": self.salun_unmasked},
                "L1Sparse": self._changed("l1_schedule", "schedule"), "NPO": self._changed("npo_form", "form")}

    def unlearn_options(self) -> dict:
        """mnog.unlearn's keyword arguments of the protocol (an experiment's `protocol` adds its batching)."""
        return {"bn_stats": self.bn_stats, "adamw": self.adamw}

    def protocol_setting(self) -> dict:
        """What of the protocol enters an experiment's setting (so its records' key): the training
        precision and bn_stats, and seeding and the AdamW kernel where they differ from the
        `cpu` profile's (the behaviour before these options), so that earlier records stay valid."""
        return {"precision": self.precision, "bn_stats": self.bn_stats, **self._changed("seeding"),
                **self._changed("adamw")}

    def _changed(self, option: str, name: str | None = None) -> dict:
        """{name: the option's value} where it differs from BEFORE_OPTIONS, else {}: what a record
        holds of the option, so that records written before it existed keep their keys."""
        value = getattr(self, option)
        return {} if value == BEFORE_OPTIONS[option] else {name or option: value}

    def field_limits(self) -> dict[str, int]:
        """mnog.experiment.field_metrics' retain_limit and test_limit."""
        return {"retain_limit": self.field_retain, "test_limit": self.field_test}

    def field_scored(self, forget: int, retain: int, test: int) -> int:
        """Images field_metrics forwards per job and trial (mnog.plan's cost), from the sets' sizes."""
        return forget + min(retain, self.field_retain or retain) + min(test, self.field_test or test)

    def scoring_setting(self) -> dict:
        """What of the scoring enters an experiment's setting (so its records' key): only what
        differs from the defaults, so that records written before these options stay valid."""
        return {**({"field_retain": self.field_retain} if self.field_retain != FIELD_RETAIN else {}),
                **({"field_test": self.field_test} if self.field_test else {}),
                **({"eval_precision": self.eval_precision} if self.eval_precision != "float32" else {})}


# The protocol options: a run that changes one of them from its profile's value writes its
# tables and figures to results/<target>/<profile>+<option>=<value>/ (see `variant`).
PROTOCOL_OPTIONS = ("precision", "bn_stats", "eval_precision", "grids", "minnorm_order", "minnorm_precision",
                    "minnorm_span", "minnorm_scope", "salun_mask_loss", "salun_unmasked", "l1_schedule", "npo_form",
                    "seeding", "adamw")


def variant(cfg, profile_cfg) -> str:
    """The results folder's suffix for a run whose protocol options differ from its profile's
    ("" when none does), e.g. "+minnorm_order=authors"."""
    changed = [f"{name}={getattr(cfg, name)}" for name in PROTOCOL_OPTIONS
               if hasattr(cfg, name) and getattr(cfg, name) != getattr(profile_cfg, name)]
    return "+" + ",".join(changed) if changed else ""


RELEASED_GRIDS = json.loads((ROOT / "paper_tables" / "released_grids.json").read_text())


def search_grid(experiment: str, setting: str, paper: dict, grids: str) -> tuple[dict, str]:
    """The grid of one setting (a Label Erasure figure, a Table 2 row) and where it comes from:
    the paper's table, or with grids="released" the authors' released config where one exists
    (docs/authors-code.md#released-grids; paper_tables/released_grids.json)."""
    if grids not in ("paper", "released"):
        raise ValueError(f"grids must be 'paper' or 'released', got {grids!r}")
    released = RELEASED_GRIDS[experiment].get(setting)
    if grids == "paper":
        return paper, "the paper's table"
    if released is None:
        return paper, "the paper's table (no released config)"
    return {k: v for k, v in released.items() if not k.startswith("_")}, f"the released {released['_source']}"


@dataclass(frozen=True)
class Job:
    """One configuration of one method at one budget T, to be run on every trial."""
    method: str
    epochs: int
    hyperparameters: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, method: str, epochs: int, hyperparameters: dict) -> "Job":
        return cls(method, epochs, tuple(sorted(hyperparameters.items())))

    @property
    def config(self) -> dict:
        return dict(self.hyperparameters)

    def key(self, setting: dict, trial: int) -> str:
        return stable_hash({"setting": setting, "method": self.method, "epochs": self.epochs,
                            "config": self.config, "trial": trial})


def diverged_metrics(names: Sequence[str]) -> dict[str, float]:
    """The metrics recorded for a trial whose unlearned model is not finite (a diverged run)."""
    return dict.fromkeys(names, math.nan)


def retain_seed(trial: int) -> int:
    """The seed of a trial's D'_r: a function of the trial alone, so that every method and
    configuration of a trial sees the same retain subset (docs/authors-code.md#one-retain-subset-per-trial)."""
    return int(stable_hash({"retain_subset": trial}), 16) % 2**63


def trial_seed(trial: int) -> int:
    """The seed of every run of a trial under per-trial seeding (seeding="trial"): a function of
    the trial alone, so that every configuration of a method draws the same batch order,
    subsamples and noise (common random numbers across the grid, as the authors' code re-seeds
    every run with the trial's seed)."""
    return int(stable_hash({"trial_draws": trial}), 16) % 2**63


# ---------------------------------------------------------------------------------------
# Running a sweep
# ---------------------------------------------------------------------------------------

Metrics = dict[int, dict[str, float]]  # {trial: {metric name: value}}


@dataclass(frozen=True)
class Runner:
    """One job, in a form other processes can run too: `run(context, shared, job, trials) ->
    {trial: metrics}`, where `shared = setup(context)` (the data and the trained models every
    job needs) is built once per process and kept while the context stays the same. `setup`
    and `run` are module-level functions (pickled by name); `context` is hashable and
    picklable. mnog.experiment.sweep builds one from an Experiment; any callable
    `run(job, trials) -> {trial: metrics}` can drive a serial sweep."""
    setup: Callable[[Hashable], Any]
    run: Callable[[Hashable, Any, Job, list[int]], Metrics]
    context: Hashable

    def __call__(self, job: Job, trials: list[int]) -> Metrics:
        return self.run(self.context, _shared(self.setup, self.context), job, trials)


@functools.lru_cache(maxsize=1)
def _shared(setup: Callable, context: Hashable):
    """The per-process cache behind Runner: one context's state at a time."""
    return setup(context)


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back for one job: its metrics (None: it diverged), the
    divergence message, its wall time and where it ran."""
    metrics: Metrics | None
    error: str | None
    seconds: float
    provenance: dict


def run_job(run: Callable[[Job, list[int]], Metrics], job: Job, trials: list[int]) -> Outcome:
    """Run one job where the executor put it (any process); a non-finite model is an outcome."""
    start = time.perf_counter()
    try:
        metrics, error = run(job, trials), None
    except NonFiniteError as exc:
        metrics, error = None, str(exc)
    return Outcome(metrics, error, time.perf_counter() - start, provenance())


class SweepError(RuntimeError):
    """Jobs raised errors; every other job's records were stored and a re-run retries these."""


def run_sweep(jobs: Sequence[Job], trials: Sequence[int], run: Callable[[Job, list[int]], Metrics],
              store: RecordStore, setting: dict, desc: str = "sweep", executor: Executor | None = None) -> list[dict]:
    """Run every job on every trial that `store` does not hold yet; return the jobs' records.

    A job runs all its missing trials at once, wherever `executor` puts it (default: in this
    process). This process alone writes the store, appending a job's records as soon as they
    arrive, so an interrupted sweep (a killed driver or worker) loses only the jobs in
    flight and a re-run finishes what is missing. A job whose model turns non-finite is
    stored with NaN metrics and the error; a job that raises is not stored, the others go on,
    and SweepError is raised at the end. Jobs start longest first (epochs × trials), so the
    bar's time estimate errs on the long side and no long job is left for the end.
    """
    executor = executor or Serial()
    # Two runs of the same sweep on one store (make all started twice, Figure 2 beside Figure 6)
    # take turns: the second waits, then runs only what the first did not store.
    with exclusive(store.path.with_name(f".{store.path.stem}-{stable_hash(setting)}.lock"), desc):
        return _run_sweep(jobs, trials, run, store, setting, desc, executor)


def _run_sweep(jobs, trials, run, store, setting, desc, executor) -> list[dict]:
    done = store.keys()
    pending = [(job, [t for t in trials if job.key(setting, t) not in done]) for job in jobs]
    pending = [(job, missing) for job, missing in pending if missing]
    pending.sort(key=lambda item: -item[0].epochs * len(item[1]))  # stable: grid order among equals
    failures, diverged = [], 0
    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=desc, unit=" jobs", smoothing=0.05,
              dynamic_ncols=True) as bar:
        if pending:
            bar.write(f"{desc}: {len(pending)} of {len(jobs)} jobs to run ({executor.describe()})")
        for index, outcome, error in executor.map_unordered(run_job, [(run, job, missing) for job, missing in pending]):
            job, missing = pending[index]
            if error is not None:
                failures.append((job, error))
            else:
                stored = [_record(job, t, outcome, len(missing), setting) for t in missing]
                store.append(stored)
                diverged += any(r["diverged"] for r in stored)
            bar.update()
            counts = [(len(failures), "failed"), (diverged, "diverged"), (executor.restarts, "workers lost")]
            bar.set_postfix_str(", ".join(f"{n} {what}" for n, what in counts if n))
    if failures:
        job, error = failures[0]
        raise SweepError(f"{len(failures)} of {len(pending)} jobs failed and were not stored (a re-run retries "
                         f"them); the first: {job.method} T={job.epochs} {job.config}: {type(error).__name__}: "
                         f"{error}") from error
    wanted = {job.key(setting, t) for job in jobs for t in trials}
    return [r for r in store.load() if r["key"] in wanted]


def _record(job: Job, trial: int, outcome: Outcome, batch: int, setting: dict) -> dict:
    metrics = None if outcome.metrics is None else outcome.metrics[trial]
    # Diverged: the run stopped on a non-finite model, or its model ended non-finite (NaN metrics).
    diverged = metrics is None or not all(math.isfinite(v) for v in metrics.values())
    return {
        "key": job.key(setting, trial), "setting": setting, "method": job.method, "epochs": job.epochs,
        "config": job.config, "trial": trial, "metrics": metrics, "diverged": diverged, "error": outcome.error,
        "wall_s": outcome.seconds / batch, "trials_run_together": batch, "time": now(),
        "provenance": outcome.provenance,
    }


# ---------------------------------------------------------------------------------------
# Summaries and selection
# ---------------------------------------------------------------------------------------

def central_range(values: np.ndarray) -> tuple[float, float]:
    """The range left after discarding the ⌊n/4⌋ best and ⌊n/4⌋ worst values
    (docs/protocol.md#data-poisoning)."""
    ordered = np.sort(values)
    k = len(ordered) // 4
    return float(ordered[k]), float(ordered[len(ordered) - 1 - k])


def summarize(records: list[dict], metric: str, higher_is_better: bool = False) -> pd.DataFrame:
    """One row per (method, epochs, config): n, median, central range, mean, standard error.

    A diverged run (NaN metric) counts as the worst possible value (±inf)."""
    worst = -math.inf if higher_is_better else math.inf
    rows = [{"method": r["method"], "epochs": r["epochs"], "config": json.dumps(r["config"], sort_keys=True),
             "trial": r["trial"], "value": _value(r, metric, worst)} for r in records]
    if not rows:
        return pd.DataFrame(columns=["method", "epochs", "config", "n", "median", "low", "high", "mean", "se"])
    out = []
    for (method, epochs, config), group in pd.DataFrame(rows).groupby(["method", "epochs", "config"], sort=False):
        values = group.sort_values("trial")["value"].to_numpy(float)
        low, high = central_range(values)
        finite = values[np.isfinite(values)]
        out.append({"method": method, "epochs": epochs, "config": config, "n": len(values),
                    "median": float(np.median(values)), "low": low, "high": high,
                    "mean": float(finite.mean()) if len(finite) == len(values) else worst,
                    "se": float(finite.std(ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else math.nan,
                    "values": values.tolist()})
    return pd.DataFrame(out)


def _value(record: dict, metric: str, worst: float) -> float:
    value = (record.get("metrics") or {}).get(metric)
    return worst if value is None or not math.isfinite(value) else float(value)


def field_means(table: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """`table` (rows naming method, epochs, config, as `summarize` writes them) with the mean
    over the trials of each field metric (`field_columns`) as extra columns named as in the
    records; NaN where a trial lacks it or diverged."""
    names = field_columns({name for r in records for name in (r.get("metrics") or {})})
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], r["epochs"], json.dumps(r["config"], sort_keys=True)), []).append(
            r.get("metrics") or {})
    out = table.copy()
    for name in names:
        out[name] = [float(np.mean([m.get(name, math.nan) for m in groups.get((row.method, row.epochs, row.config), [])]
                                   or [math.nan])) for row in table.itertuples()]
    return out


def select_best(summary: pd.DataFrame, n: int, by: str = "median", higher_is_better: bool = False) -> pd.DataFrame:
    """Per (method, epochs): the configuration with the best `by` ("median" or "mean") over
    its n trials, ties broken by the narrower central range (as the authors' code); only
    configurations with all n trials compete."""
    complete = summary[summary["n"] == n].assign(width=lambda d: d["high"] - d["low"],
                                                 key=lambda d: -d[by] if higher_is_better else d[by])
    best = complete.sort_values(["key", "width"]).groupby(["method", "epochs"], sort=False).head(1)
    return best.drop(columns=["width", "key"]).sort_values(["epochs", "method"]).reset_index(drop=True)


def pareto_front(accuracy: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Indices of the points no other point dominates (accuracy ≥ and error ≤, one of them
    strictly), ordered by increasing error: a method's trade-off curve (docs/protocol.md#label-erasure)."""
    accuracy, error = np.asarray(accuracy, float), np.asarray(error, float)
    a, e = accuracy[:, None], error[:, None]
    dominated_by = (accuracy >= a) & (error <= e) & ((accuracy > a) | (error < e))   # [i, j]: j dominates i
    front = np.flatnonzero(~dominated_by.any(axis=1))
    return front[np.argsort(error[front], kind="stable")]
