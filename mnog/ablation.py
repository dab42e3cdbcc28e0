"""MinNorm-OG's ablation (artifact/ablation.py): its variants, the settings they run on, its
sweeps and its tables.

A variant is a registered method run with some of its experiment's options changed
(mnog.methods.MinNormOGConfig's span and scope, BatchNorm's statistics), on its experiment's own
sweeps: Table 5's (mnog.poisoning), Label Erasure's Figures 6, 8 and 9 (mnog.erasure) and Table
2's (mnog.collapse), at the profile of those experiments named by the ablation's `source`, so
that GD, Ridge and MinNorm-OG reuse the models and records those targets stored. `parts`
groups every variant's jobs by setting, one sweep each (`plan`); `tables` renders the stored
selection (ablation.csv) as one table per experiment, for the script and for the report
(artifact/report.py).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tabulate import tabulate

from mnog import collapse, erasure, poisoning
from mnog.compare import fmt
from mnog.config import field
from mnog.plan import Sweep, Work
from mnog.results import stable_hash
from mnog.sweep import Job


# -- the variants --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """One row of every table: a registered method run with some of its experiment's options
    changed (a field of the experiment's Config: minnorm_span, bn_stats, ...)."""
    name: str
    method: str
    options: tuple[tuple[str, Any], ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()   # hyperparameters held at one value (their grid axis dropped)

    def applies(self, cfg) -> bool:
        """Whether the experiment has every option (Table 5 has no BatchNorm: no bn_stats)."""
        return all(hasattr(cfg, name) for name, _ in self.options)

    def config(self, cfg):
        """The experiment's configuration that runs this variant alone."""
        return dataclasses.replace(cfg, methods=(self.method,), **dict(self.options))

    def jobs(self, grid: list[Job]) -> list[Job]:
        """The variant's jobs from its experiment's: `fixed` set in each, duplicates dropped."""
        return list(dict.fromkeys(Job.of(j.method, j.epochs, {**j.config, **dict(self.fixed)}) for j in grid))

    @property
    def own(self) -> bool:
        """Whether it is one of the experiment's own methods as the experiment runs it (its
        records are the experiment's)."""
        return not self.options and not self.fixed

    @property
    def projects(self) -> bool:
        """Whether its steps project onto a span (so that ‖P_G θ‖/‖θ‖ is worth tracing)."""
        return self.method == "MinNorm-OG" and ("minnorm_span", "none") not in self.options


VARIANTS = {v.name: v for v in (
    Variant("MinNorm-OG", "MinNorm-OG"),
    Variant("span none", "MinNorm-OG", (("minnorm_span", "none"),)),
    Variant("span none, γ_reg 1", "MinNorm-OG", (("minnorm_span", "none"),), (("gamma_reg", 1.0),)),
    Variant("scope heads", "MinNorm-OG", (("minnorm_scope", "heads"),)),
    Variant("scope body", "MinNorm-OG", (("minnorm_scope", "body"),)),
    Variant("GD", "GD"),
    Variant("Ridge", "Ridge"),
    Variant("MinNorm-OG, bn_stats loss", "MinNorm-OG", (("bn_stats", "loss"),)),
    Variant("GD, bn_stats loss", "GD", (("bn_stats", "loss"),)),
)}
EXPERIMENTS = ("table5", "figure6", "figure8", "figure9", "table2")


def _erasure(profile: str, figure: int):
    return dataclasses.replace(erasure.PROFILES[profile], figure=str(figure))


# The experiments' configurations at each profile: their own profiles' (so their cached models
# and records), smoke cut further so that the whole run takes seconds.
SOURCES = {
    "paper": {"table5": poisoning.PROFILES["paper"], **{f"figure{n}": _erasure("paper", n) for n in (6, 8, 9)},
              "table2": collapse.PROFILES["paper"]},
    "cpu": {"table5": poisoning.PROFILES["cpu"], **{f"figure{n}": _erasure("cpu", n) for n in (6, 8, 9)},
            "table2": collapse.PROFILES["cpu"]},
    "smoke": {"table5": dataclasses.replace(poisoning.PROFILES["smoke"], trials=2, width=16, train_epochs=200,
                                            budgets=(10,)),
              **{f"figure{n}": dataclasses.replace(_erasure("smoke", n), per_class=12, test_per_class=4,
                                                   train_epochs=2, batch_size=8, field_retain=40)
                 for n in (6, 8, 9)},
              "table2": dataclasses.replace(collapse.PROFILES["smoke"], per_class=20, p_forget=0.05, test_per_class=4,
                                            warm_epochs=0, initial_epochs=1, gt_epochs=1, batch_size=8,
                                            field_retain=40)},
}


@dataclass(frozen=True)
class Config:
    source: str = field("paper", "the profile of the experiments whose settings, cached models and records the "
                                 "ablation uses", choices=tuple(SOURCES))
    experiments: tuple[str, ...] = field(EXPERIMENTS, "experiments to take apart", choices=EXPERIMENTS)
    table5_variants: tuple[str, ...] = field(tuple(VARIANTS), "variants on Data Poisoning (rows of its table; those "
                                                              "with BatchNorm options do not apply)",
                                             choices=tuple(VARIANTS))
    image_variants: tuple[str, ...] = field(tuple(VARIANTS), "variants on the image experiments (rows of their "
                                                             "tables)", choices=tuple(VARIANTS))
    dataset: str = field("", "the image experiments' data set (empty: their profile's), e.g. "
                             "folder:PATH/cifar10-jpeg.tar.gz", dataset=True)
    trace: bool = field(True, "re-run each projecting variant's selected configurations to trace ‖P_G θ‖/‖θ‖")
    variant_budgets: tuple[int, ...] = field((10, 100, 1000), "Table 5's budgets T for the variants (every row but "
                                                              "MinNorm-OG, GD and Ridge, which are Table 5's own records; "
                                                              "span none at T = 1000 takes about 30 min on a 2-core CPU)",
                                             choices=(10, 100, 1000))


# cpu: about half an hour on a 2-core CPU. On Data Poisoning every variant at T = 10 and 100
# (span none's 162 configurations at T = 1000 take about 30 minutes more: 12 s each), the
# scope the diagnostic makes informative there (benchmarks/diagnose_scopes.py): the heads,
# 1.8% of ‖θ‖² and the only part the projection keeps much of (76%). On the image experiments
# the variants that cost a GD run (span none; GD with BatchNorm moved by the loss's batches
# only); those that project (scope body, MinNorm-OG with bn_stats loss) cost a MinNorm-OG sweep
# each and are left to the paper profile, or to --image-variants.
PROFILES = {"paper": Config(source="paper"),
            "cpu": Config(source="cpu", variant_budgets=(10, 100),
                          table5_variants=("MinNorm-OG", "span none", "span none, γ_reg 1", "scope heads", "GD", "Ridge"),
                          image_variants=("MinNorm-OG", "span none", "GD", "Ridge", "GD, bn_stats loss")),
            "smoke": Config(source="smoke", experiments=("table5", "figure6", "table2"))}
# Each experiment's module: its `plan(cfg)` gives the sweeps of the target that runs it.
MODULES = {"table5": poisoning, "figure6": erasure, "figure8": erasure, "figure9": erasure, "table2": collapse}


def experiment_config(cfg: Config, name: str):
    """Experiment `name`'s configuration: its source profile's, with the ablation's data set."""
    base = SOURCES[cfg.source][name]
    return dataclasses.replace(base, dataset=cfg.dataset) if cfg.dataset and hasattr(base, "dataset") else base


@dataclass(frozen=True)
class Part:
    """One setting of an experiment and every variant's jobs on it: one sweep (one pool of
    workers), whose records the variants then share out by key."""
    name: str                                  # the experiment: table5, figure6, ...
    experiment: Any                            # its setting (mnog.experiment.Experiment)
    jobs: dict[str, list[Job]]                 # variant name -> its jobs, in the experiment's grid order

    @property
    def sweep(self) -> Sweep:
        return Sweep(self.experiment, [j for jobs in self.jobs.values() for j in jobs],
                     f"ablation {self.name} ({', '.join(self.jobs)})")


def variants(cfg: Config, experiment: str) -> tuple[str, ...]:
    return cfg.table5_variants if experiment == "table5" else cfg.image_variants


def parts(cfg: Config) -> list[Part]:
    """Every variant that applies to every experiment, on its experiment's own sweeps
    (its `plan`: same grid, same records), grouped by setting: GD, Ridge and MinNorm-OG's
    variants share the experiment's setting, the bn_stats variants have their own."""
    out: dict[tuple, Part] = {}
    for name in cfg.experiments:
        base = experiment_config(cfg, name)
        for variant in (VARIANTS[v] for v in variants(cfg, name)):
            if not variant.applies(base):
                continue
            settings = variant.config(base)
            if not variant.own and hasattr(settings, "budgets"):
                settings = dataclasses.replace(settings, budgets=tuple(t for t in settings.budgets
                                                                        if t in cfg.variant_budgets))
                if not settings.budgets:
                    continue
            for planned in MODULES[name].plan(settings).sweeps:
                key = (name, stable_hash(planned.experiment.setting()))
                part = out.setdefault(key, Part(name, planned.experiment, {}))
                part.jobs.setdefault(variant.name, []).extend(variant.jobs(planned.jobs))
    return [with_methods(part) for part in out.values()]


def with_methods(part: Part) -> Part:
    """`part` with its setting's methods those of all its jobs (the first variant's alone
    otherwise): what planning costs the setting's steps by (mnog.plan.variants)."""
    methods = tuple(dict.fromkeys(j.method for jobs in part.jobs.values() for j in jobs))
    experiment = part.experiment
    return dataclasses.replace(part, experiment=dataclasses.replace(
        experiment, cfg=dataclasses.replace(experiment.cfg, methods=methods)))


def plan(cfg: Config) -> Work:
    """What the ablation's `main` trains and runs (mnog.plan): one sweep per setting (the traces' re-runs aside)."""
    return Work(sweeps=tuple(part.sweep for part in parts(cfg)),
                note="and a re-run of each projecting variant's selected configurations")


# -- tables --------------------------------------------------------------------------------------

METRICS = {"sup_error": "sup error", "color_accuracy": "color accuracy (%)", "retain_quality": "retain quality",
           "forget_error": "forget error", "distance": "distance to (1, 0)"}
TITLES = {"table5": "Data Poisoning (Table 5)", "figure6": "Label Erasure, Figure 6's setting",
          "figure8": "Label Erasure, Figure 8's setting", "figure9": "Label Erasure, Figure 9's setting",
          "table2": "Representation Collapse (Table 2)"}


def cell(row) -> str:
    """"median (low, high)", "mean ± se" or a value, at the precision of the experiment's metric."""
    if row["stat"] == "median":
        return f"{fmt(row['center'])} ({fmt(row['low'])}, {fmt(row['high'])})"
    digits = 1 if row["metric"] == "color_accuracy" else 3
    if pd.isna(row["center"]) or not math.isfinite(row["center"]):
        return "—"
    value = f"{row['center']:.{digits}f}"
    return f"{value} ± {row['se']:.{digits}f}" if row["stat"] == "mean" else value


def tables(frame: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]]]]:
    """One table per experiment, in the frame's order: (title, headers, rows); a row per variant,
    a column per (setting, metric)."""
    out = []
    for experiment, part in frame.groupby("experiment", sort=False):
        columns = list(dict.fromkeys(zip(part["setting"], part["metric"])))
        several = len({s for s, _ in columns}) > 1
        headers = ["variant", *(f"{METRICS[m]}, {s}" if several else METRICS[m] for s, m in columns)]
        rows = []
        for variant, cells in part.groupby("variant", sort=False):
            found = {(r["setting"], r["metric"]): cell(r) for _, r in cells.iterrows()}
            rows.append([variant, *(found.get(c, "—") for c in columns)])
        out.append((TITLES.get(experiment, experiment), headers, rows))
    return out


def markdown(frame: pd.DataFrame) -> str:
    return "\n\n".join(f"### {title}\n\n" + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
                       for title, headers, rows in tables(frame))
