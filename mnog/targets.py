"""The paper's table of contents: one row per `make` target, its paper label and its script,
and the paper's claims with the targets that check them.

The Makefile's targets, `make help`, `make all`'s order, `python -m artifact.report run` (the
command each target runs), the report's sections and the claims and targets tables of README.md
and docs/ all derive from TARGETS and CLAIMS, with the times and verdicts of the committed
reference runs (reference/<target>/<profile>/, see `reference`). Adding an experiment is one new
script in artifact/ and one row here; adding a reference run is one folder in reference/. This
file imports nothing but the standard library, so that `make help` runs before the virtual
environment exists:

    python3 mnog/targets.py names            # the targets, in `make all`'s order
    python3 mnog/targets.py help             # "  make table5   Table 5 (= Table 1): ..."
    python3 mnog/targets.py command table5   # the module and arguments `make table5` runs
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ERASURE = json.loads((ROOT / "paper_tables" / "label_erasure.json").read_text())
REFERENCE = ROOT / "reference"   # the committed summaries of the runs the docs quote
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
    gpu: bool = False            # its `paper` profile needs a GPU (else a CPU runs the paper's protocol)

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
    return Target(name, paper, f"Data Poisoning fits of every method, T = {epochs}{note}",
                  "figure1_data_poisoning_fits", ("--epochs", str(epochs), "--name", name), "fits", needs=("table5",),
                  shows=f"T = {epochs}{note}: {FITS}")


def erasure_setting(figure: str) -> str:
    """A Label Erasure setting in words: "CIFAR-10, p_color 0.01, p_retain 0.01, T = 2"."""
    s = ERASURE["settings"][figure]
    return f"{DATASET_NAMES[s['dataset']]}, p_color {s['p_color']:g}, p_retain {s['p_retain']:g}, T = {s['epochs']}"


def _erasure(figure: int) -> Target:
    return Target(f"figure{figure}", f"Figure {figure}", f"Label Erasure frontiers: {erasure_setting(str(figure))}",
                  "figure2_label_erasure", ("--figure", str(figure)), "erasure",
                  shows=f"Label Erasure, {erasure_setting(str(figure))}. {FRONTIERS}", gpu=True)


# In `make all`'s order: a target's `needs` come before it.
TARGETS: tuple[Target, ...] = (
    Target("table5", "Table 5 (= Table 1)", "Data Poisoning: sup-norm error of every method", "table5_data_poisoning",
           shows="Data Poisoning (docs/protocol.md#data-poisoning): an MLP fit to 50 points of sin(x) and 5 "
                 "poisoned points (y = 1.5) unlearns the poisoned points. Sup-norm error sup |f(x) − sin(x)| on "
                 "[−5π, 5π], median (central range) over 10 trials, each method at the configuration with the best "
                 "median, T = 10, 100, 1000. The paper: MinNorm-OG has the lowest error at T = 100 and 1000 (1.08, "
                 "0.63); GA diverges."),
    _fits("figure1", "Figure 1 (= Figure 4)", 100),
    _fits("figure3", "Figure 3", 10),
    _fits("figure4", "Figure 4", 100, " (the appendix copy of Figure 1)"),
    _fits("figure5", "Figure 5", 1000),
    Target("table2", "Table 2 (= Table 17)", "Representation Collapse: color accuracy of every method",
           "table2_representation_collapse",
           shows="Representation Collapse (docs/protocol.md#representation-collapse): a ResNet-18 taught that "
                 "each CIFAR-10 class has its own color, plus 1% off-color copies, unlearns the off-color copies. "
                 "Color accuracy (%) on every test image "
                 "shown in each of the 10 colors, mean ± standard error over 5 trials, each method at its best "
                 "configuration, per (p_retain, T) row. The paper: MinNorm-OG is the best unlearning method, "
                 "Retrain aside, in every row.", gpu=True),
    _erasure(6),
    _erasure(7),
    Target("figure2", "Figure 2", "Label Erasure frontiers: Figures 6 and 7's settings side by side",
           "figure2_label_erasure", ("--figure", "2"), "erasure",
           shows="Multi-Class Label Erasure (docs/protocol.md#label-erasure): a model trained on gray images "
                 "and a few red and green copies unlearns the colored copies; left CIFAR-10 (Figure 6's setting), "
                 "right Tiny ImageNet "
                 f"(Figure 7's). {FRONTIERS}", gpu=True),
    *(_erasure(n) for n in range(8, 15)),
    Target("table3", "Table 3", "seconds per unlearning epoch of every method (Label Erasure)", "table3_runtime",
           kind="runtime",
           shows="Seconds per unlearning epoch of every method, Label Erasure on Tiny ImageNet with ColorResNet-50 "
                 "(Figure 7's setting), mean over the trials. Absolute times depend on the machine; the reproducible "
                 "content is the ratio to GD: the paper's MinNorm-OG takes 0.78 s, 1.16 × GD's 0.67 s.", gpu=True),
    Target("random_forgetting", "— (the field's benchmark)", "random forgetting of 10% of CIFAR-10, ResNet-18: UA, "
           "RA, TA, MIA, gap to Retrain", "random_forgetting", kind="field",
           shows="Not in the paper: the unlearning field's standard benchmark (SalUn's protocol), a ResNet-18 "
                 "forgetting a random 10% of CIFAR-10's training set, every method at the configuration with the "
                 "smallest average gap to a model retrained from scratch on the rest (GT). SalUn's published numbers "
                 "(paper_tables/random_forgetting.json) are shown beside ours where a method matches, not checked: "
                 "only the `paper` profile is the same benchmark.", gpu=True),
    Target("ablation", "— (what does the work in MinNorm-OG)", "MinNorm-OG taken apart (projection, shrinkage, "
           "BatchNorm) on Tables 5, 2 and Figures 6, 8, 9", "ablation", kind="ablation",
           shows="Not in the paper: MinNorm-OG's projection step θ ← (1 − s)·θ + s·P_G(θ) taken apart. Variants of "
                 "the one method: span none (θ ← (1 − s)·θ on the same schedule: GD plus a scheduled shrinkage; also "
                 "at a constant s, γ_reg 1), "
                 "scope heads and scope body (the projection on the output layers only, or on all but them and "
                 "BatchNorm), beside GD and Ridge, and on the image experiments GD and MinNorm-OG with BatchNorm's "
                 "statistics from the loss's batches only; each tuned over its experiment's grid with its selection "
                 "rule. At `cpu` Table 5's variants run at T = 10 and 100, and on the images the variants that "
                 "project (scope body, MinNorm-OG with BatchNorm's loss statistics) only with --image-variants. "
                 "The figure: the share of θ inside the span, ‖P_G θ‖/‖θ‖, at every projection step of the "
                 "selected configurations (mean over the trials; near 0 a projection step is a uniform shrinkage). "
                 "Nothing is checked: docs/results/ablation.md reads the tables.", gpu=True),
)
BY_NAME = {t.name: t for t in TARGETS}


@dataclass(frozen=True)
class PaperClaim:
    paper: str                   # where the paper makes it
    text: str                    # the claim, in one line
    targets: tuple[str, ...]     # the make targets that check it


# Every claim of the paper, in the paper's order: the README's first table.
CLAIMS: tuple[PaperClaim, ...] = (
    PaperClaim("Table 5 (= Table 1)", "MinNorm-OG has the lowest sup-norm error at T = 100 and 1000; GA diverges; "
               "every cell within tolerance", ("table5",)),
    PaperClaim("Figures 1, 3, 4, 5", "MinNorm-OG's fit drops the poisoned bump, GD keeps it, GA blows up",
               ("figure1", "figure3", "figure4", "figure5")),
    PaperClaim("Table 2 (= Table 17)", "MinNorm-OG is the best unlearning method (Retrain aside) in every row",
               ("table2",)),
    PaperClaim("Figure 2 (= Figures 6, 7)", "MinNorm-OG's frontier comes closest to (1, 0) on CIFAR-10 and Tiny "
               "ImageNet; Retrain erases only at near-chance accuracy", ("figure2", "figure6", "figure7")),
    PaperClaim("Figures 8-14", "the same in the appendix's seven other settings",
               tuple(f"figure{n}" for n in range(8, 15))),
    PaperClaim("Table 3", "a MinNorm-OG epoch costs about a GD epoch (1.16×)", ("table3",)),
)


# -- the reference runs: what README.md, docs/ and `make help` quote ---------------------------------

@dataclass(frozen=True)
class Reference:
    """A committed reference run (reference/<target>/<profile>/: the summaries `make <target>` wrote
    to results/<target>/<profile>/, see `python -m artifact.docs reference`), counted."""
    target: str
    profile: str
    enforced: bool               # the profile runs the paper's protocol and enforces its numbers
    cells: int                   # comparison.csv: the paper's cells
    cells_passed: int
    deviations: int              # cells that miss their tolerance as documented (paper_tables/notes.json)
    claims: int                  # claims.json
    claims_held: int
    wall_s: float | None         # run.json: the wall time of `make <target>`
    device: str
    date: str                    # when the run finished, YYYY-MM-DD

    @property
    def ok(self) -> bool:
        return self.cells_passed + self.deviations == self.cells and self.claims_held == self.claims

    def counts(self) -> str:
        """"23/24 cells (1 known deviation), 3/3 claims", or "" when nothing is checked."""
        parts = []
        if self.cells:
            known = f" ({self.deviations} known deviation{'s' * (self.deviations > 1)})" if self.deviations else ""
            parts.append(f"{self.cells_passed}/{self.cells} cells{known}")
        if self.claims:
            parts.append(f"{self.claims_held}/{self.claims} claims")
        return ", ".join(parts)

    def timed(self) -> str:
        """"18 min 40 s on AMD EPYC (2 cores), 2026-12-03"."""
        return f"{duration(self.wall_s)} on {self.device}, {self.date}"


def reference(target: str, profile: str, root: Path = REFERENCE) -> Reference | None:
    """What reference/<target>/<profile>/ holds, or None when it holds nothing."""
    folder = root / target / profile
    if not (folder / "config.json").is_file():
        return None
    config = json.loads((folder / "config.json").read_text())
    run = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
    cells = []
    if (folder / "comparison.csv").is_file():
        with open(folder / "comparison.csv", newline="") as f:
            cells = list(csv.DictReader(f))
    passed = sum(c["pass"] == "True" for c in cells)
    deviations = sum(c["pass"] != "True" and c.get("expected") == "deviation" for c in cells)
    claims = json.loads((folder / "claims.json").read_text()) if (folder / "claims.json").is_file() else []
    device = (config.get("provenance") or run.get("provenance") or {}).get("device", "an unnamed machine")
    return Reference(target, profile, bool(config.get("config", {}).get("enforce", True)), len(cells), passed,
                     deviations, len(claims), sum(bool(c["holds"]) for c in claims), run.get("wall_s"), device,
                     (run.get("finished") or "date unknown")[:10])


def duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:   # None or NaN
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _figures(names: list[str]) -> str:
    """"Figure 6", "Figures 8, 9", "Table 2"."""
    labels = [BY_NAME[n].paper.split(" (")[0] for n in names]
    if len(labels) > 1 and all(label.startswith("Figure ") for label in labels):
        return "Figures " + ", ".join(label.removeprefix("Figure ") for label in labels)
    return ", ".join(labels)


def _total(refs: list[Reference]) -> Reference:
    """The checks of several reference runs, counted together."""
    return replace(refs[0], cells=sum(r.cells for r in refs), cells_passed=sum(r.cells_passed for r in refs),
                   deviations=sum(r.deviations for r in refs), claims=sum(r.claims for r in refs),
                   claims_held=sum(r.claims_held for r in refs))


def status(claim: PaperClaim, root: Path = REFERENCE) -> str:
    """Where the claim stands in the reference runs, profile by profile."""
    parts = []
    gpu = any(BY_NAME[t].gpu for t in claim.targets)
    for profile in ("paper", "cpu"):
        found = [r for t in claim.targets if (r := reference(t, profile, root))]
        if not found:
            continue
        where = f"`{profile}`" + (f" ({_figures([r.target for r in found])})" if len(claim.targets) > 1 else "")
        checked = [r for r in found if r.counts()]
        counts = _total(checked).counts() if checked else "plotted; no stored check (compare by eye)"
        if not checked:
            parts.append(f"{where}: {counts}")
        elif all(r.enforced for r in checked):
            protocol = "" if profile == "paper" else ", the paper's protocol"
            verdict = "reproduced" if all(r.ok for r in checked) else "fails"
            parts.append(f"**{verdict}** at {where}{protocol}: {counts}")
        else:
            holds = "fails" if not all(r.ok for r in checked) else "holds"
            parts.append(f"{where} runs; the claim {holds} at this budget ({counts}; not enforced)")
    if not any(reference(t, "cpu", root) for t in claim.targets):
        parts.append("`cpu`: not in reference")
    if gpu and not any(reference(t, "paper", root) for t in claim.targets):
        parts.append("never run at paper scale")
    return "; ".join(parts)


def times(names: tuple[str, ...], profile: str, root: Path = REFERENCE) -> str:
    """The reference runs' wall times, machines and dates ("—" when none is stored)."""
    found = [r for t in names if (r := reference(t, profile, root))]
    if len(found) == 1 and len(names) == 1:
        return found[0].timed()
    if len({(r.device, r.date) for r in found}) == 1:   # one machine and day: named once
        each = ", ".join(f"`{r.target}` {duration(r.wall_s)}" for r in found)
        return f"{each} on {found[0].device}, {found[0].date}"
    return "; ".join(f"`{r.target}` {r.timed()}" for r in found) or "not in reference"


def hardware(names: tuple[str, ...]) -> str:
    return "`paper`: a GPU; `cpu`: a CPU" if any(BY_NAME[t].gpu for t in names) else "a CPU (2 cores)"


def _makes(names: tuple[str, ...]) -> str:
    """"`table5`", or "`figure8` … `figure14`" for a long run of targets."""
    return " ".join(f"`{t}`" for t in names) if len(names) <= 4 else f"`{names[0]}` … `{names[-1]}`"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
                      *("| " + " | ".join(row) + " |" for row in rows)])


def claims_markdown(root: Path = REFERENCE) -> str:
    """The README's first table: every claim, its targets, hardware, time and status here."""
    return _table(["paper", "claim", "`make`", "hardware", "time (reference run at `cpu`)", "status here"],
                  [[c.paper, c.text, _makes(c.targets), hardware(c.targets),
                    times(c.targets, "cpu", root), status(c, root)] for c in CLAIMS])


def targets_markdown(root: Path = REFERENCE) -> str:
    """Every target with what it needs and the reference runs' wall time at each profile (`smoke` only
    where a reference run of it is stored)."""
    def at(t: Target, profile: str) -> str:
        if r := reference(t.name, profile, root):
            return r.timed()
        if profile == "paper":
            return "GPU; never run" if t.gpu else "as `cpu`: the same protocol"
        return "not in reference"
    profiles = [p for p in ("smoke", "cpu", "paper")
                if p != "smoke" or any(reference(t.name, p, root) for t in TARGETS)]
    return _table(["target", "paper", "what", "`paper` needs", *(f"`{p}`" for p in profiles)],
                  [[f"`make {t.name}`", t.paper, t.summary, "a GPU" if t.gpu else "a CPU",
                    *(at(t, p) for p in profiles)] for t in TARGETS])


def help_line(t: Target, root: Path = REFERENCE) -> str:
    """`make help`'s line: "  make table5   Table 5 (= Table 1): ... [CPU; cpu: 18 min 40 s on ...]"."""
    timed = [f"{p}: {r.timed()}" for p in ("cpu", "paper") if (r := reference(t.name, p, root))]
    return f"  make {t.name:<16} {t.paper}: {t.summary} [{'; '.join(['paper: GPU' if t.gpu else 'CPU', *timed])}]"


def main(argv: list[str]) -> int:
    if argv[:1] == ["names"]:
        print(" ".join(t.name for t in TARGETS))
    elif argv[:1] == ["help"]:
        for t in TARGETS:
            print(help_line(t))
    elif argv[:1] == ["command"] and len(argv) == 2 and argv[1] in BY_NAME:
        print(" ".join(BY_NAME[argv[1]].command))
    else:
        print(f"usage: python3 mnog/targets.py names | help | command TARGET (targets: {', '.join(BY_NAME)})",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
