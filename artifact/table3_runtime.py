"""Table 3: seconds per unlearning epoch of every method.

    make table3                       # paper profile: Label Erasure on Tiny ImageNet, ResNet-50 (GPU)
    PROFILE=cpu make table3           # Figure 7's setting at the cpu profile: 1,000 CIFAR-10 images, width 8

Protocol (docs/protocol.md#runtime, and the authors' timer): the setting of Figure 7 (p_color 0.01,
p_retain 0.01); every method runs one unlearning epoch from each trial's initial model with
one fixed configuration (η 1e-5, σ 0.1, λ_reg 0.1, γ_reg 0.3, λ_GA 1e-3, T_GD 0, T_proj 1,
n_pert 50) after an untimed warm-up run, CUDA synchronized around the timed region; the
table reports the mean over the trials and its ratio to GD's. Absolute times depend on the
machine; the paper's ratio MinNorm-OG / GD is 0.78 / 0.67 ≈ 1.16 (target here: ≤ 1.16 at the
paper profile, ≤ 1.5 at the cpu profile).

What the paper's row measures: MinNorm-OG's subsample B'_r takes n_pert // (classes in the
retain batch) images of every class (docs/protocol.md#minnorm-og). On Tiny ImageNet a batch of
512 holds ~185 of the 200 classes, so 50 // 185 = 0: B'_r is empty, G has no rows, and each
projection only scales θ by 1 − s. The main MinNorm-OG row keeps that regime (cpu: a batch of 5
holds 2-5 classes, so n_pert 1 gives 1 // (classes) = 0). The rows "MinNorm-OG, n_pert N" time
the projection onto a non-empty span (paper: 400, two images per class; cpu: 50, the whole
batch), with BatchNorm in train mode (the authors' code: each row of G is a backward pass
through the whole subsample) and in eval mode (per-sample gradients, bn_mode="eval").
Every row is timed with two timers: ours (cuDNN benchmark on, each step forwards only the
batches its loss uses, fused AdamW) and the authors' (cuDNN deterministic with benchmark off,
every step forwards the retain and the forget batch, PyTorch's default AdamW kernel;
docs/authors-code.md#table-3s-timer). Runtime: paper profile a GPU (never run); cpu seconds on
Figure 6's cached models. Measured results: docs/results/runtime.md. Uses the initial models of
`make figure7` at the same profile (mnog.erasure: the same cache
entries; trained here first if missing).
Writes results/table3/<profile>/: table3.md, table3.csv, claims.json, config.json.
"""
from __future__ import annotations

import copy
import sys
import time
import warnings
from dataclasses import dataclass, replace

import pandas as pd
import torch
from tabulate import tabulate

import mnog
from mnog import erasure
from mnog.compare import load_paper_table, write_claims
from mnog.config import field, parse_config
from mnog.experiment import prepared, script_main
from mnog.plan import Cost, Work
from mnog.results import RESULTS, device_name, provenance, write_json, write_text

# The authors' timer: one configuration for every method.
HYPERPARAMETERS = dict(eta=1e-5, sigma=0.1, lambda_reg=0.1, gamma_reg=0.3, lambda_ga=1e-3, t_gd=0, t_proj=1, n_pert=50)


@dataclass(frozen=True)
class Config:
    figure: str = field("7", "the Label Erasure setting timed (Table 3: Figure 7's)",
                        choices=tuple(erasure.SETTINGS["settings"]))
    erasure_profile: str = field("paper", "the figure profile whose initial models are timed",
                                 choices=tuple(erasure.PROFILES))
    dataset: str = field("", "replace the figure profile's data set (e.g. folder:PATH; empty: the profile's)",
                         dataset=True)
    trials: int = field(0, "trials timed, the figure profile's first ones (0: all of the figure profile's)",
                        minimum=0)
    target: float = field(1.16, "MinNorm-OG / GD ratio to meet", above=0)
    n_pert: int = field(50, "MinNorm-OG's n_pert in its main row (the authors' timer: 50)", minimum=1)
    span_n_pert: int = field(400, "n_pert of the extra MinNorm-OG rows, whose subsample is not empty (0: no such rows)",
                             minimum=0)
    enforce: bool = field(True, "exit 1 when MinNorm-OG / GD exceeds the target")


PROFILES = {
    "paper": Config(),
    # The figure profile's batches of 5 hold 2-5 classes: n_pert 1 keeps the paper's empty
    # subsample (1 // 2 = 0, as 50 // ~185 on Tiny ImageNet); 50 takes the whole batch.
    "cpu": Config(erasure_profile="cpu", target=1.5, n_pert=1, span_n_pert=50, enforce=False),
    "smoke": Config(erasure_profile="smoke", target=1.5, n_pert=5, span_n_pert=10, enforce=False),
}


def variants(cfg: Config) -> list[tuple[str, str, dict]]:
    """(row label, method, hyperparameters besides the timer's) of every timed row."""
    rows = [(m, m, {"n_pert": cfg.n_pert} if m == "MinNorm-OG" else {}) for m in erasure.METHODS]
    if cfg.span_n_pert:
        rows += [(f"MinNorm-OG, n_pert {cfg.span_n_pert}", "MinNorm-OG", {"n_pert": cfg.span_n_pert}),
                 (f"MinNorm-OG, n_pert {cfg.span_n_pert}, eval BN", "MinNorm-OG",
                  {"n_pert": cfg.span_n_pert, "bn_mode": "eval"})]
    return rows


def per_class(n_pert: int, labels: torch.Tensor, batch_size: int) -> int:
    """n_pert // (classes in a retain batch): MinNorm-OG's subsample size per class (docs/protocol.md#minnorm-og)."""
    batch = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:batch_size]]
    return n_pert // len(batch.unique())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# The two timers (docs/authors-code.md#table-3s-timer). "ours": cuDNN picks its fastest kernels (benchmark on) and a
# step forwards only the batches its method's loss uses, so each row is the method's own
# cost. "authors": the authors' timer, whose set_seed turns cuDNN's deterministic kernels on
# and benchmark off for every run, whose loop forwards the retain and the forget batch at
# every step (bn_stats="both", docs/authors-code.md#batchnorm-sees-both-batches), and whose
# AdamW runs PyTorch's default kernel (ours: fused). cuDNN's flags do nothing on a CPU.
MODES = {"ours": {"deterministic": False, "benchmark": True, "bn_stats": "loss", "adamw": "fused"},
         "authors": {"deterministic": True, "benchmark": False, "bn_stats": "both", "adamw": "default"}}


def timed_experiment(cfg: Config) -> erasure.LabelErasure:
    """Figure 7's experiment at the figure profile (its cached models are Figure 7's: the same
    cache entries), on cfg.dataset where one is given."""
    figure_cfg = replace(erasure.PROFILES[cfg.erasure_profile], figure=cfg.figure,
                         **({"dataset": cfg.dataset} if cfg.dataset else {}),
                         **({"trials": cfg.trials} if cfg.trials else {}))
    return erasure.LabelErasure(figure_cfg, cfg.figure)


def plan(cfg: Config) -> Work:
    """What `main` prepares and times (mnog.plan): Figure 7's models at the figure profile, then
    every row's epochs (a warm-up and one per trial) under both timers."""
    experiment = timed_experiment(cfg)
    rows = tuple((label, method, tuple(sorted(options.items()))) for label, method, options in variants(cfg))
    epochs = (experiment.cfg.trials + 1) * len(MODES)
    timed = Cost(experiment.recipe(rows, bn_stats="both"),
                 tuple((label, epochs * experiment.steps_per_epoch()) for label, _, _ in rows),
                 runs=tuple((label, epochs) for label, _, _ in rows))
    return Work(models=(experiment,), extra=(timed,), note="its steps timed as the authors' timer's")


def main(argv=None) -> int:
    cfg, profile = parse_config(Config, PROFILES, __doc__.split("\n")[0], argv, sweeps=False)
    experiment = timed_experiment(cfg)           # Figure 7's models, trained here first if `make figure7` has not run
    setting, dev = experiment.panel, experiment.device()
    print(f"Table 3 · profile {profile} · Figure {cfg.figure}'s setting ({setting.label()}) · {device_name()}")
    trials = list(prepared(experiment).trials.values())

    def one_epoch(method: str, options: dict, trial, timer: dict) -> float:
        hp = {k: v for k, v in {**HYPERPARAMETERS, **options}.items() if k in mnog.METHODS[method].hyperparameters()}
        model = copy.deepcopy(trial.initial)
        sync(dev)
        start = time.perf_counter()
        mnog.unlearn(model, method, forget=trial.forget, retain=trial.retain, loss=experiment.task, epochs=1,
                     batch_size=setting.batch_size, p_retain=setting.p_retain, bn_stats=timer["bn_stats"],
                     adamw=timer["adamw"], **hp)
        sync(dev)
        return time.perf_counter() - start

    retain_labels = trials[0].retain.targets()[0]                             # D_r's class labels
    rows = {label: {"method": label, "trials": len(trials),
                    "subsample_per_class": per_class(options["n_pert"], retain_labels, setting.batch_size)
                    if "n_pert" in options else None} for label, _, options in variants(cfg)}
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        for mode, timer in MODES.items():
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = timer["deterministic"], timer["benchmark"]
            for label, method, options in variants(cfg):
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "MinNorm-OG: n_pert")      # the empty subsample, reported below
                    one_epoch(method, options, trials[0], timer)    # warm-up, not timed
                    seconds = [one_epoch(method, options, trial, timer) for trial in trials]
                rows[label][f"{mode}_seconds"] = sum(seconds) / len(seconds)
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    table = pd.DataFrame(rows.values())
    for mode in MODES:
        gd = table.loc[table["method"] == "GD", f"{mode}_seconds"].item()
        table[f"{mode}_ratio_to_gd"] = table[f"{mode}_seconds"] / gd
    paper = load_paper_table("table3")
    paper["paper_ratio_to_gd"] = paper["seconds"] / paper.loc[paper["method"] == "GD", "seconds"].item()
    table = table.merge(paper.rename(columns={"seconds": "paper_seconds"}), on="method", how="left")
    minnorm = table.loc[table["method"] == "MinNorm-OG"].iloc[0]
    checks = [(f"MinNorm-OG / GD ≤ {cfg.target:g}", minnorm["ours_ratio_to_gd"] <= cfg.target,
               f"{minnorm['ours_ratio_to_gd']:.2f}"),
              (f"MinNorm-OG / GD ≤ {cfg.target:g} (the authors' timer)", minnorm["authors_ratio_to_gd"] <= cfg.target,
               f"{minnorm['authors_ratio_to_gd']:.2f}")]

    out = RESULTS / "table3" / profile
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table3.csv", index=False)
    dash = lambda v, fmt: "—" if pd.isna(v) else format(v, fmt)  # noqa: E731
    text = "\n\n".join([
        f"# Table 3 (seconds per unlearning epoch), profile {profile}, {device_name()}",
        tabulate([[r["method"], f"{r['ours_seconds']:.3f}", f"{r['ours_ratio_to_gd']:.2f}",
                   f"{r['authors_seconds']:.3f}", f"{r['authors_ratio_to_gd']:.2f}",
                   dash(r["paper_seconds"], ".2f"), dash(r["paper_ratio_to_gd"], ".2f"),
                   "" if pd.isna(r["subsample_per_class"]) else int(r["subsample_per_class"])]
                  for _, r in table.iterrows()],
                 headers=["method", "ours, s", "ours ÷ GD", "authors' timer, s", "authors' timer ÷ GD", "paper, s",
                          "paper ÷ GD", "B'_r per class"], tablefmt="github"),
        "ours: cuDNN benchmark on, a step forwards only the batches its loss uses; the authors' timer: cuDNN "
        "deterministic and benchmark off, every step forwards the retain and the forget batch, PyTorch's default "
        "AdamW kernel (docs/authors-code.md#table-3s-timer).",
        tabulate([[text, "✓" if ok else "✗", value] for text, ok, value in checks],
                 headers=["target", "met", "ours"], tablefmt="github")])
    write_text(out / "table3.md", text + "\n")
    write_claims(out, checks)
    write_json(out / "config.json", {"profile": profile, "config": cfg, "figure_profile": experiment.cfg,
                                     "hyperparameters": HYPERPARAMETERS, "timers": MODES, "provenance": provenance()})
    print(text)
    if not all(ok for _, ok, _ in checks) and cfg.enforce:
        print("MinNorm-OG's epoch exceeds the target ratio to GD", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    script_main(__spec__)
