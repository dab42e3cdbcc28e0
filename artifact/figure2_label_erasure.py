"""Figure 2 (and Figures 6-14): Multi-Class Label Erasure. Can a model trained on gray and a
few red and green images be made to see every image as gray again?

    make figure2                      # Figure 2: the settings of Figures 6 (CIFAR-10) and 7 (Tiny ImageNet)
    make figure6 ... make figure14    # one setting each
    PROFILE=cpu make figure6          # colored Fashion-MNIST, narrow ResNet (CPU)
    PROFILE=smoke make figure6        # a synthetic image set, tiny budget (CI)

Protocol (SPEC §7). D_r: gray copies of every training image; D_f: a random p_color fraction
of the red copies plus the same fraction of the green copies. Labels: (content class, color
∈ {gray, red, green}). Per trial, the initial model trains on D_r ∪ D_f and the
ground-truth (GT) model on D_r: CIFAR-10 with ColorResNet-18 (SGD lr 3e-2, 100 epochs, lr
× 0.1 at 50), Tiny ImageNet with ColorResNet-50 from ImageNet weights (augmented; SGD lr
0.1, batch 512, lr × 0.3 every 25 epochs; class loss only for 10 epochs). Each method
unlearns D_f with a p_retain fraction of D_r for T epochs, sweeping its Table 8-16 grid.
Metrics (eval mode, test set): retain quality = the fraction of gray copies whose class and
color are both right; forget-quality error = mean (1 − p(gray | x))² over the gray, red and
green copies. Per method: the Pareto frontier of its configurations' means over the trials,
with standard-error bars, the GT point and the ideal point (1, 0).

The protocol follows the authors' code (SPEC §11; README "Differences from the authors'
code"): BatchNorm's statistics see the retain and the forget batch of every step, D'_r is
fixed per trial, float32 training, the authors' SalUn; each is a flag (--bn-stats loss,
--precision bfloat16, --grids released, --minnorm-order authors, --minnorm-precision float64,
--salun-mask-loss mean, --salun-unmasked fixed), and a run that changes one writes to
results/figureN/<profile>+<option>=<value>/.

Expected (paper): MinNorm-OG's frontier comes closest to (1, 0) on both data sets; Retrain
reaches near-zero forget error at near-chance accuracy. Runtime: paper profile hours on a
GPU per setting; cpu 8 min 44 s per setting on the 2-core development CPU (Intel Xeon
Sapphire Rapids), where MinNorm-OG's frontier came closest (0.231; next GA 0.244) on 2 trials. Writes results/figureN/<profile>/: figureN.png,
figureN.pdf, figureN.csv (every configuration's means and standard errors, frontier
flags), claims.md and claims.json, config.json; records in results/label_erasure/records.jsonl.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.stats  # noqa: E402
import torch  # noqa: E402

import mnog  # noqa: E402
from mnog.colors import CIFAR_NORM, ERASURE_RGB, GRAY, GREEN, IMAGENET_NORM, RED, ColoredImages, concat  # noqa: E402
from mnog.config import field, parse_config  # noqa: E402
from mnog.errors import NonFiniteError, cli  # noqa: E402
from mnog.datasets import DATASETS, load_image_data  # noqa: E402
from mnog.executors import Executor, from_config, job_device  # noqa: E402
from mnog.metrics import erasure_metrics  # noqa: E402
from mnog.models import ColorResNet  # noqa: E402
from mnog.report import PAPER_TABLES, claims_markdown, write_claims  # noqa: E402
from mnog.results import RESULTS, RecordStore, provenance, stable_hash, write_json, write_text  # noqa: E402
from mnog.sweep import (ImageSweepConfig, Job, Runner, diverged_metrics, method_grid, pareto_front,  # noqa: E402
                        run_sweep, search_grid, summarize, unlearned_copy, variant)
from mnog.tasks import Task  # noqa: E402
from mnog.training import label_erasure_recipe, train_cached  # noqa: E402

METHODS = ("Retrain", "MinNorm-OG", "GD", "GA", "NGP", "NGD", "Ridge", "L1Sparse", "SCRUB", "NPO", "SalUn")
SETTINGS = json.loads((PAPER_TABLES / "label_erasure.json").read_text())
METRICS = ("retain_quality", "forget_error")


@dataclass(frozen=True)
class Config(ImageSweepConfig):  # + trials, grid_values, n_pert, device, --executor ... (mnog.sweep)
    figure: str = field("2", "2 (the settings of Figures 6 and 7) or 6 ... 14",
                        choices=("2", *SETTINGS["settings"]))
    dataset: str = field("", "replace every setting's data set (cpu: fashion_mnist; smoke: synthetic)",
                         choices=("", *DATASETS))
    train_epochs: int = field(100, "epochs of the SPEC §7 recipe for the initial and GT models", minimum=1)
    batch_size: int = field(0, "unlearning batch size (0: 256 for CIFAR-10, 512 for Tiny ImageNet)", minimum=0)
    methods: tuple[str, ...] = field(METHODS, "methods to run", choices=METHODS)
    enforce: bool = field(True, "exit 1 when a claim fails")


PROFILES = {
    "paper": Config(),
    # Every setting on colored Fashion-MNIST (1,000 images per class) with a width-16
    # ResNet-18 and a 6-epoch recipe; batch 64 gives the paper's 4 forget batches per epoch.
    "cpu": Config(dataset="fashion_mnist", per_class=1000, test_per_class=50, width=16, train_epochs=6,
                  batch_size=64, trials=2, grid_values=2, n_pert=20, enforce=False),
    "smoke": Config(dataset="synthetic", per_class=100, test_per_class=10, width=8, train_epochs=2, batch_size=32,
                    trials=2, grid_values=1, n_pert=10, enforce=False),
}


def seeds(cfg: Config) -> list[int]:
    return list(range(cfg.first_seed, cfg.first_seed + cfg.trials))


def device(cfg: Config) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)


def figure_settings(cfg: Config) -> list[str]:
    if cfg.figure == "2":
        return SETTINGS["figure2"]
    if cfg.figure not in SETTINGS["settings"]:
        raise SystemExit(f"no figure {cfg.figure}; choose 2 or one of {', '.join(SETTINGS['settings'])}")
    return [cfg.figure]


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


# -- data ------------------------------------------------------------------------------------

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


# -- the initial and ground-truth models, cached by everything that determines them ---------

def trained_models(cfg: Config, setting: Setting, retain: ColoredImages, forget: ColoredImages, seed: int,
                   classes: int, train: bool = True):
    """The initial and GT models of one trial, trained once and cached (train=False: only
    loaded, as in the sweep's workers)."""
    recipe = setting.paper_dataset if not cfg.dataset else "cifar10"  # substituted data: CIFAR-10's recipe
    models = {}
    for name, data in [("initial", concat(retain, forget)), ("gt", retain)]:
        spec = {"dataset": setting.dataset, "per_class": cfg.per_class, "p_color": setting.p_color,
                "recipe": recipe, "epochs": cfg.train_epochs, "width": cfg.width, "seed": seed, "model": name,
                "data": len(data), "precision": cfg.precision, "mnog": mnog.__version__}
        path = RESULTS / "cache" / f"erasure-{stable_hash(spec)}.pt"
        if not train and not path.exists():
            raise FileNotFoundError(f"no cached {name} model at {path}: the driver trains it before the sweep, and "
                                    f"workers on other machines need the driver's results folder at the same path")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = (ColorResNet(50, heads=(classes, 3), imagenet=True) if setting.tiny
                     else ColorResNet(18, heads=(classes, 3), width=cfg.width)).to(retain.images.device)
        sgd, phases = label_erasure_recipe(recipe, data, cfg.train_epochs, ground_truth=name == "gt")
        models[name] = train_cached(path, model, phases, sgd, seed=seed, desc=f"trial {seed}: {name} model",
                                    precision=cfg.precision)
    return models["initial"], models["gt"]


def load_trials(cfg: Config, setting: Setting, train: bool = True):
    """The test set, the number of classes and, per trial seed, (initial, GT, D_r, D_f) on
    cfg's device; the models trained once and cached (train=False: only loaded)."""
    dev = device(cfg)
    data = load_image_data(setting.dataset, per_class=cfg.per_class, test_per_class=cfg.test_per_class)
    classes = int(data.train_labels.max()) + 1
    trials = {}
    for seed in seeds(cfg):
        retain, forget = erasure_sets(setting, data.train_images, data.train_labels, seed)
        retain, forget = retain.to(dev), forget.to(dev)
        trials[seed] = (*trained_models(cfg, setting, retain, forget, seed, classes, train=train), retain, forget)
    return (data.test_images.to(dev), data.test_labels.to(dev)), classes, trials


def record_setting(cfg: Config, setting: Setting) -> dict:
    """Everything besides (method, T, configuration, trial) that determines a record."""
    return {"experiment": "label_erasure", "mnog": mnog.__version__, "dataset": setting.dataset,
            "recipe_dataset": setting.paper_dataset, "per_class": cfg.per_class,
            "test_per_class": cfg.test_per_class, "width": cfg.width, "train_epochs": cfg.train_epochs,
            "p_color": setting.p_color, "p_retain": setting.p_retain, "batch_size": setting.batch_size,
            "logit_clamp": cfg.logit_clamp, "device": device(cfg).type, "precision": cfg.precision,
            "bn_stats": cfg.bn_stats}


# -- the sweep: one job = one (method, T, configuration) on the missing trials ------------------

def trials_for_jobs(context: tuple[Config, str]):
    """What every job needs, loaded once per worker process: the test set and each trial's
    initial model (from the cache), D_r and D_f."""
    cfg, figure = context
    test, _, trials = load_trials(cfg, Setting(cfg, figure), train=False)
    return test, unlearning_inputs(trials)


def unlearning_inputs(trials: dict) -> dict[int, tuple]:
    """Per trial seed, what `mnog.unlearn` takes: (initial model, D_r as (inputs, targets), D_f)."""
    return {seed: (initial, (retain.inputs(), retain.targets()), (forget.inputs(), forget.targets()))
            for seed, (initial, _, retain, forget) in trials.items()}


def erasure_scores(context: tuple[Config, str], shared, job: Job, trial_seeds: list[int]) -> dict[int, dict]:
    """One job: each trial's initial model unlearned by `job`, and its two metrics."""
    cfg, figure = context
    setting = Setting(cfg, figure)
    (test_images, test_labels), trials = shared
    task = Task("cross_entropy", logit_clamp=cfg.logit_clamp)
    results = {}
    for seed in trial_seeds:
        try:
            model, _ = unlearned_copy(job, record_setting(cfg, setting), seed, *trials[seed], task,
                                      batch_size=setting.batch_size, p_retain=setting.p_retain, bn_stats=cfg.bn_stats)
        except NonFiniteError:
            results[seed] = diverged_metrics(METRICS)                  # recorded as diverged
            continue
        results[seed] = dict(zip(METRICS, erasure_metrics(model, test_images, test_labels, setting.norm)))
    return results


# -- one setting: the sweep and its frontiers --------------------------------------------------

def run_setting(cfg: Config, profile: str, setting: Setting, executor: Executor) -> tuple[pd.DataFrame, dict, dict]:
    """Every configuration's mean ± SE of both metrics (with frontier flags), the GT point and
    the initial models' point (what unlearning starts from)."""
    dev = device(cfg)
    (test_images, test_labels), classes, trials = load_trials(cfg, setting)  # trains the models once (then cached)
    gt_point, initial_point = (mean_point([erasure_metrics(models[i], test_images, test_labels, setting.norm)
                                           for models in trials.values()], classes) for i in (1, 0))
    del test_images, test_labels, trials  # the sweep's jobs load their own copies, wherever they run
    axes = dict(setting.grid)
    if cfg.n_pert:
        axes["n_pert"] = [cfg.n_pert]
    jobs = [Job.of(m, setting.epochs, hp) for m in cfg.methods
            for hp in method_grid(m, axes, cfg.grid_values, cfg.method_options(), setting.epochs)]
    job_cfg = replace(cfg, device=job_device(cfg, dev))  # the driver's choice of device, for every worker
    run = Runner(trials_for_jobs, erasure_scores, (job_cfg, setting.figure))

    store = RecordStore(RESULTS / "label_erasure" / "records.jsonl")
    records = run_sweep(jobs, seeds(cfg), run, store, record_setting(cfg, setting), desc=f"figure {setting.figure}",
                        executor=executor)
    keys = ["method", "epochs", "config"]
    points = summarize(records, METRICS[0], higher_is_better=True)[[*keys, "n", "mean", "se"]].merge(
        summarize(records, METRICS[1])[[*keys, "mean", "se"]], on=keys, suffixes=("_quality", "_error"))
    points = points[points["n"] == cfg.trials].reset_index(drop=True)
    points["frontier"] = False
    for method, group in points.groupby("method"):
        front = pareto_front(group["mean_quality"].to_numpy(), group["mean_error"].to_numpy())
        points.loc[group.index[front], "frontier"] = True
    points["distance"] = np.hypot(1 - points["mean_quality"], points["mean_error"])
    return points.assign(figure=setting.figure), gt_point, initial_point


def mean_point(per_trial: list[tuple[float, float]], classes: int) -> dict:
    """Mean and standard error over trials of (retain quality, forget error)."""
    values = np.array(per_trial)                                              # (trials, 2)
    se = scipy.stats.sem(values, axis=0) if len(values) > 1 else np.zeros(2)
    return {"quality": float(values[:, 0].mean()), "error": float(values[:, 1].mean()), "quality_se": float(se[0]),
            "error_se": float(se[1]), "classes": classes}


# -- plots and claims -------------------------------------------------------------------------

COLORS = dict(zip(METHODS, plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]))


def plot(panels: list[tuple[Setting, pd.DataFrame, dict]], title: str):
    figure, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False)
    for ax, (setting, points, gt) in zip(axes[0], panels):
        for method in [m for m in METHODS if m in set(points["method"])]:
            front = points[(points["method"] == method) & points["frontier"]].sort_values("mean_error")
            ax.errorbar(front["mean_quality"], front["mean_error"], xerr=front["se_quality"], yerr=front["se_error"],
                        marker="o", ms=4, lw=1.5 if method == "MinNorm-OG" else 1, capsize=2, color=COLORS[method],
                        label=method, zorder=3 if method == "MinNorm-OG" else 2)
        ax.errorbar([gt["quality"]], [gt["error"]], xerr=[gt["quality_se"]], yerr=[gt["error_se"]], marker="s",
                    color="k", ms=7, capsize=2, ls="none", label="GT")
        ax.plot([1], [0], marker="*", color="gold", mec="k", ms=15, ls="none", label="ideal (1, 0)")
        ax.set_xlabel("retain quality (gray accuracy) →")
        ax.set_ylabel("← forget-quality error")
        ax.set_title(f"Figure {setting.figure}: {setting.label()}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure


def claims(panels: list[tuple[Setting, pd.DataFrame, dict]]) -> list[tuple[str, bool, str]]:
    """Per panel: MinNorm-OG's frontier comes closest to (1, 0); Retrain's lowest forget error
    is near 0 at near-chance accuracy (thresholds in paper_tables/label_erasure.json)."""
    limits, out = SETTINGS["claims"], []
    for setting, points, gt in panels:
        front = points[points["frontier"]]
        closest = front.groupby("method")["distance"].min().sort_values()
        if "MinNorm-OG" in closest and len(closest) > 1:
            out.append((f"Figure {setting.figure}: MinNorm-OG's frontier is closest to (1, 0)",
                        closest.index[0] == "MinNorm-OG",
                        ", ".join(f"{m} {d:.3f}" for m, d in closest.items())))
        retrain = front[front["method"] == "Retrain"].sort_values("mean_error")
        if len(retrain):
            best = retrain.iloc[0]
            chance = 1 / gt["classes"]
            ok = best["mean_error"] < limits["forget_error"] and best["mean_quality"] < limits["accuracy_over_chance"] * chance
            out.append((f"Figure {setting.figure}: Retrain erases (error < {limits['forget_error']}) at near-chance "
                        f"accuracy (< {limits['accuracy_over_chance']:g}× chance)", bool(ok),
                        f"error {best['mean_error']:.3f}, accuracy {best['mean_quality']:.3f} (chance {chance:.3f})"))
    return out


def main(argv=None) -> int:
    cfg, profile = parse_config(Config, PROFILES, __doc__.split("\n")[0], argv)
    name = f"figure{cfg.figure}"
    out = RESULTS / name / (profile + variant(cfg, PROFILES[profile]))
    panels, initials = [], {}
    with from_config(cfg, gpu=device(cfg).type == "cuda") as executor:
        for figure in figure_settings(cfg):
            setting = Setting(cfg, figure)
            print(f"Figure {figure} · profile {profile} · {setting.label()} · {cfg.trials} trials · device {device(cfg)}"
                  f" · grid: {setting.grid_source} · BatchNorm statistics: {cfg.bn_stats} batches · training in "
                  f"{cfg.precision}")
            points, gt, initial = run_setting(cfg, profile, setting, executor)
            print(f"Figure {figure}: initial models {initial['quality']:.3f} ± {initial['quality_se']:.3f} retain "
                  f"quality at forget error {initial['error']:.3f} ± {initial['error_se']:.3f}; GT models "
                  f"{gt['quality']:.3f} ± {gt['quality_se']:.3f} at {gt['error']:.3f} ± {gt['error_se']:.3f}")
            panels.append((setting, points, gt))
            initials[figure] = initial
    checks = claims(panels)
    out.mkdir(parents=True, exist_ok=True)
    pd.concat([p for _, p, _ in panels], ignore_index=True).to_csv(out / f"{name}.csv", index=False)
    fig = plot(panels, f"Label Erasure, profile {profile}")
    for suffix in ("png", "pdf"):
        fig.savefig(out / f"{name}.{suffix}", dpi=150, bbox_inches="tight")
    text = claims_markdown(checks)
    write_text(out / "claims.md", text + "\n")
    write_claims(out, checks)
    write_json(out / "config.json", {"profile": profile, "config": cfg, "gt": {s.figure: g for s, _, g in panels},
                                     "initial": initials, "grids": {s.figure: s.grid_source for s, _, _ in panels},
                                     "provenance": provenance()})
    print(text + f"\nwrote {out}/{name}.png/.pdf/.csv")
    failed = sum(not ok for _, ok, _ in checks)
    if failed and cfg.enforce:
        print(f"{failed} claim(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # The importable module's main, not __main__'s: Ray's workers then find this script's
    # functions and Config by module name (pickled by reference, not by value).
    from artifact.figure2_label_erasure import main as importable_main
    sys.exit(cli(importable_main))
