"""Figures 1, 3, 4, 5: the Data Poisoning fits of every method on one trial.

    make figure1        # T = 100 (Figure 4 is the same figure in the appendix)
    make figure3        # T = 10
    make figure5        # T = 1000

For one trial: the retain points, the poisoned forget points, sin(x), the poisoned model θ*
and each method's unlearned fit over [-5π, 5π], each method with the configuration Table 5
selected for this T. The fits are recomputed from θ* with that configuration on the same
ensemble of trials as the sweep, and their sup errors are checked against the stored
records. Uses the Table 5 sweep of the same profile (running whatever part is missing).

Runtime on the 2-core development CPU once Table 5 exists: ≈ 10 s (T = 10, 100), ≈ 1 min
(T = 1000). Expected: MinNorm-OG's fit ignores the forget points and follows sin(x) where
the retain points constrain it; GD keeps the poisoned bumps; GA's fit blows up.
Writes results/<name>/<profile>/: <name>.png, <name>.pdf, <name>.csv (every plotted curve).
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from artifact import table5_data_poisoning as table5  # noqa: E402
from mnog.config import field, parse_config  # noqa: E402
from mnog.errors import cli  # noqa: E402
from mnog.metrics import sup_error  # noqa: E402
from mnog.results import RESULTS, provenance, write_json  # noqa: E402
from mnog.sweep import Job, select_best, summarize  # noqa: E402


@dataclass(frozen=True)
class Config:
    epochs: int = field(100, "unlearning budget T shown", choices=(10, 100, 1000))
    trial: int = field(1, "the trial (seed) drawn")
    name: str = field("figure1", "output name: figure1, figure3, figure4 or figure5",
                      choices=("figure1", "figure3", "figure4", "figure5"))


PROFILES = {profile: Config() for profile in table5.PROFILES}


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run the block with `count` torch threads (None: unchanged)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def main(argv=None) -> int:
    cfg, profile = parse_config(Config, PROFILES, __doc__.split("\n")[0], argv)
    t5 = table5.PROFILES[profile]
    if cfg.epochs not in t5.budgets:
        sys.exit(f"profile {profile} runs Table 5 for T ∈ {t5.budgets}, not T = {cfg.epochs}")
    if cfg.trial not in table5.seeds(t5):
        sys.exit(f"profile {profile} has trials {table5.seeds(t5)}, not {cfg.trial}")
    out = RESULTS / cfg.name / profile

    poisoned, records = table5.sweep(t5, profile)
    best = select_best(summarize(records, "sup_error"), n=t5.trials)
    best = best[best["epochs"] == cfg.epochs].set_index("method")
    configs = {m: json.loads(best.loc[m, "config"]) for m in table5.METHODS if m in best.index}
    stored = {r["method"]: r for r in records if r["epochs"] == cfg.epochs and r["trial"] == cfg.trial
              and r["metrics"] and r["config"] == configs.get(r["method"])}
    recorded = {m: r["metrics"]["sup_error"] for m, r in stored.items()}

    x = table5.PROBLEM.test_grid(t5.test_points)
    member = table5.seeds(t5).index(cfg.trial)
    curves = {"x": x.squeeze(1), "sin": torch.sin(x).squeeze(1),
              "poisoned": _fit(poisoned, member, x)}
    errors = {}
    for method, config in configs.items():
        # The float sums, and so the last digits, depend on the thread count: refit with the
        # record's (a sweep worker may have used fewer threads than this process has).
        threads = stored[method]["provenance"].get("threads") if method in stored else None
        with torch_threads(threads):
            model = table5.unlearn(t5, poisoned, Job.of(method, cfg.epochs, config), table5.seeds(t5))
        curves[method] = _fit(model, member, x)
        errors[method] = float(sup_error(model, x)[member])
        if method in recorded and not math.isclose(errors[method], recorded[method], rel_tol=1e-4):
            print(f"warning: {method}: recomputed sup error {errors[method]:.6g} differs from the stored "
                  f"{recorded[method]:.6g} (records from another machine or code version?)", file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({k: v.numpy() for k, v in curves.items()}).to_csv(out / f"{cfg.name}.csv", index=False)
    figure = plot(curves, errors, cfg, t5)
    for suffix in ("png", "pdf"):
        figure.savefig(out / f"{cfg.name}.{suffix}", dpi=150, bbox_inches="tight")
    write_json(out / "config.json", {"profile": profile, "config": cfg, "table5": t5,
                                     "configurations": configs,
                                     "sup_error": errors, "provenance": provenance()})
    print(f"{cfg.name} (T = {cfg.epochs}, trial {cfg.trial}): " +
          ", ".join(f"{m} {e:.3g}" for m, e in errors.items()) + f"\nwrote {out}/{cfg.name}.png/.pdf/.csv")
    return 0


@torch.no_grad()
def _fit(model, member: int, x: torch.Tensor) -> torch.Tensor:
    return model.member(member).eval()(x).squeeze(1)


def plot(curves: dict, errors: dict, cfg: Config, t5: table5.Config):
    (x_r, y_r), (x_f, y_f) = table5.PROBLEM.sample(cfg.trial)
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
    sys.exit(cli(main))
