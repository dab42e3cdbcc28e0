"""Random forgetting: the unlearning field's standard benchmark beside the paper's experiments.
A ResNet-18 forgets a random 10% of CIFAR-10's training set; how close does each method come to
a model retrained from scratch without it?

    make random_forgetting                  # paper profile: CIFAR-10, ResNet-18 (width 64), 3 trials (GPU)
    PROFILE=cpu make random_forgetting      # 1,000 CIFAR-10 images, width 8, 2 trials (CPU)
    PROFILE=smoke make random_forgetting    # a synthetic image set, tiny budget (CI)

Protocol (the SalUn paper's, Fan et al., ICLR 2024, as its public code states it; sources in
paper_tables/random_forgetting.json). Per trial: D_f is a random p_forget = 10% of the training
images (drawn from the trial's seed), D_r the rest; θ* (ColorResNet-18 with one 10-class head on
the images in their own colors, CIFAR-10 normalization) trains on D_r ∪ D_f, and the GT model
(the field's "Retrain") on D_r alone, from scratch, with SGD (lr 0.1, momentum 0.9, weight decay
5e-4, batch 256, lr × 0.1 every lr_step epochs; SalUn's 182 and 160 epochs at the paper
profile). Each of the eleven methods unlearns D_f from θ* (mnog.unlearn: T epochs over the
forget batches, each paired with a retain batch, AdamW; mnog's Retrain is the budgeted
re-initialize-then-descend of docs/protocol.md#baselines, not GT), sweeping the grid of
paper_tables/random_forgetting.json. Metrics (mnog.evaluate, no bootstrap): UA, RA, TA,
MIA-efficacy, the loss attack and their gaps to GT, with forget set D_f, retain set D_r (a fixed
subsample of 2,000: mnog.experiment.field_sets) and the test set; records store all of them.

Selection rule: per method, the configuration with the smallest mean over the trials of the
average gap to GT (the mean of |UA − UA_GT|, |RA − RA_GT|, |TA − TA_GT| and |MIA − MIA_GT|,
SalUn's "Avg. Gap"), ties broken by the narrower central range.

Expected: none from the paper (it has no such experiment). SalUn's published Table 1 (10% random
forgetting, full CIFAR-10, ResNet-18; paper_tables/random_forgetting.json, with its source) is
printed beside ours, row by row where mnog has the same method (Retrain = our GT, FT = our GD,
GA, l1-sparse, SalUn); it is shown, not checked (other code, other step sizes, and at the cpu
profile another scale), so nothing fails. Runtime: paper profile hours on a GPU (never run); cpu
minutes on a 2-core CPU (docs/results/random-forgetting.md); smoke seconds. Writes
results/random_forgetting/records.jsonl and results/random_forgetting/<profile>/:
random_forgetting.md, random_forgetting.csv, published.csv (SalUn's rows beside ours),
config.json.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tabulate import tabulate

import mnog
from mnog.colors import CIFAR_NORM, ColoredImages, concat
from mnog.compare import FIELD_LABELS, FIELD_NOTE, PAPER_TABLES, field_cell, field_columns, field_header
from mnog.config import field, parse_config
from mnog.datasets import dataset_id, load_image_data, planned_sizes
from mnog.experiment import (Experiment, Prepared, Trial, field_metrics, prepared, script_main,
                             sweep, training_fit)
from mnog.methods import paper_methods
from mnog.models import ColorResNet
from mnog.plan import Cost, ModelCost, Recipe, Sweep, Work, method_steps, variants
from mnog.results import RESULTS, provenance, stable_hash, write_json, write_text
from mnog.sweep import (BEFORE_OPTIONS, ImageSweepConfig, Job, field_means, method_grid, select_best, summarize,
                        variant)
from mnog.tasks import Task
from mnog.training import Phase, SGDConfig, train_cached

BENCHMARK = json.loads((PAPER_TABLES / "random_forgetting.json").read_text())
METHODS = paper_methods()
PUBLISHED_CAVEAT = ("the SalUn paper ran full CIFAR-10 with its own step sizes and epochs per method, so only "
                    "the paper profile is the same benchmark, run by other code; ours are means over our trials")
SELECTION = ("Selection: per method, the configuration with the smallest mean over the trials of the average gap "
             "to the GT model (SalUn's Avg. Gap: the mean of the gaps of UA, RA, TA and MIA-efficacy).")


@dataclass(frozen=True)
class Config(ImageSweepConfig):  # + trials, per_class, test_per_class, width, grid_values, n_pert, device, protocol
    dataset: str = field("cifar10", "cifar10, fashion_mnist, synthetic or folder:PATH (an ImageFolder or an archive "
                                    "of one, e.g. folder:PATH/cifar10-jpeg.tar.gz)", dataset=True)
    p_forget: float = field(BENCHMARK["protocol"]["p_forget"], "fraction of the training images in D_f", above=0)
    train_epochs: int = field(BENCHMARK["protocol"]["original_epochs"], "epochs of θ* on D_r ∪ D_f", minimum=1)
    gt_epochs: int = field(BENCHMARK["protocol"]["retrain_epochs"], "epochs of the GT (Retrain) model on D_r",
                           minimum=1)
    lr: float = field(BENCHMARK["protocol"]["train_lr"], "SGD learning rate of θ* and GT", above=0)
    lr_step: int = field(60, "lr × 0.1 every this many training epochs", minimum=1)
    batch_size: int = field(256, "training batch size (and unlearning's, unless unlearn_batch)", minimum=1)
    augment: bool = field(True, "random resized crops (scale 0.7-1) and flips while training θ* and GT")
    epochs: int = field(BENCHMARK["epochs"], "unlearning epochs T (each over the forget batches)", minimum=1)
    unlearn_batch: int = field(0, "unlearning batch size (0: batch_size)", minimum=0)
    p_retain: float = field(1.0, "fraction of D_r the methods see (D'_r, fixed per trial)", above=0)
    methods: tuple[str, ...] = field(METHODS, "methods to run", choices=METHODS)

    def __post_init__(self):
        if not self.p_forget < 1:
            raise ValueError(f"--p-forget must be below 1, got {self.p_forget}")
        if not self.p_retain <= 1:
            raise ValueError(f"--p-retain must be at most 1, got {self.p_retain}")


PROFILES = {
    "paper": Config(trials=3),
    # 100 training and 100 test images per class of CIFAR-10 (the official archive, or --dataset
    # folder:PATH/cifar10-jpeg.tar.gz): D_f 100 images. ColorResNet-18 of width 8
    # (one head) trained 60 epochs at batch 32 (lr 0.03, × 0.1 at epoch 40), without
    # augmentation, fits its training set; unlearning batch 10 (10 forget batches per epoch), T = 5;
    # 2 trials; one value per grid axis (η its largest), n_pert 10 (docs/results/random-forgetting.md).
    "cpu": Config(per_class=100, test_per_class=100, width=8, train_epochs=60, gt_epochs=60, lr=0.03, lr_step=40,
                  batch_size=32, augment=False, epochs=5, unlearn_batch=10, trials=2, grid_values=1, n_pert=10,
                  **BEFORE_OPTIONS),
    "smoke": Config(dataset="synthetic", per_class=50, test_per_class=10, width=8, train_epochs=2, gt_epochs=2,
                    lr=0.03, batch_size=32, augment=False, epochs=2, trials=2, grid_values=1, n_pert=10,
                    **BEFORE_OPTIONS),
}


# -- the experiment: D_f a random 10%, θ* and GT, the field's metrics ---------------------------

def forgetting_sets(cfg: Config, images, labels, seed: int) -> tuple[ColoredImages, ColoredImages]:
    """(D_r, D_f) of one trial: a random p_forget of the training images (from `seed`) and the rest,
    in their own colors (palette None)."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    count = int(cfg.p_forget * len(labels))
    forget, retain = order[:count].sort().values, order[count:].sort().values

    def part(index):
        return ColoredImages(images[index], colors=torch.zeros_like(labels[index]), labels=labels[index],
                             palette=None, norm=CIFAR_NORM)
    return part(retain), part(forget)


@dataclass(frozen=True)
class RandomForgetting(Experiment):
    cfg: Config
    store = "random_forgetting"
    metrics = ("average_gap",)   # the selection's; every record holds all of field_metrics'

    @property
    def task(self) -> Task:
        return Task("cross_entropy", logit_clamp=self.cfg.logit_clamp)

    def setting(self) -> dict:
        cfg = self.cfg
        return {"experiment": "random_forgetting", "mnog": mnog.__version__, "dataset": dataset_id(cfg.dataset),
                "per_class": cfg.per_class, "test_per_class": cfg.test_per_class, "width": cfg.width,
                "p_forget": cfg.p_forget, "epochs": (cfg.train_epochs, cfg.gt_epochs), "lr": cfg.lr,
                "lr_step": cfg.lr_step, "batch_size": cfg.batch_size, "augment": cfg.augment,
                "unlearn_batch": cfg.unlearn_batch or cfg.batch_size, "p_retain": cfg.p_retain,
                "logit_clamp": cfg.logit_clamp, "device": self.device().type,
                **cfg.protocol_setting(), **cfg.scoring_setting()}

    def protocol(self) -> dict:
        return {"batch_size": self.cfg.unlearn_batch or self.cfg.batch_size, "p_retain": self.cfg.p_retain,
                **self.cfg.unlearn_options()}

    def prepare(self) -> Prepared:
        """Each trial's D_r, D_f, θ* and GT (trained once, then cached) on the device; the test set."""
        cfg, dev = self.cfg, self.device()
        data = load_image_data(cfg.dataset, per_class=cfg.per_class, test_per_class=cfg.test_per_class)
        classes = int(data.train_labels.max()) + 1
        trials = {}
        for seed in self.seeds():
            retain, forget = (s.to(dev) for s in forgetting_sets(cfg, data.train_images, data.train_labels, seed))
            initial, gt = self._models(retain, forget, seed, classes)
            trials[seed] = Trial(seed, initial, retain, forget, {"gt": gt})   # uint8 images, rendered where used
        test = ColoredImages(data.test_images, colors=torch.zeros_like(data.test_labels), labels=data.test_labels,
                             palette=None, norm=CIFAR_NORM).to(dev)
        return Prepared(trials, classes, test=(test.inputs(), test.targets()))

    def model_spec(self, seed: int, name: str, epochs: int) -> dict:
        """What determines a trial's θ* ("initial") or GT model (its cache file's name hashes it,
        and the file stores it)."""
        cfg = self.cfg
        return {"dataset": dataset_id(cfg.dataset), "per_class": cfg.per_class, "width": cfg.width,
                "p_forget": cfg.p_forget, "lr": cfg.lr, "lr_step": cfg.lr_step, "batch": cfg.batch_size,
                "augment": cfg.augment, "seed": seed, "precision": cfg.precision, "mnog": mnog.__version__,
                "model": name, "epochs": epochs}

    def cache_path(self, seed: int, name: str, epochs: int):
        """results/cache/forgetting-<hash>.pt: a trial's θ* ("initial") or GT model."""
        return RESULTS / "cache" / f"forgetting-{stable_hash(self.model_spec(seed, name, epochs))}.pt"

    def _models(self, retain: ColoredImages, forget: ColoredImages, seed: int, classes: int):
        cfg = self.cfg
        sgd = SGDConfig(lr=cfg.lr, step_size=cfg.lr_step, batch_size=cfg.batch_size)
        models = {}
        for name, data, epochs in [("initial", concat(retain, forget), cfg.train_epochs), ("gt", retain, cfg.gt_epochs)]:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = ColorResNet(18, heads=(classes,), width=cfg.width).to(retain.images.device)
            models[name] = train_cached(self.cache_path(seed, name, epochs), model,
                                        [Phase(data, epochs, augment=cfg.augment)], sgd, seed=seed,
                                        desc=f"trial {seed}: {name} model", precision=cfg.precision,
                                        spec=self.model_spec(seed, name, epochs))
        return models["initial"], models["gt"]

    def score(self, model, prepared: Prepared, trial: Trial) -> dict[str, float]:
        return field_metrics(model, trial, prepared.test, **self.cfg.field_limits())

    # -- costs (mnog.plan), from the data set's sizes (nothing loaded) --------------------------
    def sizes(self) -> tuple[int, int, int, int]:
        """(|D_r|, |D_f|, test images, image side) of every trial."""
        classes, per_class, test, side = planned_sizes(self.cfg.dataset, self.cfg.per_class, self.cfg.test_per_class)
        forget = int(self.cfg.p_forget * classes * per_class)
        return classes * per_class - forget, forget, test, side

    def recipe(self) -> Recipe:
        cfg, (_, forget, _, side) = self.cfg, self.sizes()
        return Recipe("resnet18", cfg.width, side, heads=(10,), train_batch=cfg.batch_size,
                      batch=min(self.protocol()["batch_size"], forget), augment=cfg.augment, precision=cfg.precision,
                      bn_stats=cfg.bn_stats, device=self.device().type,
                      variants=variants(cfg.methods, cfg.method_options(), cfg.n_pert or 50))

    def model_costs(self) -> list[ModelCost]:
        cfg, (retain, forget, _, _) = self.cfg, self.sizes()
        return [ModelCost(self.cache_path(seed, name, epochs), f"trial {seed}: {name} model", self.recipe(),
                          epochs * size)
                for seed in self.seeds()
                for name, epochs, size in (("initial", cfg.train_epochs, retain + forget), ("gt", cfg.gt_epochs, retain))]

    def job_cost(self, job: Job, trials: int) -> Cost:
        retain, forget, test, _ = self.sizes()
        steps = method_steps(job, -(-forget // self.protocol()["batch_size"]))
        return Cost(self.recipe(), tuple((m, n * trials) for m, n in steps),
                    scored=trials * self.cfg.field_scored(forget, retain, test),
                    runs=((job.method, trials),))


# -- the sweep, the selection, the table ------------------------------------------------------------

def jobs(cfg: Config) -> list[Job]:
    axes = dict(BENCHMARK["grid"])
    if cfg.n_pert:
        axes["n_pert"] = [cfg.n_pert]
    return [Job.of(m, cfg.epochs, hp) for m in cfg.methods
            for hp in method_grid(m, axes, cfg.grid_values, cfg.method_options(), cfg.epochs)]


def plan(cfg: Config) -> Work:
    """What `main` trains and runs (mnog.plan): every trial's θ* and GT, then the sweep."""
    return Work(sweeps=(Sweep(RandomForgetting(cfg), jobs(cfg), "random forgetting"),))


def reference_rows(cfg: Config, state: Prepared) -> pd.DataFrame:
    """The GT (Retrain) model and θ* scored like the unlearned models, means over the trials."""
    rows = []
    for name, model_of in [("GT (retrained on D_r)", lambda t: t.references["gt"]), ("θ* (before unlearning)",
                                                                                     lambda t: t.initial)]:
        metrics = [field_metrics(model_of(t), t, state.test, **cfg.field_limits())
                   for t in state.trials.values()]
        rows.append({"method": name, "config": "", **{k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}})
    return pd.DataFrame(rows)


PUBLISHED_SHOWN = ("ua", "ra", "ta", "mia_efficacy", "average_gap")   # SalUn's Table 1 columns, ours beside


def published_rows(table: pd.DataFrame) -> pd.DataFrame:
    """SalUn's published rows (paper_tables/random_forgetting.json), each beside ours: the
    selected configuration of the mnog method that does what the row does (its "mnog" entry;
    Retrain: our GT model), in %; "—" where mnog has no counterpart or did not run it."""
    ours = {("GT" if r["method"].startswith("GT") else r["method"]): r for _, r in table.iterrows()}
    rows = []
    for row in BENCHMARK["published"]:
        mine = ours.get(row["mnog"]) if row["mnog"] else None
        rows.append({"method": row["method"], "mnog": row["mnog"] or "",
                     **{f"published_{k}": row[k] for k in PUBLISHED_SHOWN},
                     **{f"ours_{k}": None if mine is None or k not in mine else 100 * mine[k]
                        for k in PUBLISHED_SHOWN}})
    return pd.DataFrame(rows)


def published_markdown(rows: pd.DataFrame) -> str:
    def cell(value):
        return "—" if value is None or pd.isna(value) else f"{value:.2f}"
    headers = ["SalUn's row", "ours", *(f"{FIELD_LABELS[k]} (SalUn / ours)" for k in PUBLISHED_SHOWN)]
    body = [[r["method"], r["mnog"] or "—",
             *(f"{cell(r[f'published_{k}'])} / {cell(r[f'ours_{k}'])}" for k in PUBLISHED_SHOWN)]
            for _, r in rows.iterrows()]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def markdown(table: pd.DataFrame) -> str:
    extra = field_columns(table.columns)
    rows = [[r["method"], *(field_cell(r[c]) for c in extra), r["config"]] for _, r in table.iterrows()]
    return tabulate(rows, headers=["method", *(field_header(c) for c in extra), "configuration"], tablefmt="github",
                    disable_numparse=True)


def main(argv=None) -> int:
    cfg, profile, executor = parse_config(Config, PROFILES, __doc__.split("\n")[0], argv)
    out = RESULTS / "random_forgetting" / (profile + variant(cfg, PROFILES[profile]))
    experiment = RandomForgetting(cfg)
    print(f"Random forgetting · profile {profile} · {cfg.dataset} · {cfg.p_forget:.0%} of the training set · "
          f"{cfg.trials} trials · T = {cfg.epochs} · device {experiment.device()}")
    state = prepared(experiment)                # trains θ* and GT of every trial once (then cached)
    fit = {name: accuracy for name, (accuracy,) in training_fit(state).items()}   # one head
    print("train accuracy (lowest over trials): " + "; ".join(f"{name} {value:.3f}" for name, value in fit.items()))

    planned = plan(cfg).sweeps[0]
    records = sweep(experiment, planned.jobs, executor, desc=planned.desc)
    best = select_best(summarize(records, "average_gap"), n=cfg.trials, by="mean")
    best = field_means(best, records)
    best = best.assign(order=best["method"].map(METHODS.index)).sort_values("order").drop(columns="order")
    table = pd.concat([reference_rows(cfg, state), best], ignore_index=True)

    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "random_forgetting.csv", index=False)
    beside = published_rows(table)
    beside.to_csv(out / "published.csv", index=False)
    text = "\n\n".join([f"# Random forgetting ({cfg.p_forget:.0%} of the training set), profile {profile}",
                        f"{SELECTION} {FIELD_NOTE}", markdown(table),
                        f"Published (not checked: {PUBLISHED_CAVEAT}): {BENCHMARK['source']['published_numbers']}",
                        published_markdown(beside)])
    write_text(out / "random_forgetting.md", text + "\n")
    write_json(out / "config.json", {"profile": profile, "config": cfg, "setting": experiment.setting(), "fit": fit,
                                     "selection": SELECTION,
                                     "published": BENCHMARK["source"]["published_numbers"], "provenance": provenance()})
    print(text)
    return 0


if __name__ == "__main__":
    script_main(__spec__)
