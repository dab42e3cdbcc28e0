"""Multi-Class Label Erasure (docs/protocol.md#label-erasure): its settings, profiles, data and models.

Three targets run this experiment, Figures 2 and 6-14 (`artifact/figure2_label_erasure.py`:
sweeps, frontiers, claims), Table 3 (`artifact/table3_runtime.py`: one timed epoch of every
method on Figure 7's trials) and the ablation (`artifact/ablation.py`: MinNorm-OG's variants on
Figures 6, 8 and 9's sweeps, selected by the same frontier rule), so its declaration, its
sweeps and that rule live here, in the core, and the scripts build the same `LabelErasure`
from the same profiles: Table 3 finds Figure 7's cached models, and the ablation Figure 6's
records, because they are the same cache entries and record keys.

D_r: the gray copy of every training image; D_f: a random p_color fraction of the red copies
plus, drawn independently, the same fraction of the green copies (as the authors' code).
Labels (content class, color ∈ {gray, red, green}). Per trial, the initial model trains on
D_r ∪ D_f and the ground-truth (GT) model on D_r (mnog.training.label_erasure_recipe),
both cached by a hash of everything that determines them. Metrics (eval mode, the test
set): retain quality, the fraction of gray copies whose class and color are both right;
forget-quality error, the mean of (1 − p(gray | x))² over the gray, red and green copies.
Beside them every record holds the field's standard metrics per head (class, color;
mnog.experiment.field_metrics): forget set D_f, retain set D_r (a fixed subsample of 2,000 when
larger), test set the gray copies of the test images labelled (class, gray), reference the
trial's GT model.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

import mnog
from mnog.colors import CIFAR_NORM, ERASURE_RGB, GRAY, GREEN, IMAGENET_NORM, RED, ColoredImages, concat
from mnog.compare import PAPER_TABLES
from mnog.config import field
from mnog.datasets import dataset_id, load_image_data, planned_sizes
from mnog.experiment import Experiment, Prepared, Trial, field_metrics
from mnog.methods import paper_methods
from mnog.metrics import erasure_metrics
from mnog.models import ColorResNet
from mnog.plan import Cost, ModelCost, Recipe, Sweep, Work, method_steps, variants
from mnog.results import RESULTS, stable_hash
from mnog.sweep import BEFORE_OPTIONS, ImageSweepConfig, Job, method_grid, pareto_front, search_grid, summarize
from mnog.tasks import Task
from mnog.training import label_erasure_recipe, train_cached

SETTINGS = json.loads((PAPER_TABLES / "label_erasure.json").read_text())
METHODS = paper_methods()


@dataclass(frozen=True)
class Config(ImageSweepConfig):  # + trials, width, grid_values, n_pert, device, the protocol options (mnog.sweep)
    figure: str = field("2", "2 (the settings of Figures 6 and 7) or 6 ... 14",
                        choices=("2", *SETTINGS["settings"]))
    dataset: str = field("", "replace every setting's data set: cifar10, tiny_imagenet, fashion_mnist, synthetic "
                             "or folder:PATH (an ImageFolder or an archive of one; empty: the paper's)", dataset=True)
    train_epochs: int = field(100, "epochs of the Label Erasure recipe for the initial and GT models",
                              minimum=1)
    gt_epochs: int = field(0, "epochs of the GT model (0: train_epochs)", minimum=0)
    train_batch: int = field(0, "training batch size of the initial and GT models (0: the recipe's)", minimum=0)
    batch_size: int = field(0, "unlearning batch size (0: 256 for CIFAR-10, 512 for Tiny ImageNet)", minimum=0)
    methods: tuple[str, ...] = field(METHODS, "methods to run", choices=METHODS)
    enforce: bool = field(True, "exit 1 when a claim fails")


PROFILES = {
    "paper": Config(),
    # The paper's regime on a CIFAR-10 subset (docs/results/label-erasure.md#the-cpu-profile gives
    # the reasoning and the measured fit). 100 training images per class at 32×32 (1,000; the
    # official archive, or --dataset folder:PATH/cifar10-jpeg.tar.gz) and 100 test images per
    # class. ColorResNet-18 of width 8 (176,597 parameters for 1,020 training images) trained the
    # paper's 100 epochs at batch 32 interpolates D_r ∪ D_f (class and color; at 80 epochs one
    # trial of three did not); the GT model, trained on D_r alone, trains 40 (D_r is fit by epoch
    # 30). Unlearning batch 5: the paper's forget batches per epoch (p_color 0.01: 10 red + 10 green images in 4 batches, as
    # 1,000 in 4 batches of 256; p_color 0.001: 1 + 1 in one batch, as 100 in one), the paper's
    # T and p_retain of the subset (D'_r: 10 images at 0.01, two batches as the paper's 500;
    # 1 image at 0.001, less than a batch as the paper's 50). 3 trials; 2 values per grid axis
    # (η its two largest, every other axis both ends of the paper's range). Tiny ImageNet's
    # settings (7, 13, 14) run on the same CIFAR-10 subset with CIFAR-10's recipe. The field's
    # metrics score fixed subsamples of 500 retain and 500 test images (the paper's metrics all
    # 1,000 test images): with all of them they doubled a job's time (docs/benchmarks.md).
    "cpu": Config(dataset="cifar10", per_class=100, test_per_class=100, width=8, train_epochs=100, gt_epochs=40,
                  train_batch=32, batch_size=5, trials=3, grid_values=2, field_retain=500, field_test=500,
                  enforce=False, **BEFORE_OPTIONS),
    "smoke": Config(dataset="synthetic", per_class=100, test_per_class=10, width=8, train_epochs=2, batch_size=32,
                    trials=2, grid_values=1, n_pert=10, enforce=False, **BEFORE_OPTIONS),
}


def figures(cfg: Config) -> list[str]:
    """The settings a run shows: Figure 2's two panels (Figures 6 and 7's), or one figure's."""
    return SETTINGS["figure2"] if cfg.figure == "2" else [cfg.figure]


class Setting:
    """One panel: the paper's (dataset, p_color, p_retain, T, grid), with the profile's data."""

    def __init__(self, cfg: Config, figure: str):
        spec = SETTINGS["settings"][figure]
        self.figure, self.paper_dataset = figure, spec["dataset"]
        self.dataset = cfg.dataset or spec["dataset"]
        self.p_color, self.p_retain, self.epochs = spec["p_color"], spec["p_retain"], spec["epochs"]
        self.grid, self.grid_source = search_grid("label_erasure", figure, spec["grid"], cfg.grids)
        self.tiny = self.dataset == "tiny_imagenet"  # ResNet-50 from ImageNet weights, ImageNet statistics
        self.norm = IMAGENET_NORM if self.tiny else CIFAR_NORM
        self.batch_size = cfg.batch_size or (512 if self.tiny else 256)

    def label(self) -> str:
        return f"{self.dataset}, p_color {self.p_color:g}, p_retain {self.p_retain:g}, T = {self.epochs}"


def erasure_sets(setting: Setting, images, labels, seed: int) -> tuple[ColoredImages, ColoredImages]:
    """(D_r, D_f) of one trial: gray copies of everything; p_color of the red copies and,
    drawn independently, p_color of the green copies (as the authors' code)."""
    generator = torch.Generator().manual_seed(seed)
    count = int(setting.p_color * len(labels))
    picks = [torch.randperm(len(labels), generator=generator)[:count] for _ in (RED, GREEN)]
    index = torch.cat(picks)
    colors = torch.cat([torch.full((count,), RED), torch.full((count,), GREEN)])
    retain = ColoredImages(images, colors=torch.full_like(labels, GRAY), labels=(labels, torch.full_like(labels, GRAY)),
                           palette=ERASURE_RGB, norm=setting.norm)
    forget = ColoredImages(images[index], colors=colors, labels=(labels[index], colors), palette=ERASURE_RGB,
                           norm=setting.norm)
    return retain, forget


@dataclass(frozen=True)
class LabelErasure(Experiment):
    """One setting (figure) of Label Erasure at one configuration."""
    cfg: Config
    figure: str
    store = "label_erasure"
    metrics = ("retain_quality", "forget_error")

    @property
    def panel(self) -> Setting:
        return Setting(self.cfg, self.figure)

    @property
    def task(self) -> Task:
        return Task("cross_entropy", logit_clamp=self.cfg.logit_clamp)

    def setting(self) -> dict:
        cfg, s = self.cfg, self.panel
        return {"experiment": "label_erasure", "mnog": mnog.__version__, "dataset": dataset_id(s.dataset),
                "recipe_dataset": s.paper_dataset, "per_class": cfg.per_class, "test_per_class": cfg.test_per_class,
                "width": cfg.width, "train_epochs": cfg.train_epochs,
                **({"gt_epochs": cfg.gt_epochs} if cfg.gt_epochs else {}),
                **({"train_batch": cfg.train_batch} if cfg.train_batch else {}), "p_color": s.p_color, "p_retain": s.p_retain,
                "batch_size": s.batch_size, "logit_clamp": cfg.logit_clamp, "device": self.device().type,
                **cfg.protocol_setting(), **cfg.scoring_setting()}

    def protocol(self) -> dict:
        s = self.panel
        return {"batch_size": s.batch_size, "p_retain": s.p_retain, **self.cfg.unlearn_options()}

    def prepare(self) -> Prepared:
        """Each trial's D_r, D_f, initial and GT model (trained once, then cached), on the
        device; the test set for the metrics."""
        cfg, setting, dev = self.cfg, self.panel, self.device()
        data = load_image_data(setting.dataset, per_class=cfg.per_class, test_per_class=cfg.test_per_class)
        classes = int(data.train_labels.max()) + 1
        trials = {}
        images = data.train_images.to(dev)       # one copy on the device: every trial's D_r shows these
        for seed in self.seeds():
            retain, forget = erasure_sets(setting, images, data.train_labels, seed)
            retain, forget = retain.to(dev), forget.to(dev)
            initial, gt = self._models(setting, retain, forget, seed, classes)
            trials[seed] = Trial(seed, initial, retain, forget, {"gt": gt})   # uint8 images, rendered where used
        test_images, test_labels = data.test_images.to(dev), data.test_labels.to(dev)
        gray = ColoredImages(test_images, colors=torch.full_like(test_labels, GRAY),
                             labels=(test_labels, torch.full_like(test_labels, GRAY)), palette=ERASURE_RGB,
                             norm=setting.norm)
        return Prepared(trials, (test_images, test_labels, classes), test=(gray.inputs(), gray.targets()))

    def training_recipe(self) -> str:
        """The data set whose Label Erasure recipe trains the models (substituted data: CIFAR-10's)."""
        return self.panel.paper_dataset if not self.cfg.dataset else "cifar10"

    def model_spec(self, seed: int, name: str, size: int) -> dict:
        """What determines a trial's initial or GT model, trained on `size` images (its cache
        file's name hashes it, and the file stores it)."""
        cfg, setting = self.cfg, self.panel
        return {"dataset": dataset_id(setting.dataset), "per_class": cfg.per_class, "p_color": setting.p_color,
                "recipe": self.training_recipe(), "epochs": self.epochs(name), "width": cfg.width, "seed": seed,
                "model": name, "data": size, "precision": cfg.precision, "mnog": mnog.__version__,
                **({"train_batch": cfg.train_batch} if cfg.train_batch else {})}

    def cache_path(self, seed: int, name: str, size: int):
        """results/cache/erasure-<hash>.pt: a trial's initial or GT model, trained on `size` images."""
        return RESULTS / "cache" / f"erasure-{stable_hash(self.model_spec(seed, name, size))}.pt"

    def epochs(self, name: str) -> int:
        """Training epochs of the trial's "initial" or "gt" model."""
        return self.cfg.gt_epochs or self.cfg.train_epochs if name == "gt" else self.cfg.train_epochs

    def _models(self, setting: Setting, retain: ColoredImages, forget: ColoredImages, seed: int, classes: int):
        cfg = self.cfg
        recipe = self.training_recipe()
        models = {}
        for name, data in [("initial", concat(retain, forget)), ("gt", retain)]:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = (ColorResNet(50, heads=(classes, 3), imagenet=True) if setting.tiny
                         else ColorResNet(18, heads=(classes, 3), width=cfg.width)).to(retain.images.device)
            sgd, phases = label_erasure_recipe(recipe, data, self.epochs(name), ground_truth=name == "gt")
            sgd = dataclasses.replace(sgd, batch_size=cfg.train_batch or sgd.batch_size)
            models[name] = train_cached(self.cache_path(seed, name, len(data)), model, phases, sgd,
                                        seed=seed, desc=f"trial {seed}: {name} model", precision=cfg.precision,
                                        spec=self.model_spec(seed, name, len(data)))
        return models["initial"], models["gt"]

    def score(self, model, prepared: Prepared, trial: Trial) -> dict[str, float]:
        images, labels, _ = prepared.evaluation
        paper = dict(zip(self.metrics, erasure_metrics(model, images, labels, self.panel.norm,
                                                           precision=self.cfg.eval_precision)))
        return {**paper, **field_metrics(model, trial, prepared.test, **self.cfg.field_limits())}

    # -- costs (mnog.plan), from the data set's sizes (nothing loaded) --------------------------
    def sizes(self) -> tuple[int, int, int, int, int]:
        """(classes, |D_r|, |D_f|, test images, image side) of every trial."""
        setting = self.panel
        classes, per_class, test, side = planned_sizes(setting.dataset, self.cfg.per_class, self.cfg.test_per_class)
        retain = classes * per_class
        return classes, retain, 2 * int(setting.p_color * retain), test, side

    def recipe(self, variants_: tuple | None = None, bn_stats: str | None = None) -> Recipe:
        cfg, setting = self.cfg, self.panel
        classes, _, forget, _, side = self.sizes()
        sgd, _ = label_erasure_recipe(self.training_recipe(), None, cfg.train_epochs)
        return Recipe("resnet50" if setting.tiny else "resnet18", 64 if setting.tiny else cfg.width, side,
                      heads=(classes, 3), train_batch=cfg.train_batch or sgd.batch_size,
                      batch=min(setting.batch_size, forget), augment=setting.tiny,
                      precision=cfg.precision, bn_stats=bn_stats or cfg.bn_stats, device=self.device().type,
                      variants=variants_ or variants(cfg.methods, cfg.method_options(), cfg.n_pert or 50))

    def steps_per_epoch(self) -> int:
        return -(-self.sizes()[2] // self.panel.batch_size)

    def model_costs(self) -> list[ModelCost]:
        _, retain, forget, _, _ = self.sizes()
        recipe = self.recipe()
        return [ModelCost(self.cache_path(seed, name, size), f"trial {seed}: {name} model", recipe,
                          self.epochs(name) * size)
                for seed in self.seeds() for name, size in (("initial", retain + forget), ("gt", retain))]

    def job_cost(self, job, trials: int) -> Cost:
        steps = method_steps(job, self.steps_per_epoch())
        _, retain, forget, test, _ = self.sizes()
        scored = 3 * test + self.cfg.field_scored(forget, retain, test)       # the paper's metrics, the field's
        return Cost(self.recipe(), tuple((m, n * trials) for m, n in steps), scored=trials * scored,
                    runs=((job.method, trials),))


FIELD_HEADS = ("class", "color")   # the heads of the field's metrics: head0_ (content class), head1_ (color)


# -- the sweeps and their selection ----------------------------------------------------------------

def setting_sweep(experiment: LabelErasure) -> Sweep:
    """One setting's sweep: every method's grid at the setting's T (Figure 2's `run_setting`
    runs it, `plan` counts it)."""
    cfg, setting = experiment.cfg, experiment.panel
    axes = dict(setting.grid)
    if cfg.n_pert:
        axes["n_pert"] = [cfg.n_pert]
    jobs = [Job.of(m, setting.epochs, hp) for m in cfg.methods
            for hp in method_grid(m, axes, cfg.grid_values, cfg.method_options(), setting.epochs)]
    return Sweep(experiment, jobs, f"figure {setting.figure}")


def plan(cfg: Config) -> Work:
    """What Figure 2's `main` trains and runs (mnog.plan): per setting, every trial's models, then its sweep."""
    return Work(sweeps=tuple(setting_sweep(LabelErasure(cfg, figure)) for figure in figures(cfg)))


def frontier_points(records: list[dict], trials: int, order: tuple[str, ...] = METHODS) -> pd.DataFrame:
    """Every configuration's mean ± SE over its `trials` trials of retain quality and forget
    error, with its method's frontier flag and its distance to (1, 0); rows in `order` of
    the methods, then configuration (the same whatever order the jobs finished in)."""
    keys = ["method", "epochs", "config"]
    quality, error = LabelErasure.metrics
    points = summarize(records, quality, higher_is_better=True)[[*keys, "n", "mean", "se"]].merge(
        summarize(records, error)[[*keys, "mean", "se"]], on=keys, suffixes=("_quality", "_error"))
    points = points[points["n"] == trials].assign(order=lambda d: d["method"].map(order.index))
    points = points.sort_values(["order", "config"], kind="stable").drop(columns="order").reset_index(drop=True)
    points["frontier"] = False
    for method, group in points.groupby("method"):
        front = pareto_front(group["mean_quality"].to_numpy(), group["mean_error"].to_numpy())
        points.loc[group.index[front], "frontier"] = True
    points["distance"] = np.hypot(1 - points["mean_quality"], points["mean_error"])
    return points


def selected(points: pd.DataFrame) -> pd.DataFrame:
    """Each method's selected configuration per figure: its frontier point closest to (1, 0)."""
    front = points[points["frontier"].astype(bool)]
    return front.loc[front.groupby(["figure", "method"])["distance"].idxmin()].sort_values(["figure", "distance"])
