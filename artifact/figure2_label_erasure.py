"""Figure 2 (and Figures 6-14): Multi-Class Label Erasure. Can a model trained on gray and a
few red and green images be made to see every image as gray again?

    make figure2                      # Figure 2: the settings of Figures 6 (CIFAR-10) and 7 (Tiny ImageNet)
    make figure6 ... make figure14    # one setting each
    PROFILE=cpu make figure6          # the paper's regime on 1,000 CIFAR-10 images (CPU; mnog.erasure)
    PROFILE=smoke make figure6        # a synthetic image set, tiny budget (CI)

Protocol (docs/protocol.md#label-erasure; the experiment's data, models and profiles:
mnog.erasure, shared with Table 3). D_r: gray copies of every training image; D_f: a random p_color fraction of the red
copies plus the same fraction of the green copies. Labels: (content class, color ∈ {gray,
red, green}). Per trial, the initial model trains on D_r ∪ D_f and the ground-truth (GT)
model on D_r: CIFAR-10 with ColorResNet-18 (SGD lr 3e-2, 100 epochs, lr × 0.1 at 50), Tiny
ImageNet with ColorResNet-50 from ImageNet weights (augmented; SGD lr 0.1, batch 512, lr ×
0.3 every 25 epochs; the initial model's class loss alone for 10 epochs). Each method
unlearns D_f with a p_retain fraction of D_r for T epochs, sweeping its Table 8-16 grid.
Metrics (eval mode, test set): retain quality = the fraction of gray copies whose class and
color are both right; forget-quality error = mean (1 − p(gray | x))² over the gray, red and
green copies. Per method: the Pareto frontier of its configurations' means over the trials,
with standard-error bars, the GT point and the ideal point (1, 0). Every record also holds the
field's standard metrics per head (class, color; mnog.experiment.field_metrics: forget set D_f,
retain set D_r, test set the gray test copies labelled (class, gray), reference the GT model);
figureN.csv holds their means per configuration, and claims.md shows them for each method's
selected configuration, its frontier point closest to (1, 0) (not compared with the paper,
which has none).

The protocol follows the authors' code (docs/authors-code.md): BatchNorm's statistics see the retain
and the forget batch of every step, D'_r is fixed per trial, float32 training, the authors' SalUn; at
the paper profile also their ℓ1-Sparse schedule, NPO form, per-trial seeding and AdamW kernel (the cpu
and smoke profiles keep --l1-schedule per_epoch --npo-form softplus --seeding job --adamw fused;
measured: docs/authors-code.md#agreement-with-the-authors-loop). Each is a flag (--bn-stats loss,
--precision bfloat16, --grids released, --minnorm-order authors, --minnorm-precision float64,
--salun-mask-loss mean, --salun-unmasked fixed, --l1-schedule, --npo-form, --seeding, --adamw), and a
run that changes one from its profile's value writes to results/figureN/<profile>+<option>=<value>/.

Expected (paper): MinNorm-OG's frontier comes closest to (1, 0) on both data sets; Retrain reaches
near-zero forget error at near-chance accuracy. Runtime: paper profile hours on a GPU per setting
(never run); cpu minutes on a CPU. Measured times and results: the reference runs
(reference/figureN/<profile>/), rendered in docs/results/label-erasure.md. Writes
results/figureN/<profile>/: figureN.png, figureN.pdf, figureN.csv (every configuration's means and
standard errors, frontier flags), claims.md and claims.json, config.json; records in
results/label_erasure/records.jsonl.
"""
from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.stats  # noqa: E402
from tabulate import tabulate  # noqa: E402

from mnog import erasure  # noqa: E402
from mnog.compare import FIELD_NOTE, claims_markdown, field_cell, field_columns, field_header, write_claims  # noqa: E402
from mnog.config import parse_config  # noqa: E402
from mnog.erasure import (FIELD_HEADS, METHODS, PROFILES, SETTINGS, Config, LabelErasure, figures,  # noqa: E402
                          frontier_points, selected, setting_sweep)
from mnog.experiment import prepared, script_main, sweep, training_fit  # noqa: E402
from mnog.executors import ExecutorConfig  # noqa: E402
from mnog.metrics import erasure_metrics  # noqa: E402
from mnog.plan import Work  # noqa: E402
from mnog.results import RESULTS, provenance, write_json, write_text  # noqa: E402
from mnog.sweep import field_means, variant  # noqa: E402


# -- one setting: the reference points, the sweep, the frontiers ----------------------------

def run_setting(experiment: LabelErasure, executor: ExecutorConfig) -> tuple[pd.DataFrame, dict, dict]:
    """Every configuration's mean ± SE of both metrics (with frontier flags), the GT point and
    the initial models' point (what unlearning starts from)."""
    cfg, setting = experiment.cfg, experiment.panel
    state = prepared(experiment)                   # trains every trial's models once (then cached)
    images, labels, classes = state.evaluation

    def point(model_of) -> dict:
        return mean_point([erasure_metrics(model_of(t), images, labels, setting.norm) for t in state.trials.values()],
                          classes)

    gt_point, initial_point = point(lambda t: t.references["gt"]), point(lambda t: t.initial)
    initial_point["fit"] = {name: dict(zip(("class", "color", "both"), fit))
                            for name, fit in training_fit(state).items()}
    planned = setting_sweep(experiment)
    records = sweep(experiment, planned.jobs, executor, desc=planned.desc)
    points = field_means(frontier_points(records, cfg.trials), records)
    return points.assign(figure=setting.figure), gt_point, initial_point


def plan(cfg: Config) -> Work:
    """What `main` trains and runs (mnog.plan): per setting, every trial's models, then its sweep."""
    return erasure.plan(cfg)


def mean_point(per_trial: list[tuple[float, float]], classes: int) -> dict:
    """Mean and standard error over trials of (retain quality, forget error)."""
    values = np.array(per_trial)                                              # (trials, 2)
    se = scipy.stats.sem(values, axis=0) if len(values) > 1 else np.zeros(2)
    return {"quality": float(values[:, 0].mean()), "error": float(values[:, 1].mean()), "quality_se": float(se[0]),
            "error_se": float(se[1]), "classes": classes}


def field_markdown(points: pd.DataFrame) -> str:
    """The selected configurations: the paper's two metrics and the field's beside them."""
    extra = field_columns(points.columns)
    rows = [[f"Figure {r['figure']}", r["method"], f"{r['mean_quality']:.3f}", f"{r['mean_error']:.3f}",
             f"{r['distance']:.3f}", *(field_cell(r[c]) for c in extra)] for _, r in selected(points).iterrows()]
    return tabulate(rows, headers=["setting", "method", "retain quality", "forget error", "distance to (1, 0)",
                                   *(field_header(c, FIELD_HEADS) for c in extra)], tablefmt="github",
                    disable_numparse=True)


# -- plots and claims -------------------------------------------------------------------------

COLORS = dict(zip(METHODS, plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]))


def plot(panels: list, title: str):
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


def claims(panels: list) -> list[tuple[str, bool, str]]:
    """Per panel: MinNorm-OG's frontier comes closest to (1, 0); Retrain's lowest forget error
    is near 0 at near-chance accuracy (thresholds in paper_tables/label_erasure.json)."""
    limits, out = SETTINGS["claims"], []
    for setting, points, gt in panels:
        front = points[points["frontier"]]
        closest = front.groupby("method")["distance"].min().sort_values()
        if "MinNorm-OG" in closest and len(closest) > 1:
            unlearners = [m for m in closest.index if m != "Retrain"]
            out.append((f"Figure {setting.figure}: MinNorm-OG's frontier is closest to (1, 0)",
                        closest.index[0] == "MinNorm-OG",
                        f"rank {unlearners.index('MinNorm-OG') + 1} of {len(unlearners)} unlearning methods; "
                        + ", ".join(f"{m} {d:.3f}" for m, d in closest.items())))
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
    cfg, profile, executor = parse_config(Config, PROFILES, __doc__.split("\n")[0], argv)
    name = f"figure{cfg.figure}"
    out = RESULTS / name / (profile + variant(cfg, PROFILES[profile]))
    panels, initials = [], {}
    for figure in figures(cfg):
        experiment = LabelErasure(cfg, figure)
        setting = experiment.panel
        print(f"Figure {figure} · profile {profile} · {setting.label()} · {cfg.trials} trials · device "
              f"{experiment.device()} · grid: {setting.grid_source} · BatchNorm statistics: {cfg.bn_stats} batches · "
              f"training in {cfg.precision} · seeding per {cfg.seeding} · AdamW {cfg.adamw}")
        points, gt, initial = run_setting(experiment, executor)
        print(f"Figure {figure}: initial models {initial['quality']:.3f} ± {initial['quality_se']:.3f} retain "
              f"quality at forget error {initial['error']:.3f} ± {initial['error_se']:.3f}; GT models "
              f"{gt['quality']:.3f} ± {gt['quality_se']:.3f} at {gt['error']:.3f} ± {gt['error_se']:.3f}")
        print(f"Figure {figure}: train accuracy (class, color, both; lowest over trials): " + "; ".join(
            f"{name} {fit['class']:.3f}/{fit['color']:.3f}/{fit['both']:.3f}" for name, fit in initial["fit"].items()))
        panels.append((setting, points, gt))
        initials[figure] = initial
    checks = claims(panels)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.concat([p for _, p, _ in panels], ignore_index=True)
    table.to_csv(out / f"{name}.csv", index=False)
    fig = plot(panels, f"Label Erasure, profile {profile}")
    for suffix in ("png", "pdf"):
        fig.savefig(out / f"{name}.{suffix}", dpi=150, bbox_inches="tight")
    text = claims_markdown(checks)
    write_text(out / "claims.md", "\n\n".join([text, "Each method's frontier point closest to (1, 0). " + FIELD_NOTE,
                                               field_markdown(table)]) + "\n")
    write_claims(out, checks)
    write_json(out / "config.json", {"profile": profile, "config": cfg, "field_heads": FIELD_HEADS,
                                     "gt": {s.figure: g for s, _, g in panels},
                                     "initial": initials, "grids": {s.figure: s.grid_source for s, _, _ in panels},
                                     "provenance": provenance()})
    print(text + "\n\n" + field_markdown(table) + f"\nwrote {out}/{name}.png/.pdf/.csv")
    failed = sum(not ok for _, ok, _ in checks)
    if failed and cfg.enforce:
        print(f"{failed} claim(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    script_main(__spec__)
