"""Know the cost before paying it: what a run would train and run, and how long it takes here.

    make plan                                        # every target at PROFILE: models, jobs, projected time
    python -m artifact.table2_representation_collapse --plan --profile paper    # one script, any overrides
    make calibrate                                   # measure this machine's rates (`make bench` runs it too)
    python -m mnog.plan [--profile P] [TARGET ...]   # = make plan; --calibrate measures instead

A script declares its work in `plan(cfg) -> Work`: the sweeps its `main` runs (built by the
same function, so the job counts are the sweep's own), the models it prepares and any other
timed work. Each Experiment says what its models and jobs cost in the units of one `Recipe`
(the network, its input, batch sizes and device): images (Table 5: epochs) to train, and per
job the unlearning steps of each method and the images scored. The rates of a recipe
(training images/s, seconds per unlearning step of each method, scoring images/s) come from
the calibration file of this device: results/calibration-<device>.json, which `make
calibrate` writes, else benchmarks/calibration/<device>.json (committed for the devices we
measured). A recipe found in neither is measured on the spot, a few steps of each method
("quick"), and added to the results file.

Planning trains nothing, loads no data set and runs no job: it reads the record stores and
the model cache to tell what is done, and counts what is not. Targets planned together (make
plan) share work as they do when run in order: Figure 2's jobs are Figures 6 and 7's records,
Table 3's models Figure 7's, so each is counted once, by the first target that needs it.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import io
import json
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

from mnog import mkl
from mnog.errors import UserError, cli
from mnog.results import RESULTS, ROOT, device_name, now, stable_hash, write_json

COMMITTED = ROOT / "benchmarks" / "calibration"
# The hyperparameters every step is timed with (a step's cost barely depends on them); a
# MinNorm-OG step is timed projecting (t_proj 1, t_gd 0), at the recipe's n_pert.
TIMING = dict(eta=1e-4, lambda_reg=0.1, gamma_reg=0.8, lambda_ga=0.01, sigma=0.1, t_gd=0, t_proj=1, n_pert=50)


# -- what work costs, in a recipe's units --------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    """What the rates of an experiment's work depend on; calibration measures one set of rates
    per recipe. Image recipes: a ColorResNet on size×size inputs; "mlp": Table 5's ensemble of
    `members` MLPs on a full batch of `size` points."""
    model: str                              # "resnet18", "resnet50" or "mlp"
    width: int
    size: int                               # image side; mlp: points in the full batch
    heads: tuple[int, ...] = ()
    members: int = 1
    train_batch: int = 0                    # training batch (0: full batch)
    batch: int = 0                          # unlearning batch (0: full batch)
    augment: bool = False
    precision: str = "float32"              # training precision
    bn_stats: str = "loss"
    device: str = "cpu"
    variants: tuple[tuple[str, str, tuple], ...] = ()   # (label, method, hyperparameters) of every timed step

    @property
    def key(self) -> str:
        return stable_hash(dataclasses.asdict(self))

    def label(self) -> str:
        if self.model == "mlp":
            return (f"{self.members} MLPs 1-{self.width}-{self.width}-1 as one ensemble, full batch of {self.size} "
                    f"points, {self.device}")
        depth = self.model.removeprefix("resnet")
        return (f"ColorResNet-{depth} (width {self.width}, heads {'+'.join(map(str, self.heads))}), {self.size}×"
                f"{self.size}, training batch {self.train_batch}{' augmented' if self.augment else ''} "
                f"({self.precision}), unlearning batch {self.batch}, BatchNorm sees {self.bn_stats}, {self.device}")


def variants(methods, options: dict[str, dict], n_pert: int, extra: dict[str, dict] | None = None) -> tuple:
    """A recipe's timed steps: every method (with its options; MinNorm-OG at `n_pert`), and GD,
    which a MinNorm-OG job's epochs without projection cost."""
    out = []
    for method in dict.fromkeys([*methods, "GD"]):
        hp = {**options.get(method, {}), **(extra or {}).get(method, {})}
        if method == "MinNorm-OG":
            hp["n_pert"] = n_pert
        out.append((method, method, tuple(sorted(hp.items()))))
    return tuple(out)


@dataclass(frozen=True)
class ModelCost:
    """One cache file of trained models: present means trained."""
    path: Path
    label: str
    recipe: Recipe
    units: float          # images to train (mlp: epochs)
    count: int = 1        # models in the file (Table 5: an ensemble of every trial's)


@dataclass(frozen=True)
class Cost:
    """Timed work in a recipe's units: runs (a model copied and set up for unlearning) and
    steps of each timed variant, and images scored (mlp: evaluations)."""
    recipe: Recipe
    steps: tuple[tuple[str, float], ...]
    scored: float = 0.0
    runs: tuple[tuple[str, int], ...] = ()


def method_steps(job, steps_per_epoch: int) -> tuple[tuple[str, float], ...]:
    """A job's steps by what they cost: a MinNorm-OG step projects in the epochs t < T − T_GD
    with t mod T_proj = 0 (docs/protocol.md#minnorm-og) and otherwise costs a GD step."""
    if job.method != "MinNorm-OG":
        return ((job.method, job.epochs * steps_per_epoch),)
    c = job.config
    projecting = sum(1 for t in range(job.epochs) if t < job.epochs - c["t_gd"] and t % c["t_proj"] == 0)
    return (("MinNorm-OG", projecting * steps_per_epoch), ("GD", (job.epochs - projecting) * steps_per_epoch))


@dataclass(frozen=True)
class Sweep:
    """One sweep of a script: `mnog.experiment.sweep(experiment, jobs, ..., desc)`."""
    experiment: Any
    jobs: list
    desc: str


@dataclass(frozen=True)
class Work:
    """What one run of a script does: its sweeps, the experiments whose models it prepares
    besides theirs, other timed work (Table 3's epochs), and a note."""
    sweeps: tuple[Sweep, ...] = ()
    models: tuple[Any, ...] = ()
    extra: tuple[Cost, ...] = ()
    note: str = ""


# -- the rates of this device ----------------------------------------------------------------------

def device_slug(name: str | None = None) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (name or device_name()).lower()).strip("-")


def _same_kernels(saved: dict) -> bool:
    """Whether a calibration file's rates were measured with the MKL kernels this process runs
    (mnog.mkl; a file without the field, e.g. one committed before it, counts as the same)."""
    return saved.get("mkl_code_path", mkl.code_path()) == mkl.code_path()


def calibration_path(slug: str | None = None) -> Path:
    return RESULTS / f"calibration-{slug or device_slug()}.json"


class Calibration:
    """The rates of this device by recipe: results/calibration-<device>.json over the
    committed benchmarks/calibration/<device>.json; a missing recipe is measured quickly and
    saved to the results file."""

    def __init__(self, measure: bool = True, out=sys.stdout):
        self.slug, self.measure_missing, self.out = device_slug(), measure, out
        self.path = calibration_path(self.slug)
        self.sources: dict[str, str] = {}
        self.rates: dict[str, dict] = {}
        for path in (COMMITTED / f"{self.slug}.json", self.path):   # the results file wins
            saved = json.loads(path.read_text()) if path.is_file() else {}
            if _same_kernels(saved):
                recipes = saved.get("recipes", {})
                self.rates.update(recipes)
                self.sources.update(dict.fromkeys(recipes, str(path.relative_to(ROOT) if path.is_relative_to(ROOT)
                                                               else path)))
        self.found = bool(self.rates)

    def get(self, recipe: Recipe) -> dict | None:
        """The rates of `recipe`, measured now (quick) if no calibration has them; None when
        measuring is off."""
        if recipe.key not in self.rates and self.measure_missing:
            self.measure_missing_rates([recipe])
        return self.rates.get(recipe.key)

    def measure_missing_rates(self, recipes, quick: bool = True) -> None:
        """Measure those of `recipes` no calibration has (all of them unless `quick`: `make
        calibrate`), saying first what and about how long it takes, then each one as it goes."""
        recipes = list({r.key: r for r in recipes if not quick or r.key not in self.rates}.values())
        if not recipes:
            return
        expected = [expected_seconds(r, quick) for r in recipes]
        if quick:
            committed = COMMITTED / f"{self.slug}.json"
            print(f"no calibration of {len(recipes)} recipe(s) for {device_name()} (in "
                  f"{committed.relative_to(ROOT) if committed.is_relative_to(ROOT) else committed} or {self.path}): "
                  f"measuring a few steps of each method of each, about {duration(sum(expected))} in all on 2 CPU "
                  "cores (less with more, or a GPU); `make calibrate` measures them in full", file=self.out, flush=True)
        else:
            print(f"measuring {len(recipes)} recipe(s) on {device_name()}, about {duration(sum(expected))} in all on "
                  "2 CPU cores (less with more, or a GPU)", file=self.out, flush=True)
        for number, (recipe, seconds) in enumerate(zip(recipes, expected), 1):
            print(f"  [{number}/{len(recipes)}] {recipe.label()}: about {duration(seconds)} ...", end=" ",
                  file=self.out, flush=True)
            rates = measure(recipe, quick=quick)
            self.store(recipe, rates)
            if quick:
                self.sources[recipe.key] = f"measured now (quick, {rates['seconds']:.1f} s; saved to {self.path.name})"
                print(f"{rates['seconds']:.0f} s", file=self.out, flush=True)
                continue
            steps = ", ".join(f"{label} {s:.3g}" for label, s in rates["step_s"].items())
            print(f"{rates['seconds']:.0f} s: training {rates['train_per_s']:.4g} {rates['units']}/s; s per step: "
                  f"{steps}; scoring {rates['score_per_s']:.4g}/s", file=self.out, flush=True)

    def store(self, recipe: Recipe, rates: dict) -> None:
        self.rates[recipe.key] = rates
        saved = json.loads(self.path.read_text()) if self.path.is_file() else {}
        if not _same_kernels(saved):
            saved = {}  # those rates no longer apply
        recipes = {**saved.get("recipes", {}), recipe.key: rates}
        write_json(self.path, {"device": device_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "mkl_code_path": mkl.code_path(), "recipes": recipes})
        self.sources[recipe.key] = str(self.path)

    def seconds(self, cost: Cost) -> float | None:
        rates = self.get(cost.recipe)
        if rates is None:
            return None
        steps = sum(n * rates["step_s"][label] for label, n in cost.steps)
        steps += sum(n * rates["run_s"][label] for label, n in cost.runs)
        return steps + (cost.scored / rates["score_per_s"] if cost.scored else 0.0)

    def train_seconds(self, model: ModelCost) -> float | None:
        rates = self.get(model.recipe)
        return None if rates is None else model.units / rates["train_per_s"]


# -- measuring a recipe ----------------------------------------------------------------------------

# What measuring costs, to say so before it starts (`expected_seconds`), fitted to the times of
# `measure` on the 2-core AMD EPYC (the slower of the CPUs in benchmarks/calibration/): seconds per
# image through one step of ColorResNet-18 at width 64 on 32×32 inputs, per perturbation sample
# of a MinNorm-OG step of that model (its per-sample gradients), per epoch of one MLP of an
# ensemble, and per timed run (a model copied and set up).
IMAGE_STEP_S = 0.004
PERTURBATION_S = 0.1
MLP_EPOCH_S = 0.0002
RUN_S = 0.05


def expected_seconds(recipe: Recipe, quick: bool = True) -> float:
    """About how long `measure(recipe, quick)` takes on 2 CPU cores: the steps it times, each
    at the rates above (a GPU, or more cores, take less)."""
    timed = 3 if quick else 4                 # steps of each variant: runs of 1 and 1 + extra epochs
    n_pert = [dict(hp).get("n_pert", 0) if method == "MinNorm-OG" else 0 for _, method, hp in recipe.variants]
    runs = len(recipe.variants) * 2 * RUN_S
    if recipe.model == "mlp":                 # epochs: training, then runs of 1 and 2 × `steps` of each variant
        steps = 10 if quick else 50
        epochs = 20 + (200 if quick else 2000) + sum(3 * steps * (1 + k / 10) for k in n_pert)
        return recipe.members * epochs * MLP_EPOCH_S + runs
    scale = (recipe.width / 64) ** 2 * (recipe.size / 32) ** 2 * (2.5 if recipe.model == "resnet50" else 1)
    cap = 64 if quick and recipe.device == "cpu" else None      # as measure: a CPU's quick batches
    train, batch = min(recipe.train_batch, cap or recipe.train_batch), min(recipe.batch, cap or recipe.batch)
    scored = 500 * (2 if quick else 4) / 3                      # eval-mode forwards: about a third of a step
    images = train * (1 + (1 if quick else 3)) + 3 * batch * (1 + timed * len(n_pert)) + scored
    return (images * IMAGE_STEP_S + timed * sum(n_pert) * PERTURBATION_S) * scale + runs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(device, fn) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def measure(recipe: Recipe, quick: bool = False) -> dict:
    """The rates of `recipe` on this machine: training images/s (mlp: epochs/s), seconds per
    unlearning step of every variant (a model copied and unlearned for one epoch, as a job does,
    divided by its steps), scoring images/s (mlp: evaluations/s). `quick`: one training batch
    and one step of each method (on a CPU at most 64 images a batch, scaled to the recipe's)."""
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):      # no progress bars of the timed training
        rates = _measure(recipe, quick)
    return {**rates, "recipe": dataclasses.asdict(recipe), "label": recipe.label(), "quick": quick,
            "seconds": time.perf_counter() - start, "measured": now(), "threads": torch.get_num_threads()}


def _measure(recipe: Recipe, quick: bool) -> dict:
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")           # MinNorm-OG's empty subsample, a diverging GA: timed all the same
        torch.manual_seed(0)
        return (_measure_mlp if recipe.model == "mlp" else _measure_images)(recipe, quick)


def _hyperparameters(method: str, hp: tuple) -> dict:
    from mnog.methods import METHODS
    names = METHODS[method].hyperparameters()
    return {k: v for k, v in {**TIMING, **dict(hp)}.items() if k in names}


def _measure_images(recipe: Recipe, quick: bool) -> dict:
    from mnog.colors import CIFAR_NORM, ERASURE_RGB, ColoredImages
    from mnog.loop import unlearn
    from mnog.models import ColorResNet
    from mnog.tasks import Task
    from mnog.training import Phase, SGDConfig, train_classifier

    device = torch.device(recipe.device)
    cap = 64 if quick and device.type == "cpu" else None            # a CPU's rates are about linear in the batch
    depth = 50 if recipe.model == "resnet50" else 18
    model = ColorResNet(depth, heads=recipe.heads, width=recipe.width).to(device)
    heads = recipe.heads

    def labels(n):
        drawn = tuple(torch.randint(h, (n,), device=device) for h in heads)
        return drawn if len(drawn) > 1 else drawn[0]

    # Training: one epoch of `k` batches after a warm-up batch.
    train_batch = min(recipe.train_batch, cap or recipe.train_batch)
    k = 1 if quick else 3

    def images(n):
        return ColoredImages(torch.randint(0, 256, (n, 3, recipe.size, recipe.size), dtype=torch.uint8, device=device),
                             colors=torch.zeros(n, dtype=torch.long, device=device), labels=labels(n),
                             palette=ERASURE_RGB, norm=CIFAR_NORM)

    sgd = SGDConfig(lr=1e-3, batch_size=train_batch)
    trainee = copy.deepcopy(model)
    options = dict(seed=0, precision=recipe.precision, desc="calibration")
    train_classifier(trainee, [Phase(images(train_batch), 1, augment=recipe.augment)], sgd, **options)
    data = images(train_batch * k)
    train_s = _timed(device, lambda: train_classifier(trainee, [Phase(data, 1, augment=recipe.augment)], sgd,
                                                      **options))
    # Unlearning: every variant for one epoch of `steps` steps, from a copy (as a job does).
    task = Task("cross_entropy", logit_clamp=30.0)

    def run(method, hp, batch, epochs):
        forget = (torch.randn(batch, 3, recipe.size, recipe.size, device=device), labels(batch))
        retain = (torch.randn(batch * 2, 3, recipe.size, recipe.size, device=device), labels(batch * 2))
        return _timed(device, lambda: unlearn(copy.deepcopy(model), method, forget, retain, task, epochs,
                                              batch_size=batch, bn_stats=recipe.bn_stats, on_nonfinite="ignore",
                                              **_hyperparameters(method, hp)))

    batch = min(recipe.batch, cap or recipe.batch)
    run("GD", (), batch, 1)                                            # warm-up (allocator, cuDNN's search)
    step_s, run_s = _per_step({label: (lambda e, m=method, h=hp: run(m, h, batch, e))
                               for label, method, hp in recipe.variants}, 1 if quick else 2)
    if batch < recipe.batch:   # scaled to the recipe's batch; MinNorm-OG's projection does not depend on it
        scale = recipe.batch / batch
        gd = step_s["GD"]
        step_s = {label: s * scale if method != "MinNorm-OG" else s + gd * (scale - 1)
                  for (label, method, _), s in zip(recipe.variants, step_s.values())}
    # Scoring: eval-mode forwards without gradient, batches of 500 rendered images.
    probe = torch.randn(500, 3, recipe.size, recipe.size, device=device)
    model.eval()
    with torch.no_grad():
        model(probe)
        score_s = _timed(device, lambda: [model(probe) for _ in range(1 if quick else 3)])
    return {"train_per_s": train_batch * k / train_s, "step_s": step_s, "run_s": run_s,
            "score_per_s": 500 * (1 if quick else 3) / score_s, "units": "images"}


def _per_step(runs: dict, extra: int) -> tuple[dict, dict]:
    """({label: seconds per step}, {label: seconds per run besides its steps: the copy, set-up,
    SalUn's mask}) from runs of 1 and 1 + `extra` epochs of one step each (`runs[label](epochs)`)."""
    step_s, run_s = {}, {}
    for label, timed in runs.items():
        one, more = timed(1), timed(1 + extra)
        step = (more - one) / extra
        if step <= 0:                            # timing noise: no set-up cost measurable
            step = more / (1 + extra)
        step_s[label], run_s[label] = step, max(one - step, 0.0)
    return step_s, run_s


def _measure_mlp(recipe: Recipe, quick: bool) -> dict:
    import mnog
    from mnog.loop import unlearn
    from mnog.metrics import sup_error
    from mnog.models import mlp
    from mnog.training import train_full_batch

    device = torch.device(recipe.device)
    model = mnog.Ensemble([mlp(recipe.width) for _ in range(recipe.members)]).to(device)
    x = torch.rand(recipe.members, recipe.size, 1, device=device) * 10 - 5
    epochs = 200 if quick else 2000
    train_full_batch(model, x, torch.sin(x), mnog.tasks.get_task("mse"), 20, 1e-3, desc="calibration")
    train_s = _timed(device, lambda: train_full_batch(model, x, torch.sin(x), mnog.tasks.get_task("mse"), epochs, 1e-3,
                                                      desc="calibration"))
    retain = (x[:, :50], torch.sin(x[:, :50]))
    forget = (x[:, 50:], torch.full_like(x[:, 50:], 1.5))
    steps = 10 if quick else 50

    def run(method, hp, epochs):
        return _timed(device, lambda: unlearn(copy.deepcopy(model), method, forget, retain, "mse", epochs,
                                              on_nonfinite="ignore", **_hyperparameters(method, hp)))

    step_s, run_s = _per_step({label: (lambda e, m=method, h=hp: run(m, h, e * steps)) for label, method, hp
                               in recipe.variants}, 1)
    step_s = {label: s / steps for label, s in step_s.items()}
    grid = torch.linspace(-5 * math.pi, 5 * math.pi, 1000, device=device).unsqueeze(1)

    def evaluate():                      # a job's scoring: sup errors and every member's fit over the grid
        sup_error(model, grid)
        with torch.no_grad():
            [model.member(i).eval()(grid) for i in range(model.num_members)]

    score_s = _timed(device, evaluate)
    return {"train_per_s": epochs / train_s, "step_s": step_s, "run_s": run_s, "score_per_s": 1 / score_s,
            "units": "epochs"}


# -- planning --------------------------------------------------------------------------------------

@dataclass
class Line:
    """One target's (or script's) plan."""
    name: str
    models: int = 0
    to_train: int = 0
    jobs: int = 0
    to_run: int = 0
    train_s: float | None = 0.0
    jobs_s: float | None = 0.0
    extra_s: float | None = 0.0
    sweeps: list[tuple[str, int, int, float | None]] = field(default_factory=list)   # (desc, jobs, to run, s)
    recipes: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def seconds(self) -> float | None:
        parts = (self.train_s, self.jobs_s, self.extra_s)
        return None if any(p is None for p in parts) else sum(parts)


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


class Planner:
    """Plans targets one after the other, as `make all` runs them: work a target plans (models
    it trains, records it stores) is done for the targets after it."""

    def __init__(self, calibration: Calibration | None = None):
        from mnog.results import RecordStore
        self.calibration = calibration or Calibration()
        self.models: set[Path] = set()
        self.records: dict[Path, set[str]] = {}
        self._store = RecordStore

    def plan(self, name: str, work: Work) -> Line:
        line = Line(name, note=work.note)
        experiments = [s.experiment for s in work.sweeps] + list(work.models)
        seen = set()
        for experiment in experiments:
            for model in _costs(experiment.model_costs, []):
                if model.path in seen:
                    continue
                seen.add(model.path)
                line.models += model.count
                line.recipes[model.recipe.key] = model.recipe
                if not model.path.is_file() and model.path not in self.models:
                    self.models.add(model.path)
                    line.to_train += model.count
                    line.train_s = _add(line.train_s, self.calibration.train_seconds(model))
        for sweep in work.sweeps:
            experiment = sweep.experiment
            path = RESULTS / experiment.store / "records.jsonl"
            if path not in self.records:
                self.records[path] = self._store(path).keys() if path.is_file() else set()
            done, setting, seeds = self.records[path], experiment.setting(), experiment.seeds()
            to_run, seconds = 0, 0.0
            for job in sweep.jobs:
                missing = [t for t in seeds if job.key(setting, t) not in done]
                if not missing:
                    continue
                to_run += 1
                done.update(job.key(setting, t) for t in missing)
                cost = _costs(lambda: experiment.job_cost(job, len(missing)))
                line.recipes[cost.recipe.key if cost else "?"] = cost.recipe if cost else None
                seconds = _add(seconds, self.calibration.seconds(cost) if cost else None)
            line.sweeps.append((sweep.desc, len(sweep.jobs), to_run, seconds))
            line.jobs += len(sweep.jobs)
            line.to_run += to_run
            line.jobs_s = _add(line.jobs_s, seconds)
        for cost in work.extra:
            line.recipes[cost.recipe.key] = cost.recipe
            line.extra_s = _add(line.extra_s, self.calibration.seconds(cost))
        return line


def _costs(fn, default=None):
    """An experiment's cost hook, or `default` when it declares none (the plan then counts only)."""
    try:
        return fn()
    except NotImplementedError:
        return default


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def script_work(module, argv: list[str]):
    """(work, profile) of an artifact script's run with `argv` (its own options), through the
    script's parse_config (the same checks as a run) and its `plan(cfg)`."""
    from mnog.config import PlanRequested, parse_config
    if not hasattr(module, "plan"):
        raise UserError(f"{module.__name__} declares no plan(cfg) (mnog.plan.Work): it cannot be planned")
    try:
        parse_config(module.Config, module.PROFILES, (module.__doc__ or "").split("\n")[0], [*argv, "--plan"])
    except PlanRequested as request:
        return module.plan(request.cfg), request.profile
    raise AssertionError("parse_config returned despite --plan")


def print_script_plan(module, request, out=sys.stdout) -> int:
    """`--plan` on a script (mnog.experiment.script_main): its models, sweeps and projected time."""
    if not hasattr(module, "plan"):
        raise UserError(f"{module.__name__} declares no plan(cfg) (mnog.plan.Work): it cannot be planned")
    name, work = module.__name__.rsplit(".", 1)[-1], module.plan(request.cfg)
    calibration = Calibration(out=out)
    calibration.measure_missing_rates(recipes_of([(name, work)]).values())
    planner = Planner(calibration)
    line = planner.plan(name, work)
    print(f"plan of {module.__name__} at profile {request.profile} on {device_name()}", file=out)
    print(f"models: {line.models}, {line.to_train} to train: {duration(line.train_s)}", file=out)
    for desc, jobs, to_run, seconds in line.sweeps:
        print(f"sweep {desc}: {jobs} jobs, {to_run} to run: {duration(seconds)}", file=out)
    if line.extra_s:
        print(f"other timed work: {duration(line.extra_s)}", file=out)
    print(f"projected: {duration(line.seconds)}{' (' + line.note + ')' if line.note else ''}", file=out)
    _print_recipes(planner.calibration, line.recipes, out)
    return 0


def _print_recipes(calibration: Calibration, recipes: dict, out) -> None:
    if not calibration.found and not calibration.measure_missing:
        print(f"no calibration file was found for {device_name()} ({calibration.path.name}): projected times are "
              "unknown; `make calibrate` measures them", file=out)
    elif not calibration.found:
        print(f"no calibration file was found for {device_name()}: rates were measured quickly (a few steps) and "
              f"saved to {calibration.path}; `make calibrate` measures them in full", file=out)
    for key, recipe in recipes.items():
        if recipe is None:
            print("some jobs' experiment declares no costs: their time is unknown", file=out)
            continue
        rates = calibration.rates.get(key)
        where = calibration.sources.get(key, "not measured")
        if rates:
            unit = "epochs/s" if rates.get("units") == "epochs" else "images/s"
            steps = ", ".join(f"{label} {s:.3g}" for label, s in rates["step_s"].items())
            print(f"  {recipe.label()}: training {rates['train_per_s']:.4g} {unit}; s per unlearning step: {steps}; "
                  f"scoring {rates['score_per_s']:.4g}/s [{where}]", file=out)


def plan_targets(names: list[str], profile: str, out=sys.stdout, measure: bool = True) -> list[Line]:
    """The plan of `names` (mnog.targets) at `profile`, in make all's order, printed as one table."""
    works = targets_work(names, profile)
    calibration = Calibration(measure=measure, out=out)
    if measure:                               # every recipe missing, said and measured first
        calibration.measure_missing_rates(recipes_of(works).values())
    planner = Planner(calibration)
    lines = [planner.plan(name, work) for name, work in works]
    rows = [[l.name, l.models, l.to_train, l.jobs, l.to_run, duration(l.train_s), duration(l.jobs_s),
             duration(l.seconds), l.note] for l in lines]
    total = None if any(l.seconds is None for l in lines) else sum(l.seconds for l in lines)
    rows.append(["all", sum(l.models for l in lines), sum(l.to_train for l in lines), sum(l.jobs for l in lines),
                 sum(l.to_run for l in lines), "", "", duration(total), ""])
    print(f"plan at profile {profile} on {device_name()} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads); one job at a time on this device", file=out)
    print(tabulate(rows, headers=["target", "models", "to train", "jobs", "to run", "training", "sweeps",
                                  "projected", "note"], tablefmt="github"), file=out)
    recipes = {k: r for l in lines for k, r in l.recipes.items()}
    _print_recipes(planner.calibration, recipes, out)
    return lines


def targets_work(names: list[str], profile: str) -> list[tuple[str, Work]]:
    """(target, what its script's run does) of `names` (mnog.targets; all when empty) at
    `profile`, in make all's order."""
    from mnog.targets import BY_NAME, TARGETS
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise UserError(f"unknown target(s) {', '.join(unknown)}; `make help` lists them")
    return [(t.name, script_work(importlib.import_module(f"artifact.{t.script}"), [*t.args, "--profile", profile])[0])
            for t in TARGETS if not names or t.name in names]


def recipes_of(works: list[tuple[str, Work]]) -> dict[str, Recipe]:
    """Every recipe the work of `works` ((target, Work) pairs) is costed in, by key."""
    calibration = Calibration(measure=False, out=io.StringIO())
    return {k: r for name, work in works for k, r in Planner(calibration).plan(name, work).recipes.items()
            if r is not None}


def calibrate(names: list[str], profile: str, out=sys.stdout) -> Path:
    """Measure (in full) every recipe of `names` at `profile` and write the results calibration file."""
    calibration = Calibration(measure=False, out=out)
    calibration.measure_missing_rates(recipes_of(targets_work(names, profile)).values(), quick=False)
    print(f"wrote {calibration.path}", file=out)
    return calibration.path


def main(argv=None) -> int:
    from mnog.config import PROFILES, OneLineParser, auto_profile
    parser = OneLineParser(description="what every target would train and run, and how long it takes here")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure the rates of every recipe the targets use (in full) and write "
                             "results/calibration-<device>.json, instead of planning")
    parser.add_argument("targets", nargs="*", help="targets (default: every one, in make all's order)")
    parser.add_argument("--profile", default=os.environ.get("PROFILE") or "auto", choices=("auto", *PROFILES))
    parser.add_argument("--no-measure", action="store_true",
                        help="plan: where no calibration has a recipe's rates, say so instead of measuring")
    args = parser.parse_args(argv)
    profile = auto_profile() if args.profile == "auto" else args.profile
    if args.calibrate:
        calibrate(args.targets, profile)
    else:
        plan_targets(args.targets, profile, measure=not args.no_measure)
    return 0


if __name__ == "__main__":
    mkl.reexec()  # measure the rates the targets will run at (MKL's fast kernels on an AMD CPU)
    sys.exit(cli(main))
