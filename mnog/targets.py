"""The paper's table of contents: one row per `make` target, its paper label and its script.

The Makefile's targets, `make help`, `make all`'s order, `python -m artifact.report run` (the
command each target runs) and the report's sections all derive from TARGETS; adding an
experiment is one new script in artifact/ and one row here. This file imports nothing but
the standard library, so that `make help` runs before the virtual environment exists:

    python3 mnog/targets.py names            # the targets, in `make all`'s order
    python3 mnog/targets.py help             # "  make table5   Table 5 (= Table 1): ..."
    python3 mnog/targets.py command table5   # the module and arguments `make table5` runs
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

ERASURE = json.loads((Path(__file__).resolve().parent.parent / "paper_tables" / "label_erasure.json").read_text())
DATASET_NAMES = {"cifar10": "CIFAR-10", "tiny_imagenet": "Tiny ImageNet"}


@dataclass(frozen=True)
class Target:
    name: str                    # the make target and its results folder results/<name>/
    paper: str                   # the paper's label
    summary: str                 # one line for `make help`
    script: str                  # the module in artifact/ that makes it
    args: tuple[str, ...] = ()   # the script's arguments for this target
    kind: str = "cells"          # what the report shows: cells (comparison.csv), fits, erasure, runtime, field, ablation
    needs: tuple[str, ...] = ()  # targets whose results it reads (run first when theirs are missing)
    shows: str = ""              # what the paper shows, and what to look for in ours (the report)

    @property
    def command(self) -> list[str]:
        return ["-m", f"artifact.{self.script}", *self.args]


FITS = ("one trial of Data Poisoning: the retain points, the poisoned forget points, sin(x), the "
        "poisoned model θ* and each method's unlearned fit at the configuration Table 5 selected. In "
        "the paper MinNorm-OG's fit drops the poisoned bump and follows sin(x) where retain points "
        "constrain it, GD and the other loss-gradient methods keep the bump, and GA's fit blows up.")
FRONTIERS = ("x: retain quality, the fraction of gray test images whose class and color are both right "
             "(higher is better); y: forget-quality error, the mean of (1 − p(gray | x))² over the gray, red "
             "and green test copies (lower is better). Per method, the Pareto frontier of its configurations' "
             "means over the trials with standard-error bars; the GT model (trained on the gray images only); "
             "the ideal point (1, 0). The paper: MinNorm-OG's frontier comes closest to (1, 0); Retrain "
             "reaches a near-zero forget error at near-chance accuracy.")


def _fits(name: str, paper: str, epochs: int, note: str = "") -> Target:
    return Target(name, paper, f"Data Poisoning fits of every method, T = {epochs}{note}", "figure1_data_poisoning_fits",
                  ("--epochs", str(epochs), "--name", name), "fits", needs=("table5",),
                  shows=f"T = {epochs}{note}: {FITS}")


def erasure_setting(figure: str) -> str:
    """A Label Erasure setting in words: "CIFAR-10, p_color 0.01, p_retain 0.01, T = 2"."""
    s = ERASURE["settings"][figure]
    return f"{DATASET_NAMES[s['dataset']]}, p_color {s['p_color']:g}, p_retain {s['p_retain']:g}, T = {s['epochs']}"


def _erasure(figure: int) -> Target:
    return Target(f"figure{figure}", f"Figure {figure}", f"Label Erasure frontiers: {erasure_setting(str(figure))}",
                  "figure2_label_erasure", ("--figure", str(figure)), "erasure",
                  shows=f"Label Erasure, {erasure_setting(str(figure))}. {FRONTIERS}")


# In `make all`'s order: a target's `needs` come before it.
TARGETS: tuple[Target, ...] = (
    Target("table5", "Table 5 (= Table 1)", "Data Poisoning: sup-norm error of every method", "table5_data_poisoning",
           shows="Data Poisoning (SPEC §5): an MLP fit to 50 points of sin(x) and 5 poisoned points (y = 1.5) "
                 "unlearns the poisoned points. Sup-norm error sup |f(x) − sin(x)| on [−5π, 5π], median (central "
                 "range) over 10 trials, each method at the configuration with the best median, T = 10, 100, 1000. "
                 "The paper: MinNorm-OG has the lowest error at T = 100 and 1000 (1.08, 0.63); GA diverges."),
    _fits("figure1", "Figure 1 (= Figure 4)", 100),
    _fits("figure3", "Figure 3", 10),
    _fits("figure4", "Figure 4", 100, " (the appendix copy of Figure 1)"),
    _fits("figure5", "Figure 5", 1000),
    Target("table2", "Table 2 (= Table 17)", "Representation Collapse: color accuracy of every method",
           "table2_representation_collapse",
           shows="Representation Collapse (SPEC §8): a ResNet-18 taught that each CIFAR-10 class has its own color, "
                 "plus 1% off-color copies, unlearns the off-color copies. Color accuracy (%) on every test image "
                 "shown in each of the 10 colors, mean ± standard error over 5 trials, each method at its best "
                 "configuration, per (p_retain, T) row. The paper: MinNorm-OG is the best unlearning method, "
                 "Retrain aside, in every row."),
    _erasure(6),
    _erasure(7),
    Target("figure2", "Figure 2", "Label Erasure frontiers: Figures 6 and 7's settings side by side",
           "figure2_label_erasure", ("--figure", "2"), "erasure",
           shows="Multi-Class Label Erasure (SPEC §7): a model trained on gray images and a few red and green "
                 "copies unlearns the colored copies; left CIFAR-10 (Figure 6's setting), right Tiny ImageNet "
                 f"(Figure 7's). {FRONTIERS}"),
    *(_erasure(n) for n in range(8, 15)),
    Target("table3", "Table 3", "seconds per unlearning epoch of every method (Label Erasure)", "table3_runtime",
           kind="runtime",
           shows="Seconds per unlearning epoch of every method, Label Erasure on Tiny ImageNet with ColorResNet-50 "
                 "(Figure 7's setting), mean over the trials. Absolute times depend on the machine; the reproducible "
                 "content is the ratio to GD: the paper's MinNorm-OG takes 0.78 s, 1.16 × GD's 0.67 s."),
    Target("random_forgetting", "— (the field's benchmark)", "random forgetting of 10% of CIFAR-10, ResNet-18: UA, "
           "RA, TA, MIA, gap to Retrain", "random_forgetting", kind="field",
           shows="Not in the paper: the unlearning field's standard benchmark (SalUn's protocol), a ResNet-18 "
                 "forgetting a random 10% of CIFAR-10's training set, every method at the configuration with the "
                 "smallest average gap to a model retrained from scratch on the rest (GT). No published numbers are "
                 "stored for it, so nothing is checked: compare by eye."),
    Target("ablation", "— (what does the work in MinNorm-OG)", "MinNorm-OG taken apart (projection, shrinkage, "
           "BatchNorm) on Tables 5, 2 and Figures 6, 8, 9", "ablation", kind="ablation",
           shows="Not in the paper: MinNorm-OG's projection step θ ← (1 − s)·θ + s·P_G(θ) taken apart. Variants of "
                 "the one method: span none (θ ← (1 − s)·θ on the same schedule: GD plus a scheduled shrinkage), "
                 "scope heads and scope body (the projection on the output layers only, or on all but them and "
                 "BatchNorm), beside GD and Ridge, and on the image experiments GD and MinNorm-OG with BatchNorm's "
                 "statistics from the loss's batches only; each tuned over its experiment's grid with its selection "
                 "rule. The figure: the share of θ inside the span, ‖P_G θ‖/‖θ‖, at every projection step of the "
                 "selected configurations (mean over the trials; near 0 a projection step is a uniform shrinkage). "
                 "Nothing is checked: docs/results/ablation.md reads the tables."),
)
BY_NAME = {t.name: t for t in TARGETS}


def main(argv: list[str]) -> int:
    if argv[:1] == ["names"]:
        print(" ".join(t.name for t in TARGETS))
    elif argv[:1] == ["help"]:
        for t in TARGETS:
            print(f"  make {t.name:<16} {t.paper}: {t.summary}")
    elif argv[:1] == ["command"] and len(argv) == 2 and argv[1] in BY_NAME:
        print(" ".join(BY_NAME[argv[1]].command))
    else:
        print(f"usage: python3 mnog/targets.py names | help | command TARGET (targets: {', '.join(BY_NAME)})",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
