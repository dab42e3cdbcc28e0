"""Does mnog's unlearning loop compute what the authors' code computes? Both implementations on
the same cached models of a Label Erasure setting, with the same batches.

    python -m benchmarks.compare_authors --authors PATH                 # Figure 6's cpu models
    python -m benchmarks.compare_authors --authors PATH --sweep         # + their whole sweep
    python -m benchmarks.compare_authors --profile smoke                # mnog's side alone

PATH is a checkout of the authors' release (github.com/jacob-block/overparameterized-unlearning;
checked against commit cff65b217e58b0bea0e2d587d353bb6d8a69ca23). Their modules are imported from
PATH as they are (it needs nothing beyond mnog's environment: torch, torchvision, numpy,
matplotlib); nothing of their code is modified or copied here. Every other flag is the Label
Erasure scripts' (--profile, --dataset, --figure, --methods, --seeding, ...; default --figure 6
at the profile `auto` picks: cpu without a GPU), and the trials' cached models are theirs
(`make figure6` trains them; so does this script when they are missing).

1. **Same batches.** Per method, one configuration (the first of the setting's grid at the
   profile: its largest η, every other axis at its first value), on every trial: mnog.unlearn
   runs it with the authors' protocol (BatchNorm sees both batches, PyTorch's default AdamW
   kernel, ℓ1-Sparse one step late, NPO's ratio form, SalUn's batch-sum mask with decaying
   frozen entries, MinNorm-OG's order "authors") and records every step's batches; then their
   unlearner runs on a copy of the same initial model, fed exactly those batches. Per method:
   the largest difference over the trials of any parameter and any BatchNorm buffer, and each
   side's metrics (mean over the trials): mnog.metrics.erasure_metrics of mnog's model and
   their `evaluate` of theirs. Extra rows change one thing on mnog's side (its fused AdamW,
   ℓ1's per-epoch schedule, NPO's softplus form, MinNorm-OG's project_first order) to show
   what it moves. NGD's noise, SalUn's relabels and Retrain's fresh weights are random draws,
   which the two implementations make from different generators: only their metrics compare.
   So does MinNorm-OG's subsample where it is not the whole batch (not at the cpu profile).
2. **The metric.** Their `evaluate` against mnog.metrics.erasure_metrics on every trial's
   initial and ground-truth model.
3. **Their sweep** (--sweep): every configuration of the setting's grid (as mnog's sweep
   thins it at the profile) on every trial, run as their grid search runs it (their
   `grid_worker_seq` per configuration: every run re-seeded with the trial's seed, D'_r drawn
   by `random.sample`, shuffling DataLoaders; their `pareto` on the means), beside mnog's sweep
   of the same models at the given options (its records, run where missing): per method the
   frontier point closest to (1, 0), its distance and rank, and how far the two
   implementations' means lie apart per configuration, in standard errors.

How their code is driven from outside:
- Their interface's `_prepare` loads a `data_dict.pt` of their own data generation and builds
  a width-64 ColorResNet; a subclass of their `EraseExperimentInterface` overrides `_prepare`
  (the method each of their experiments defines) to build mnog's model from its state dict,
  and `evaluate` to pass their `data_module.evaluate` DataLoaders of mnog's test images (in
  gray, red and green) instead of reading torchvision's CIFAR-10 files. Everything else (their
  seeding, logger, batch processing with the logit clamp, data loss, unlearners, metric) runs
  as written.
- `_prepare`'s `random.sample(data_dict["retain"], k)` passes a Dataset, which `random.sample`
  rejects on Python 3.11 (one of the release's call sites that does not run as written); the
  override samples a list of the retain samples with the same call.
- Their teacher (SCRUB, NPO) is `type(model)()` and Retrain's fresh model
  `type(model)(**model.get_constructor_args())`; NGD calls `model.get_device()`: mnog's model is
  given a subclass whose constructor, without arguments, builds the same architecture, and
  which has both methods.
- Same batches: stand-ins for their DataLoaders hand out the recorded batches (the forget
  loader one epoch per iteration, the retain loader one stream). SalUn's mask pass iterates the
  forget loader once more before the first epoch; it gets the first epoch's batches.
- Their grid search (`run_grid`) builds the interface class from the experiment's name and
  writes result files and plots; the sweep here loops over the configurations itself, as
  `run_grid` does, and calls their `grid_worker_seq`, `get_active_keys`, `get_grid` and
  `pareto`. Their seeds come from the names of a folder's `seed<N>` subfolders
  (`get_seed_list`): a temporary folder holds one per trial.

Writes results/compare_authors/figure<N>-<profile>/: agreement.csv, references.csv, and with
--sweep frontiers.csv and configurations.csv; run.json (the command, the authors' commit,
provenance). Measured: docs/authors-code.md#agreement-with-the-authors-loop.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tabulate import tabulate
from torch import nn
from torch.utils.data import DataLoader

from mnog.colors import ERASURE_RGB, GRAY, GREEN, RED, ColoredImages, render
from mnog.config import parse_config
from mnog.erasure import PROFILES, Config, LabelErasure, frontier_points, setting_sweep
from mnog.experiment import Trial, prepared, sweep
from mnog.loop import unlearn
from mnog.metrics import erasure_metrics
from mnog.results import RESULTS, device_name, provenance, write_json
from mnog.sweep import Job, method_grid, retain_seed, thin_axis

AUTHORS_COMMIT = "cff65b217e58b0bea0e2d587d353bb6d8a69ca23"
# mnog's names -> theirs: methods (common/utils/unlearner_utils.py) and hyperparameters (grid configs).
AUTHORS_METHODS = {"Retrain": "Retrain", "MinNorm-OG": "MinNormOG", "GD": "GD", "GA": "GA", "NGP": "NGP",
                   "NGD": "NGD", "Ridge": "Ridge", "L1Sparse": "L1Sparse", "SCRUB": "Scrub", "NPO": "NPO",
                   "SalUn": "SalUn"}
AUTHORS_KEYS = {"eta": "lr", "lambda_ga": "ga_coef", "lambda_reg": "reg_coef", "gamma_reg": "reg_coef_decay",
                "sigma": "noise_sig", "t_gd": "num_gd_epochs", "t_proj": "proj_pd", "n_pert": "grad_sample_size"}
MNOG_KEYS = {theirs: ours for ours, theirs in AUTHORS_KEYS.items()}
# mnog as the authors' code runs: the protocol, and each method's options.
AUTHORS_PROTOCOL = {"bn_stats": "both", "adamw": "default"}
AUTHORS_OPTIONS = {"L1Sparse": {"schedule": "one_step_late"}, "NPO": {"form": "ratio"},
                   "SalUn": {"mask_loss": "batch_sum", "unmasked": "decay"}, "MinNorm-OG": {"order": "authors"}}
RANDOM_DRAWS = {"NGD": "noise", "SalUn": "relabels", "Retrain": "fresh weights"}
# The rows that change one thing on mnog's side: label, method options, protocol.
CHANGES = {"GD": ("GD, fused AdamW", {}, {"adamw": "fused"}),
           "L1Sparse": ("L1Sparse, schedule per_epoch", {"schedule": "per_epoch"}, {}),
           "NPO": ("NPO, form softplus", {"form": "softplus"}, {}),
           "MinNorm-OG": ("MinNorm-OG, order project_first", {"order": "project_first"}, {})}


@dataclass(frozen=True)
class Row:
    """One comparison: `method` as the authors run it, and on mnog's side these options."""
    label: str
    method: str
    options: dict            # the method's options on mnog's side
    protocol: dict           # mnog.unlearn's protocol on mnog's side


def rows(methods) -> list[Row]:
    """Per method the authors' reading, then the rows that change one thing on mnog's side."""
    out = []
    for method in methods:
        options = AUTHORS_OPTIONS.get(method, {})
        out.append(Row(method, method, options, AUTHORS_PROTOCOL))
        if method in CHANGES:
            label, changed, protocol = CHANGES[method]
            out.append(Row(label, method, {**options, **changed}, {**AUTHORS_PROTOCOL, **protocol}))
    return out


# -- their modules, and mnog's trial as their interface expects it ------------------------------

class Authors:
    """The authors' modules, imported from a checkout (nothing of it modified)."""

    def __init__(self, path: Path):
        if not (path / "common" / "unlearners" / "unlearners.py").is_file():
            raise SystemExit(f"--authors {path}: not a checkout of jacob-block/overparameterized-unlearning "
                             "(no common/unlearners/unlearners.py)")
        sys.path.insert(0, str(path))
        self.interface = importlib.import_module("experiments.erase.interface")
        self.data_module = importlib.import_module("experiments.erase.data_module")
        self.data_utils = importlib.import_module("common.utils.data_utils")
        self.misc = importlib.import_module("common.utils.misc_utils")
        self.grid_utils = importlib.import_module("common.utils.grid_utils")
        self.grid_search = importlib.import_module("common.grid_search")
        self.commit = git_commit(path)
        self.OnMnog = on_mnog_interface(self)


def git_commit(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def on_mnog_interface(authors: Authors) -> type:
    """Their EraseExperimentInterface with `_prepare` and `evaluate` taking mnog's trial (cfg.mnog)."""

    class OnMnog(authors.interface.EraseExperimentInterface):
        def _prepare(self):
            context: Context = self.cfg.mnog
            trial = context.trials[self.cfg.seed]
            model = context.model_class()            # a fresh model first, as theirs (its draws included)
            model.load_state_dict(trial.initial.state_dict())
            model.to(self.cfg.device)
            self.cfg.class_sizes = context.class_sizes
            replay = context.replay
            if replay is None:                       # their protocol: D'_r, shuffling loaders
                retain = samples(trial.retain)
                kept = random.sample(retain, k=int(self.cfg.retain_access_pct * len(retain)))
                retain_set = authors.data_utils.TupleListDataset(kept)
                forget_set = authors.data_utils.TupleListDataset(samples(trial.forget))
                size = self.cfg.batch_size
                retain_loader = DataLoader(retain_set, batch_size=size, shuffle=True, drop_last=len(retain_set) > size)
                forget_loader = DataLoader(forget_set, batch_size=size, shuffle=True)
            else:
                retain_loader, forget_loader = Replay([replay.retain]), Replay(replay.forget)
            optimizer = torch.optim.AdamW(model.parameters(), lr=self.cfg.lr)
            return model, optimizer, retain_loader, forget_loader, authors.misc.EasyDict(device=self.cfg.device)

        def evaluate(self):
            return list(authors.data_module.evaluate(self.model, self.eval_cfg, self.cfg.mnog.test_loaders))

    return OnMnog


@dataclass
class Recorded:
    """The batches of one mnog run, as their loaders yield them."""
    retain: list             # every step's retain batch
    forget: list             # per epoch (a pass of their forget loader), its forget batches


@dataclass
class Context:
    """What their interface reads of mnog (cfg.mnog): the trials, the test loaders, and in a
    replay the recorded batches of the run."""
    trials: dict[int, Trial]
    test_loaders: list
    class_sizes: tuple
    model_class: type
    replay: Recorded | None = None


class Replay:
    """A stand-in for a DataLoader that hands out recorded batches: each iteration the next pass."""

    def __init__(self, passes: list[list]):
        self.passes = iter(passes)

    def __iter__(self):
        return iter(next(self.passes))


def batch(data, index: torch.Tensor | None = None) -> tuple:
    """(inputs, (class labels, color labels)) of a trial's set (a ColoredImages, rendered here,
    or such a pair), all of it or the samples `index` picks."""
    if isinstance(data, ColoredImages):
        return data.inputs(index), data.targets(index)
    inputs, (classes, colors) = data
    return (inputs, (classes, colors)) if index is None else (inputs[index], (classes[index], colors[index]))


def samples(data) -> list:
    """A trial's set as a list of (input, (class, color)), on the CPU."""
    inputs, (classes, colors) = batch(data)
    return list(zip(inputs.cpu(), zip(classes.cpu(), colors.cpu())))


def recorded(trial: Trial, result, salun: bool) -> Recorded:
    epochs = max(e for e, _, _ in result.batches) + 1
    forget = [[batch(trial.forget, f) for e, _, f in result.batches if e == epoch] for epoch in range(epochs)]
    return Recorded([batch(trial.retain, r) for _, r, _ in result.batches], forget[:1] + forget if salun else forget)


def authors_model_class(model: nn.Module) -> type:
    """A subclass of the model's class built, without arguments, as `model` (mnog's ColorResNet
    with its config), with the two methods their unlearners call."""
    arguments = dict(model.config)

    class AsAuthors(type(model)):
        def __init__(self):
            super().__init__(**arguments)

        def get_constructor_args(self):
            return {}

        def get_device(self):
            return next(self.parameters()).device

    return AsAuthors


def test_loaders(authors: Authors, experiment: LabelErasure, evaluation) -> list:
    """Their evaluate's three loaders (gray, red, green copies of the test images), from mnog's."""
    images, labels, _ = evaluation
    loaders = []
    for color in (GRAY, RED, GREEN):
        colors = torch.full_like(labels, color)
        inputs = render(images, colors, ERASURE_RGB, experiment.panel.norm)
        dataset = authors.data_utils.TupleListDataset(samples((inputs, (labels, colors))))
        loaders.append(DataLoader(dataset, batch_size=256, shuffle=False))
    return loaders


def authors_config(authors: Authors, experiment: LabelErasure, config: dict, seed: int, context: Context):
    """Their run config (an EasyDict) for mnog's `config` on the trial `seed`."""
    setting = experiment.panel
    theirs = {AUTHORS_KEYS[k]: v for k, v in config.items() if k in AUTHORS_KEYS}
    return authors.misc.EasyDict(seed=seed, device=str(experiment.device()), num_epochs=setting.epochs,
                                 batch_size=setting.batch_size, retain_access_pct=setting.p_retain, mnog=context,
                                 **theirs)


# -- 1. the same batches -------------------------------------------------------------------

def first_config(experiment: LabelErasure, method: str) -> dict:
    """The method's first configuration of the setting's grid at the profile (largest η)."""
    setting, cfg = experiment.panel, experiment.cfg
    axes = {**setting.grid, **({"n_pert": [cfg.n_pert]} if cfg.n_pert else {})}
    return method_grid(method, axes, cfg.grid_values, epochs=setting.epochs)[0]


def mnog_run(experiment: LabelErasure, trial: Trial, job: Job, protocol: dict):
    model = copy.deepcopy(trial.initial)
    result = unlearn(model, job.method, forget=trial.forget, retain=trial.retain, loss=experiment.task,
                     epochs=job.epochs, seed=experiment.run_seed(job, trial.seed), retain_seed=retain_seed(trial.seed),
                     on_nonfinite="ignore", record_batches=True, **{**experiment.protocol(), **protocol}, **job.config)
    return model, result


def differences(ours: nn.Module, theirs: nn.Module) -> tuple[float, float]:
    """The largest absolute difference of any parameter, and of any BatchNorm buffer."""
    def largest(a, b):
        return max((float((x.detach().double() - y.detach().double()).abs().max()) for x, y in zip(a, b)
                    if x.numel()), default=0.0)
    return (largest(ours.parameters(), theirs.parameters()),
            largest([b.float() for b in ours.buffers()], [b.float() for b in theirs.buffers()]))


def same_batches(experiment: LabelErasure, state, authors: Authors | None, context: Context | None) -> pd.DataFrame:
    images, labels, _ = state.evaluation
    norm = experiment.panel.norm
    out = []
    for row in rows(experiment.cfg.methods):
        config = {**first_config(experiment, row.method), **row.options}
        job = Job.of(row.method, experiment.panel.epochs, config)
        per_trial = []
        for seed, trial in state.trials.items():
            ours, result = mnog_run(experiment, trial, job, row.protocol)
            entry = dict(zip(("mnog_quality", "mnog_error"), erasure_metrics(ours, images, labels, norm)))
            heads = len(batch(trial.retain, torch.arange(1))[1])   # G's columns: subsample × heads; all of the batch?
            entry["whole_batch"] = all(p.rows == heads * len(result.batches[p.step][1]) for p in result.projections)
            if authors is not None:
                interface = authors.OnMnog("", authors_config(
                    authors, experiment, config, seed,
                    dataclasses.replace(context, replay=recorded(trial, result, row.method == "SalUn"))))
                interface.run_unlearner(AUTHORS_METHODS[row.method])
                entry["parameters"], entry["buffers"] = differences(ours, interface.model)
                entry["authors_quality"], entry["authors_error"] = interface.evaluate()
            per_trial.append(entry)
        frame = pd.DataFrame(per_trial)
        draws = RANDOM_DRAWS.get(row.method) or ("" if frame["whole_batch"].all() or row.method != "MinNorm-OG"
                                                 else "subsample")
        out.append({"row": row.label, "method": row.method,
                    "config": json.dumps(config),
                    "mnog_protocol": json.dumps(row.protocol), "random_draws_differ": draws,
                    "max_parameter_difference": frame["parameters"].max() if authors else math.nan,
                    "max_buffer_difference": frame["buffers"].max() if authors else math.nan,
                    "mnog_quality": frame["mnog_quality"].mean(), "mnog_error": frame["mnog_error"].mean(),
                    "authors_quality": frame["authors_quality"].mean() if authors else math.nan,
                    "authors_error": frame["authors_error"].mean() if authors else math.nan,
                    "trials": len(frame)})
    return pd.DataFrame(out)


def agreement_markdown(table: pd.DataFrame) -> str:
    def number(v, fmt):
        return "—" if pd.isna(v) else format(v, fmt)
    return tabulate([[r.row, number(r.max_parameter_difference, ".2g"), number(r.max_buffer_difference, ".2g"),
                      f"{r.mnog_quality:.4f} / {r.mnog_error:.4f}",
                      f"{number(r.authors_quality, '.4f')} / {number(r.authors_error, '.4f')}",
                      r.random_draws_differ or ""] for r in table.itertuples()],
                    headers=["method (mnog's side)", "max abs Δ parameter", "max abs Δ BN buffer",
                             "mnog: retain quality / forget error", "authors: retain quality / forget error",
                             "drawn differently"], tablefmt="github", disable_numparse=True)


# -- 2. the metric ---------------------------------------------------------------------------

def references(experiment: LabelErasure, state, context: Context, authors: Authors) -> pd.DataFrame:
    images, labels, _ = state.evaluation
    out = []
    for seed, trial in state.trials.items():
        for name, model in (("initial", trial.initial), ("GT", trial.references["gt"])):
            ours = erasure_metrics(model, images, labels, experiment.panel.norm)
            was_training = model.training
            theirs = authors.data_module.evaluate(model, authors.misc.EasyDict(device=str(experiment.device())),
                                                  context.test_loaders)
            model.train(was_training)                   # their evaluate leaves the model in eval mode
            out.append({"trial": seed, "model": name, "mnog_quality": ours[0], "authors_quality": theirs[0],
                        "mnog_error": ours[1], "authors_error": theirs[1]})
    return pd.DataFrame(out)


# -- 3. their sweep beside ours -----------------------------------------------------------------

def search_space(experiment: LabelErasure) -> dict:
    """The setting's grid, thinned as mnog's sweep thins it at the profile, in their names."""
    setting, cfg = experiment.panel, experiment.cfg
    axes = {**setting.grid, **({"n_pert": [cfg.n_pert]} if cfg.n_pert else {})}
    return {"retain_access_pct": [setting.p_retain], "num_epochs": [setting.epochs],
            **{AUTHORS_KEYS[k]: thin_axis(k, v, cfg.grid_values) for k, v in axes.items()}}


def their_sweep(experiment: LabelErasure, state, authors: Authors, context: Context) -> pd.DataFrame:
    """Every configuration on every trial as their grid search runs it; per configuration the
    means and standard errors over the trials, and their pareto flags."""
    space = search_space(experiment)
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in state.trials:
            (Path(folder) / f"seed{seed}").mkdir()
        grid_cfg = authors.misc.EasyDict(experiment="erase", init_model_dir=folder, device=str(experiment.device()),
                                         batch_size=experiment.panel.batch_size, parallel=False, num_metrics=2,
                                         exp_interface_cls=authors.OnMnog, mnog=context)
        for method in experiment.cfg.methods:
            alg = AUTHORS_METHODS[method]
            active = {k: space[k] for k in authors.grid_utils.get_active_keys(alg)}
            if alg == "MinNormOG":
                active["reg_coef"] = [r for r in active["reg_coef"] if r <= 1]
            configs = list(authors.grid_utils.get_grid(active))
            start = time.perf_counter()
            results = np.array([authors.grid_search.grid_worker_seq(params, alg, grid_cfg)[0] for params in configs])
            means = results.mean(axis=2)                                    # (configs, metrics)
            _, front = authors.grid_utils.pareto(means, authors.data_module.is_smaller_metric_better())
            se = results.std(axis=2, ddof=1) / np.sqrt(results.shape[2])
            for i, params in enumerate(configs):
                out.append({"method": method, "config": mnog_config(params), "mean_quality": means[i, 0],
                            "mean_error": means[i, 1], "se_quality": se[i, 0], "se_error": se[i, 1],
                            "frontier": i in set(front)})
            print(f"  their sweep: {method}, {len(configs)} configurations × {results.shape[2]} trials, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    table = pd.DataFrame(out)
    table["distance"] = np.hypot(1 - table["mean_quality"], table["mean_error"])
    return table


def mnog_config(params: dict) -> str:
    """Their configuration as mnog's sweep names it (the method's hyperparameters, sorted)."""
    return json.dumps({MNOG_KEYS[k]: v for k, v in params.items() if k in MNOG_KEYS}, sort_keys=True)


def hyperparameters_only(config: str, method: str) -> str:
    """mnog's record config without the method's fixed options (order, mask_loss, ...)."""
    from mnog.methods import get_method
    required = get_method(method).hyperparameters(required_only=True)
    return json.dumps({k: v for k, v in json.loads(config).items() if k in required}, sort_keys=True)


def closest(points: pd.DataFrame) -> pd.DataFrame:
    """Per method its frontier point closest to (1, 0), and the rank of that distance among the
    unlearning methods (Retrain left out, as the figure's claim)."""
    front = points[points["frontier"].astype(bool)]
    best = front.loc[front.groupby("method")["distance"].idxmin()].sort_values("distance").reset_index(drop=True)
    unlearners = best[best["method"] != "Retrain"]["method"].tolist()
    best["rank"] = [unlearners.index(m) + 1 if m in unlearners else None for m in best["method"]]
    return best


def frontiers_markdown(theirs: pd.DataFrame, ours: pd.DataFrame) -> str:
    both = theirs.merge(ours, on="method", how="outer", suffixes=("_authors", "_mnog"))
    both = both.sort_values("distance_mnog")
    total = int(both["rank_mnog"].notna().sum())

    def rank(v):
        return "—" if pd.isna(v) else f"{int(v)} of {total}"
    return tabulate([[r.method, r.config_authors, f"{r.mean_quality_authors:.3f} / {r.mean_error_authors:.3f}",
                      f"{r.distance_authors:.3f}", rank(r.rank_authors), r.config_mnog,
                      f"{r.mean_quality_mnog:.3f} / {r.mean_error_mnog:.3f}", f"{r.distance_mnog:.3f}",
                      rank(r.rank_mnog)] for r in both.itertuples()],
                    headers=["method", "authors: closest frontier point", "quality / error", "distance", "rank",
                             "mnog: closest frontier point", "quality / error", "distance", "rank"],
                    tablefmt="github", disable_numparse=True)


def configurations(theirs: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    """Every configuration's means both ways (`ours` with `hyperparameters_only` configs), and
    their difference in standard errors (the larger of the two implementations' standard errors
    of that configuration)."""
    both = theirs.merge(ours[["method", "config", "mean_quality", "mean_error", "se_quality", "se_error"]],
                        on=["method", "config"], suffixes=("_authors", "_mnog"))
    for metric in ("quality", "error"):
        se = np.maximum(both[f"se_{metric}_authors"], both[f"se_{metric}_mnog"])
        both[f"{metric}_difference_in_se"] = (both[f"mean_{metric}_authors"] - both[f"mean_{metric}_mnog"]).abs() / se
    return both


# -- the run -------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False, add_help=False,
                                     epilog="Every other option is the Label Erasure scripts' (listed below).")
    parser.add_argument("-h", "--help", action="store_true", help="show this help message and exit")
    parser.add_argument("--authors", type=Path, help="a checkout of the authors' release (without it: mnog's side "
                                                     "alone, e.g. to check this script)")
    parser.add_argument("--sweep", action="store_true", help="also run their whole sweep beside mnog's")
    parser.add_argument("--figure", default="6", help="the Label Erasure setting (a figure of 6 ... 14)")
    args, rest = parser.parse_known_args(argv)
    if args.help:
        parser.print_help()
        print()
        parse_config(Config, PROFILES, "the Label Erasure scripts' options", ["--help"])   # prints them, exits
    if args.sweep and args.authors is None:
        parser.error("--sweep runs the authors' sweep: it needs --authors")
    cfg, profile, executor = parse_config(Config, PROFILES, __doc__.split("\n")[0], [*rest, "--figure", args.figure])
    authors = Authors(args.authors.resolve()) if args.authors else None
    experiment = LabelErasure(cfg, args.figure)
    state = prepared(experiment)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    print(f"Figure {args.figure} · profile {profile} · {experiment.panel.label()} · {len(state.trials)} trials · "
          f"{device_name()} · authors' code: {authors.commit if authors else 'not given (mnog side only)'}")
    first = next(iter(state.trials.values()))
    context = None if authors is None else Context(
        state.trials, test_loaders(authors, experiment, state.evaluation),
        (state.evaluation[2], 3), authors_model_class(first.initial))
    out = RESULTS / "compare_authors" / f"figure{args.figure}-{profile}"
    out.mkdir(parents=True, exist_ok=True)

    agreement = same_batches(experiment, state, authors, context)
    agreement.to_csv(out / "agreement.csv", index=False)
    print("\n1. The same models and batches; mnog as the authors' code runs (BatchNorm sees both batches, "
          "PyTorch's default AdamW, ℓ1 one step late, NPO's ratio form, SalUn's batch-sum mask, MinNorm-OG's "
          "order 'authors'), except the change a row names; metrics: mean over the trials\n"
          + agreement_markdown(agreement))
    files = ["agreement.csv"]
    if authors is not None:
        refs = references(experiment, state, context, authors)
        refs.to_csv(out / "references.csv", index=False)
        files.append("references.csv")
        gap = max((refs["mnog_quality"] - refs["authors_quality"]).abs().max(),
                  (refs["mnog_error"] - refs["authors_error"]).abs().max())
        print(f"\n2. Their evaluate() against mnog.metrics.erasure_metrics on every trial's initial and GT model: "
              f"largest difference {gap:.2g}")
    if args.sweep:
        print("\n3. Their sweep on the same models (as their grid search runs it), beside mnog's")
        theirs = their_sweep(experiment, state, authors, context)
        planned = setting_sweep(experiment)                     # mnog's sweep of the setting, as make figureN
        ours = frontier_points(sweep(experiment, planned.jobs, executor, desc=planned.desc), cfg.trials)
        ours["config"] = [hyperparameters_only(c, m) for c, m in zip(ours["config"], ours["method"])]
        theirs_front, ours_front = closest(theirs), closest(ours)
        theirs_front.merge(ours_front, on="method", how="outer", suffixes=("_authors", "_mnog")).to_csv(
            out / "frontiers.csv", index=False)
        both = configurations(theirs, ours)
        both.to_csv(out / "configurations.csv", index=False)
        files += ["frontiers.csv", "configurations.csv"]
        within = (both[["quality_difference_in_se", "error_difference_in_se"]].max(axis=1) < 1).mean()
        print(frontiers_markdown(theirs_front, ours_front))
        print(f"\nPer configuration ({len(both)}): the two implementations' means differ by at most "
              f"{both['quality_difference_in_se'].max():.2f} standard errors in retain quality and "
              f"{both['error_difference_in_se'].max():.2f} in forget error; {within:.0%} of the configurations "
              f"within one standard error in both")
    write_json(out / "run.json", {"command": "python -m benchmarks.compare_authors " + " ".join(
        sys.argv[1:] if argv is None else argv), "started": started, "machine": device_name(),
        "authors_commit": authors.commit if authors else None, "profile": profile, "config": cfg,
        "provenance": provenance()})
    print(f"\nwrote {out}/{', '.join(files)}, run.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
