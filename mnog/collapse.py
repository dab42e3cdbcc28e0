"""Representation Collapse (docs/protocol.md#representation-collapse): its settings, profiles,
data and models.

Two targets run this experiment, Table 2 (`artifact/table2_representation_collapse.py`: the
sweeps, the table, the claims) and the ablation (`artifact/ablation.py`: MinNorm-OG's variants
on the same grids), so its declaration lives here, in the core, and both build the same
`RepresentationCollapse` from the same profiles: the ablation finds Table 2's models and
records because they are the same cache entries and record keys.

Class k is shown in palette color k. D_r: every training image in its class color; D_f: for a
p_forget fraction of each class's images an extra copy in a random other color, labeled with
the true class. Per trial, θ* trains on gray images (warm start), then on D_r ∪ D_f with loss
weights p/(1+p) (retain) and 1/(1+p) (forget); the ground-truth (GT) model on D_r, unweighted;
both cached by a hash of everything that determines them. A row of Table 17 is a p_retain and
an unlearning budget T (`ROWS`, as p_retain:T); one experiment per p_retain, its T values the
jobs'. Metric: color accuracy (%), every test image in each of the 10 colors, correct when the
prediction names the color shown; beside it every record holds the field's standard metrics
(mnog.experiment.field_metrics: forget set D_f, retain set D_r, a fixed subsample of 2,000 when
larger, test set the test images in their class's color, reference the trial's GT model).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import torch

import mnog
from mnog.colors import CIFAR_NORM, PALETTE, ColoredImages, concat
from mnog.compare import PAPER_TABLES
from mnog.config import field
from mnog.datasets import dataset_id, load_image_data, planned_sizes
from mnog.experiment import Experiment, Prepared, Trial, field_metrics
from mnog.methods import paper_methods
from mnog.metrics import color_accuracy
from mnog.models import ColorResNet
from mnog.plan import Cost, ModelCost, Recipe, Sweep, Work, method_steps, variants
from mnog.results import RESULTS, stable_hash
from mnog.sweep import BEFORE_OPTIONS, ImageSweepConfig, Job, method_grid, search_grid
from mnog.tasks import Task
from mnog.training import Phase, SGDConfig, train_cached

METHODS = paper_methods()
ROWS = ("0.001:5", "0.001:10", "0.001:15", "0.01:5", "0.01:10")  # Table 17's rows, as p_retain:T


@dataclass(frozen=True)
class Config(ImageSweepConfig):  # + trials, width, grid_values, n_pert, device, the protocol options (mnog.sweep)
    dataset: str = field("cifar10", "cifar10, fashion_mnist, synthetic or folder:PATH (an ImageFolder or an archive "
                                    "of one, e.g. folder:PATH/cifar10-jpeg.tar.gz)", dataset=True)
    p_forget: float = field(0.01, "fraction of each class copied off-color into D_f (p)", above=0)
    warm_epochs: int = field(20, "warm-start epochs on gray images", minimum=0)
    initial_epochs: int = field(50, "epochs on D_r ∪ D_f for θ*", minimum=1)
    gt_epochs: int = field(50, "epochs on D_r for the ground-truth model", minimum=1)
    lr: float = field(3e-2, "SGD learning rate for θ* and GT", above=0)
    lr_step: int = field(20, "lr × 0.1 every this many epochs", minimum=1)
    batch_size: int = field(256, "training batch size (and unlearning's, unless unlearn_batch)", minimum=1)
    unlearn_batch: int = field(0, "unlearning batch size (0: batch_size)", minimum=0)
    rows: tuple[str, ...] = field(ROWS, "rows of Table 17 as p_retain:T", choices=ROWS)
    methods: tuple[str, ...] = field(METHODS, "methods to run", choices=METHODS)
    enforce: bool = field(True, "exit 1 when a cell misses its tolerance or a claim fails")


PROFILES = {
    "paper": Config(),
    # The paper's regime on a CIFAR-10 subset (docs/results/representation-collapse.md gives the
    # reasoning and the measured fit): 100 training images per class at 32×32 (1,000; the official
    # archive, or --dataset folder:PATH/cifar10-jpeg.tar.gz), 20 test images per
    # class (shown in 10 colors: 2,000 predictions per job). ColorResNet-18 of width 8 (one
    # head, 176,402 parameters) at batch 32: 10 gray warm-start epochs, then 100 on D_r ∪ D_f
    # with lr × 0.1 every 40 (shorter schedules fit less of D_r), GT 30. Unlearning batch 5: D_f
    # (1% of each class: 10 images) in the paper's 2 forget batches per epoch (500 in batches of 256); Table 17's row
    # p_retain 1%, T = 10 (D'_r: 10 images, two batches, as the paper's 500); 3 trials; 2
    # values per grid axis (η its two largest, every other axis both ends of the paper's range).
    "cpu": Config(per_class=100, test_per_class=20, width=8, warm_epochs=10, initial_epochs=100, gt_epochs=30,
                  lr_step=40, batch_size=32, unlearn_batch=5, rows=("0.01:10",), trials=3, grid_values=2,
                  enforce=False, **BEFORE_OPTIONS),
    "smoke": Config(dataset="synthetic", per_class=100, test_per_class=10, width=8, warm_epochs=1,
                    initial_epochs=2, gt_epochs=2, lr_step=2, rows=("0.01:5",), trials=2, grid_values=1,
                    n_pert=10, enforce=False, **BEFORE_OPTIONS),
}


def rows(cfg: Config) -> list[tuple[float, int]]:
    return [(float(p), int(t)) for p, t in (row.split(":") for row in cfg.rows)]


# -- data: D_r in class colors, D_f off-color copies ---------------------------------------

def collapse_sets(cfg: Config, images, labels, seed: int) -> tuple[ColoredImages, ColoredImages]:
    """(D_r, D_f) of one trial (docs/protocol.md#representation-collapse); loss weights p/(1+p) and 1/(1+p)."""
    generator = torch.Generator().manual_seed(seed)
    p = cfg.p_forget
    retain = ColoredImages(images, colors=labels, labels=labels, palette=PALETTE, norm=CIFAR_NORM,
                           weights=torch.full((len(labels),), p / (1 + p)))
    chosen = []
    for k in range(len(PALETTE)):
        members = (labels == k).nonzero().squeeze(1)
        count = int(p * len(members))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:count]])
    index = torch.cat(chosen)
    off_color = (labels[index] + torch.randint(1, len(PALETTE), (len(index),), generator=generator)) % len(PALETTE)
    forget = ColoredImages(images[index], colors=off_color, labels=labels[index], palette=PALETTE,
                           norm=CIFAR_NORM, weights=torch.full((len(index),), 1 / (1 + p)))
    return retain, forget


def gray(data: ColoredImages) -> ColoredImages:
    """The warm-start set: the same images, palette-free gray (L, L, L), unweighted."""
    return replace(data, colors=torch.zeros_like(data.colors), palette=((255, 255, 255),), weights=None)


# -- the experiment: trials, their models, the metric -----------------------------------------

@dataclass(frozen=True)
class RepresentationCollapse(Experiment):
    """Table 17's rows at one p_retain (its T values are the jobs')."""
    cfg: Config
    p_retain: float
    store = "table2"
    metrics = ("color_accuracy",)

    @property
    def task(self) -> Task:
        return Task("cross_entropy", logit_clamp=self.cfg.logit_clamp)

    def setting(self) -> dict:
        cfg = self.cfg
        return {"experiment": "table2", "mnog": mnog.__version__, "dataset": dataset_id(cfg.dataset),
                "per_class": cfg.per_class, "test_per_class": cfg.test_per_class, "width": cfg.width,
                "p_forget": cfg.p_forget,
                "epochs": (cfg.warm_epochs, cfg.initial_epochs, cfg.gt_epochs), "lr": cfg.lr, "lr_step": cfg.lr_step,
                "batch_size": cfg.batch_size, **({"unlearn_batch": cfg.unlearn_batch} if cfg.unlearn_batch else {}),
                "logit_clamp": cfg.logit_clamp, "device": self.device().type, "p_retain": self.p_retain,
                **cfg.protocol_setting(), **cfg.scoring_setting()}

    def protocol(self) -> dict:
        return {"batch_size": self.cfg.unlearn_batch or self.cfg.batch_size, "p_retain": self.p_retain,
                **self.cfg.unlearn_options()}

    def prepare(self) -> Prepared:
        """Each trial's D_r, D_f, θ* and GT (trained once, then cached) on the device; the test images."""
        cfg, dev = self.cfg, self.device()
        data = load_image_data(cfg.dataset, per_class=cfg.per_class, test_per_class=cfg.test_per_class)
        trials = {}
        images = data.train_images.to(dev)       # one copy on the device: every trial's D_r shows these
        for seed in self.seeds():
            retain, forget = collapse_sets(cfg, images, data.train_labels, seed)
            retain, forget = retain.to(dev), forget.to(dev)
            initial, gt = self._models(retain, forget, seed)
            trials[seed] = Trial(seed, initial, retain, forget, {"gt": gt})   # uint8 images, rendered where used
        test = ColoredImages(data.test_images, colors=data.test_labels, labels=data.test_labels, palette=PALETTE,
                             norm=CIFAR_NORM).to(dev)                # in their class's color, as D_r
        return Prepared(trials, data.test_images.to(dev), test=(test.inputs(), test.targets()))

    def model_spec(self, seed: int) -> dict:
        """What determines a trial's two models (the cache files' names hash it; each file stores
        it with its model's name)."""
        cfg = self.cfg
        return {"dataset": dataset_id(cfg.dataset), "per_class": cfg.per_class, "width": cfg.width,
                "p_forget": cfg.p_forget,
                "warm": cfg.warm_epochs, "initial": cfg.initial_epochs, "gt": cfg.gt_epochs, "lr": cfg.lr,
                "lr_step": cfg.lr_step, "batch": cfg.batch_size, "seed": seed, "precision": cfg.precision,
                "mnog": mnog.__version__}

    def cache_path(self, seed: int):
        """results/cache/collapse-<hash>.pt: the stem of a trial's two cached models (-initial, -gt)."""
        return RESULTS / "cache" / f"collapse-{stable_hash(self.model_spec(seed))}.pt"

    def _models(self, retain: ColoredImages, forget: ColoredImages, seed: int):
        """θ* (a gray warm start, then the weighted D_r ∪ D_f, one SGD schedule) and GT (D_r, unweighted)."""
        cfg = self.cfg
        path = self.cache_path(seed)
        sgd = SGDConfig(lr=cfg.lr, step_size=cfg.lr_step, batch_size=cfg.batch_size)
        models = {}
        for name, phases in [("initial", [Phase(gray(retain), cfg.warm_epochs),
                                          Phase(concat(retain, forget), cfg.initial_epochs)]),
                             ("gt", [Phase(replace(retain, weights=None), cfg.gt_epochs)])]:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = ColorResNet(18, heads=(len(PALETTE),), width=cfg.width).to(retain.images.device)
            models[name] = train_cached(path.with_name(f"{path.stem}-{name}.pt"), model, phases, sgd, seed=seed,
                                        desc=f"trial {seed}: {name} model", precision=cfg.precision,
                                        spec={**self.model_spec(seed), "model": name})
        return models["initial"], models["gt"]

    def color_accuracy(self, model, prepared: Prepared) -> float:
        return 100 * color_accuracy(model, prepared.evaluation, PALETTE, CIFAR_NORM,
                                    precision=self.cfg.eval_precision)

    def score(self, model, prepared: Prepared, trial: Trial) -> dict[str, float]:
        return {"color_accuracy": self.color_accuracy(model, prepared), **field_metrics(model, trial, prepared.test,
                                                                                      **self.cfg.field_limits())}

    # -- costs (mnog.plan), from the data set's sizes (nothing loaded) --------------------------
    def sizes(self) -> tuple[int, int, int, int]:
        """(|D_r|, |D_f|, test images, image side) of every trial."""
        classes, per_class, test, side = planned_sizes(self.cfg.dataset, self.cfg.per_class, self.cfg.test_per_class)
        return classes * per_class, classes * int(self.cfg.p_forget * per_class), test, side

    def recipe(self) -> Recipe:
        cfg, (_, forget, _, side) = self.cfg, self.sizes()
        return Recipe("resnet18", cfg.width, side, heads=(len(PALETTE),), train_batch=cfg.batch_size,
                      batch=min(self.protocol()["batch_size"], forget), precision=cfg.precision, bn_stats=cfg.bn_stats,
                      device=self.device().type, variants=variants(cfg.methods, cfg.method_options(), cfg.n_pert or 50))

    def model_costs(self) -> list[ModelCost]:
        cfg, (retain, forget, _, _) = self.cfg, self.sizes()
        out = []
        for seed in self.seeds():
            stem = self.cache_path(seed)
            out += [ModelCost(stem.with_name(f"{stem.stem}-initial.pt"), f"trial {seed}: θ*", self.recipe(),
                              cfg.warm_epochs * retain + cfg.initial_epochs * (retain + forget)),
                    ModelCost(stem.with_name(f"{stem.stem}-gt.pt"), f"trial {seed}: GT", self.recipe(),
                              cfg.gt_epochs * retain)]
        return out

    def job_cost(self, job: Job, trials: int) -> Cost:
        retain, forget, test, _ = self.sizes()
        steps = method_steps(job, -(-forget // self.protocol()["batch_size"]))
        scored = test * len(PALETTE) + self.cfg.field_scored(forget, retain, test)   # color accuracy, field metrics
        return Cost(self.recipe(), tuple((m, n * trials) for m, n in steps), scored=trials * scored,
                    runs=((job.method, trials),))


def row_grids(cfg: Config) -> dict[str, tuple[dict, str]]:
    """Every row's grid ("p_retain:T" → (axes, where they come from))."""
    paper_grids = json.loads((PAPER_TABLES / "tables18_22.json").read_text())
    return {f"{p:g}:{t}": search_grid("table2", f"{p:g}:{t}", paper_grids[f"{p:g}:{t}"], cfg.grids)
            for p, t in rows(cfg)}


def sweeps(cfg: Config, experiments: dict | None = None) -> list[Sweep]:
    """One sweep per row of Table 17: every method's grid at the row's T, on the experiment of
    the row's p_retain (Table 2's `main` runs them; `plan` counts them)."""
    experiments = experiments or {p: RepresentationCollapse(cfg, p) for p in dict(rows(cfg))}
    out = []
    for (p_retain, epochs), (axes, _) in zip(rows(cfg), row_grids(cfg).values()):
        axes = dict(axes)
        if cfg.n_pert:
            axes["n_pert"] = [cfg.n_pert]
        jobs = [Job.of(m, epochs, hp) for m in cfg.methods
                for hp in method_grid(m, axes, cfg.grid_values, cfg.method_options(), epochs)]
        out.append(Sweep(experiments[p_retain], jobs, f"table2 {p_retain:g}:{epochs}"))
    return out


def plan(cfg: Config) -> Work:
    """What Table 2's `main` trains and runs (mnog.plan): every trial's θ* and GT, then one sweep per row."""
    return Work(sweeps=tuple(sweeps(cfg)))
