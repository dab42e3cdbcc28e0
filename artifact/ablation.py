"""Ablation: what does the work in MinNorm-OG? The projection, the shrinkage and BatchNorm,
separated on every experiment.

    make ablation                     # PROFILE=cpu: Table 5 at the paper's protocol, Figures 6, 8, 9 and Table 2 at cpu
    PROFILE=smoke make ablation       # the same pipeline on tiny settings (CI)

MinNorm-OG's projection step θ ← θ − s·P_{G⊥}(θ) = (1 − s)·θ + s·P_G(θ) shrinks θ toward 0 and
adds back s times the part of θ inside the span of the retain output gradients G
(docs/protocol.md#minnorm-og).
Variants of the one method (mnog.methods.MinNormOGConfig, as --minnorm-span and
--minnorm-scope of every experiment script; declared in mnog.ablation) take it apart:

* span none: G is empty, so each projection step is θ ← (1 − s)·θ on the same schedule
  s = λ_reg·γ_reg^j, and the rest of the step is unchanged: GD plus a scheduled shrinkage.
  It is also AdamW's decoupled weight decay at strength s_j/η on the projection steps, up to
  whether the step's gradient is taken before or after the shrinkage (an O(s·η) difference),
  so no separate decoupled-decay baseline is registered.
* span none, γ_reg 1: the same at a constant strength s = λ_reg (γ_reg's axis dropped from the
  grid): a constant decoupled weight decay on the projecting steps, "a tuned weight decay".
* scope heads: the projection acts on the output layers alone (the Data Poisoning MLP's last
  Linear layer, ColorResNet's heads): Theorem 2's linear projection on fixed features.
* scope body: the projection acts on everything but the heads and BatchNorm's scales and
  shifts. In a BatchNorm network the convolutions before a BatchNorm are scale-invariant,
  so a shrinkage of the body changes the eval-mode function only through the running
  statistics, while the heads' shrinkage scales the logits directly.

Beside them GD and Ridge (Ridge's penalty passes through Adam's normalization, MinNorm-OG's
shrinkage does not), and on the image experiments GD and MinNorm-OG with BatchNorm's running
statistics moved by the loss's batches only (bn_stats loss; the experiments follow the
authors' loop, which forwards the forget batch too). Every variant is tuned over its
experiment's grid with its experiment's selection rule: Table 5 the best median over the 10
trials (central range), Label Erasure each frontier's point closest to (1, 0) (mean ±
standard error over the trials), Table 2 the best mean (± standard error). Every variant's
records go to its experiment's own store (results/table5/records.jsonl, ...), keyed by the
variant's options: MinNorm-OG, GD and Ridge reuse what the experiments stored, and a variant
never takes MinNorm-OG's keys. Each projecting variant's selected configuration is then run
once more on every trial to trace ‖P_G θ‖/‖θ‖ at each projection (mnog.methods.ProjectionStep).

Profiles: paper (every variant on Table 5 at the paper's protocol and on the image experiments
at their paper profiles, a GPU: not run yet); cpu (Table 5 at the paper's protocol, Figures 6,
8, 9 and Table 2's row at their cpu profiles, from the models and records those targets
cached; with the JPEG archive: --dataset folder:PATH), about half an hour on a 2-core CPU:
Table 5's variants at T = 10 and 100, on the image experiments the variants that cost a GD
run (mnog.ablation.PROFILES says which and why); smoke (tiny settings, seconds). Runtime and
results: docs/results/ablation.md.
Writes results/ablation/<profile>/: ablation.md (one table per experiment), ablation.csv,
shares.csv, ablation.png and .pdf (the shares over the unlearning steps), config.json.
"""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mnog import ablation, erasure  # noqa: E402
from mnog.ablation import PROFILES, TITLES, VARIANTS, Config, experiment_config, markdown, parts  # noqa: E402
from mnog.config import parse_config  # noqa: E402
from mnog.experiment import prepared, script_main, sweep  # noqa: E402
from mnog.plan import Work  # noqa: E402
from mnog.results import RESULTS, provenance, write_json, write_text  # noqa: E402
from mnog.sweep import Job, select_best, summarize  # noqa: E402


def plan(cfg: Config) -> Work:
    """What `main` trains and runs (mnog.plan): one sweep per setting (the traces' re-runs aside)."""
    return ablation.plan(cfg)


# -- selection: each experiment's own rule ----------------------------------------------------------

def setting_of(experiment, epochs: int) -> str:
    """A sweep's row label: Table 5's T, Label Erasure's figure, Table 2's p_retain and T."""
    if experiment.store == "label_erasure":
        return f"Figure {experiment.figure}"
    if experiment.store == "table2":
        return f"p_retain {experiment.p_retain:g}, T = {epochs}"
    return f"T = {epochs}"


def selected(experiment, records: list[dict], variant: str) -> list[dict]:
    """A variant's selected configuration(s) from its records on one setting, as rows (one per
    metric): Table 5 the best median (central range), Table 2 the best mean (± SE), Label
    Erasure the frontier point closest to (1, 0) (its means ± SE, and its distance)."""
    records = [{**r, "method": variant} for r in records]
    trials = experiment.cfg.trials
    rows = []
    if experiment.store == "label_erasure":
        points = erasure.frontier_points(records, trials, order=(variant,))
        for _, best in erasure.selected(points.assign(figure=experiment.figure)).iterrows():
            common = {"setting": setting_of(experiment, best["epochs"]), "epochs": best["epochs"],
                      "config": best["config"], "n": best["n"]}
            rows += [{**common, "metric": metric, "stat": "mean", "center": best[f"mean_{part}"],
                      "se": best[f"se_{part}"]} for metric, part in (("retain_quality", "quality"),
                                                                       ("forget_error", "error"))]
            rows.append({**common, "metric": "distance", "stat": "value", "center": best["distance"]})
        return rows
    metric = experiment.metrics[0]
    higher = experiment.store == "table2"
    by = "mean" if higher else "median"
    for _, best in select_best(summarize(records, metric, higher), trials, by=by, higher_is_better=higher).iterrows():
        spread = {"se": best["se"]} if higher else {"low": best["low"], "high": best["high"]}
        rows.append({"setting": setting_of(experiment, best["epochs"]), "epochs": best["epochs"], "config": best["config"],
                     "n": best["n"], "metric": metric, "stat": by, "center": best[by], **spread})
    return rows


# -- the projections' trace ------------------------------------------------------------------------

def shares(experiment, job: Job) -> list[dict]:
    """‖P_G θ‖/‖θ‖ at every projection of `job` on every trial (θ: the parameters the step acts on)."""
    state = prepared(experiment)
    if hasattr(experiment, "unlearned_ensemble"):               # Table 5: the trials as one Ensemble
        seeds = experiment.seeds()
        _, result = experiment.unlearned_ensemble(state, job, seeds)
        traces = [(seed, [float(p.span_share[i]) for p in result.projections]) for i, seed in enumerate(seeds)]
        steps = [p.step for p in result.projections]
    else:
        traces, steps = [], []
        for seed, trial in state.trials.items():
            _, result = experiment.unlearned(job, trial)
            traces.append((seed, [float(p.span_share) for p in result.projections]))
            steps = [p.step for p in result.projections]
    return [{"trial": seed, "projection": j, "step": step, "span_share": share}
            for seed, values in traces for j, (step, share) in enumerate(zip(steps, values))]


# -- the figure ---------------------------------------------------------------------------------------

def plot(trace: pd.DataFrame, title: str):
    panels = list(dict.fromkeys(zip(trace["experiment"], trace["setting"])))
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False)
    colors = dict(zip(VARIANTS, plt.get_cmap("tab10").colors))
    for ax, (experiment, setting) in zip(axes.flat, panels):
        part = trace[(trace["experiment"] == experiment) & (trace["setting"] == setting)]
        for variant, group in part.groupby("variant", sort=False):
            by_step = group.groupby("step")["span_share"]
            steps = np.array(sorted(group["step"].unique()))
            ax.plot(steps, by_step.mean().reindex(steps), marker=".", lw=1, color=colors.get(variant), label=variant)
            ax.fill_between(steps, by_step.min().reindex(steps), by_step.max().reindex(steps), alpha=0.2,
                            color=colors.get(variant), lw=0)
        ax.set_title(f"{TITLES.get(experiment, experiment)}: {setting}", fontsize=8)
        ax.set_xlabel("unlearning step")
        ax.set_ylabel("‖P_G θ‖ / ‖θ‖")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


CAPTION = ("The share of θ inside the span of the retain output gradients, ‖P_G θ‖/‖θ‖, at every projection step "
           "of each projecting variant's selected configuration (mean over the trials, band: lowest to highest); θ "
           "is the part of the model the step acts on (its scope). A projection step keeps that share and shrinks "
           "the rest by 1 − s: near 0 it is a uniform shrinkage, θ ← (1 − s)·θ, as span none is by construction.")


def main(argv=None) -> int:
    cfg, profile, executor = parse_config(Config, PROFILES, __doc__.split("\n")[0], argv)
    out = RESULTS / "ablation" / profile
    print(f"Ablation · profile {profile} · experiments at their {cfg.source} settings: {', '.join(cfg.experiments)} · "
          f"variants: {', '.join(dict.fromkeys(cfg.table5_variants + cfg.image_variants))}")
    rows, trace = [], []
    for part in parts(cfg):
        experiment, setting, seeds = part.experiment, part.experiment.setting(), part.experiment.seeds()
        planned = part.sweep
        records = {r["key"]: r for r in sweep(experiment, planned.jobs, executor, desc=planned.desc)}
        for name, jobs in part.jobs.items():
            variant = VARIANTS[name]
            mine = [records[k] for k in dict.fromkeys(j.key(setting, t) for j in jobs for t in seeds) if k in records]
            chosen = selected(experiment, mine, name)
            rows += [{"experiment": part.name, "variant": name, "method": variant.method, **r} for r in chosen]
            if not (cfg.trace and variant.projects):
                continue
            for epochs, config in dict.fromkeys((r["epochs"], r["config"]) for r in chosen):
                job = Job.of(variant.method, int(epochs), json.loads(config))
                trace += [{"experiment": part.name, "setting": setting_of(experiment, epochs), "variant": name, **s}
                          for s in shares(experiment, job)]
    order = {n: i for i, n in enumerate(VARIANTS)}
    rows.sort(key=lambda r: (cfg.experiments.index(r["experiment"]), order[r["variant"]]))
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "ablation.csv", index=False)
    text = markdown(frame)
    write_text(out / "ablation.md", f"# Ablation of MinNorm-OG, profile {profile}\n\n{text}\n")
    if trace:
        trace = pd.DataFrame(trace)
        trace.to_csv(out / "shares.csv", index=False)
        fig = plot(trace, f"MinNorm-OG's projections: ‖P_G θ‖/‖θ‖ per step, profile {profile}")
        for suffix in ("png", "pdf"):
            fig.savefig(out / f"ablation.{suffix}", dpi=150, bbox_inches="tight")
        plt.close(fig)
    write_json(out / "config.json", {"profile": profile, "config": cfg, "caption": CAPTION,
                                     "experiments": {n: experiment_config(cfg, n) for n in cfg.experiments},
                                     "variants": VARIANTS, "provenance": provenance()})
    print(text + f"\n\nwrote {out}/ablation.md, ablation.csv" + (", shares.csv, ablation.png/.pdf" if len(trace) else ""))
    return 0


if __name__ == "__main__":
    script_main(__spec__)
