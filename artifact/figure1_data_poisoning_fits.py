"""Figures 1, 3, 4, 5: the Data Poisoning fits of every method on one trial.

    make figure1        # T = 100 (Figure 4 is the same figure in the appendix)
    make figure3        # T = 10
    make figure5        # T = 1000

For one trial: the retain points, the poisoned forget points, sin(x), the poisoned model θ*
and each method's unlearned fit over [-5π, 5π], each method with the configuration Table 5
selected for this T. Table 5 (`make table5`, which `make figure1` runs first when its results
are missing) stores these fits, re-run from θ* on all its trials and checked against its
records (results/table5/<profile>/fits.npz); this script plots them.

Runtime: seconds once Table 5 exists. Expected: MinNorm-OG's fit ignores the forget points and
follows sin(x) where the retain points constrain it; GD keeps the poisoned bumps; GA's fit
blows up. Writes results/<name>/<profile>/: <name>.png, <name>.pdf, <name>.csv (every
plotted curve), config.json.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mnog.config import PROFILES as PROFILE_NAMES, field, parse_config  # noqa: E402
from mnog.datasets import SinePoisoning  # noqa: E402
from mnog.errors import UserError  # noqa: E402
from mnog.experiment import script_main  # noqa: E402
from mnog.methods import paper_methods  # noqa: E402
from mnog.plan import Work  # noqa: E402
from mnog.results import RESULTS, provenance, write_json  # noqa: E402


@dataclass(frozen=True)
class Config:
    epochs: int = field(100, "unlearning budget T shown", choices=(10, 100, 1000))
    trial: int = field(1, "the trial (seed) drawn")
    name: str = field("figure1", "output name: figure1, figure3, figure4 or figure5",
                      choices=("figure1", "figure3", "figure4", "figure5"))


PROFILES = {profile: Config() for profile in PROFILE_NAMES}   # the profile names Table 5's results by


def plan(cfg: Config) -> Work:
    """Nothing to train or run (mnog.plan): it plots what Table 5 stored."""
    return Work(note="plots Table 5's stored fits: seconds")


def main(argv=None) -> int:
    cfg, profile = parse_config(Config, PROFILES, __doc__.split("\n")[0], argv, sweeps=False)
    table5 = RESULTS / "table5" / profile
    if not (table5 / "fits.npz").is_file():
        raise UserError(f"no Table 5 fits at profile {profile} ({table5 / 'fits.npz'}): run `make table5 "
                        f"PROFILE={profile}` first")
    stored = np.load(table5 / "fits.npz")
    seeds = stored["seeds"].tolist()
    if cfg.trial not in seeds:
        raise UserError(f"Table 5 at profile {profile} has trials {seeds}, not {cfg.trial}")
    member = seeds.index(cfg.trial)
    methods = [m for m in paper_methods(classifier=False) if f"T{cfg.epochs}/{m}" in stored]
    if not methods:
        budgets = sorted({int(k.split("/")[0][1:]) for k in stored.files if k.startswith("T")})
        raise UserError(f"Table 5 at profile {profile} ran T ∈ {budgets}, not T = {cfg.epochs}")
    curves = {"x": stored["x"], "sin": stored["sin"], "poisoned": stored["poisoned"][member],
              **{m: stored[f"T{cfg.epochs}/{m}"][member] for m in methods}}
    errors = {m: float(stored[f"T{cfg.epochs}/{m}:sup_error"][member]) for m in methods}
    best = pd.read_csv(table5 / "table5.csv")
    configs = {r["method"]: json.loads(r["config"]) for _, r in best[best["epochs"] == cfg.epochs].iterrows()}

    out = RESULTS / cfg.name / profile
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(curves).to_csv(out / f"{cfg.name}.csv", index=False)
    figure = plot(curves, errors, cfg)
    for suffix in ("png", "pdf"):
        figure.savefig(out / f"{cfg.name}.{suffix}", dpi=150, bbox_inches="tight")
    write_json(out / "config.json", {"profile": profile, "config": cfg,
                                     "table5": json.loads((table5 / "config.json").read_text())["config"],
                                     "configurations": {m: configs.get(m) for m in methods},
                                     "sup_error": errors, "provenance": provenance()})
    print(f"{cfg.name} (T = {cfg.epochs}, trial {cfg.trial}): " +
          ", ".join(f"{m} {e:.3g}" for m, e in errors.items()) + f"\nwrote {out}/{cfg.name}.png/.pdf/.csv")
    return 0


def plot(curves: dict, errors: dict, cfg: Config):
    (x_r, y_r), (x_f, y_f) = SinePoisoning().sample(cfg.trial)
    methods = list(errors)
    cols = 4
    rows = -(-len(methods) // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), sharex=True, sharey=True,
                                squeeze=False)
    for ax, method in zip(axes.flat, methods):
        ax.plot(curves["x"], curves["sin"], "k--", lw=1, label="sin(x)")
        ax.plot(curves["x"], curves["poisoned"], color="0.6", lw=1, label="poisoned θ*")
        ax.plot(curves["x"], curves[method], color="tab:blue", lw=1.6, label="unlearned")
        ax.scatter(x_r, y_r, s=9, color="k", zorder=3, label="retain")
        ax.scatter(x_f, y_f, s=28, marker="x", color="tab:red", zorder=3, label="forget")
        ax.set_title(f"{method}  (sup err {errors[method]:.3g})", fontsize=9)
        ax.set_ylim(-3, 3)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.suptitle(f"Data Poisoning, T = {cfg.epochs}, trial {cfg.trial}", fontsize=11)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    return figure


if __name__ == "__main__":
    script_main(__spec__)
