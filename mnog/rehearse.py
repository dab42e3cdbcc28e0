"""A rehearsal of the paper profiles: every image target at the paper's shapes, every loop cut
short, on whatever device is here, so that what fails only at paper scale fails in minutes.

    make rehearse                                        # every image target, then the report
    make rehearse ARGS="--dataset folder:cifar10-jpeg.tar.gz --tiny-imagenet synthetic"
    python -m mnog.rehearse table2 figure6              # some targets; --help lists the cuts

What runs is each target's own script (`python -m artifact.report run TARGET`, as `make all`
runs it) at `--profile paper`, on the paper's data (the official archives in data/, or
--dataset folder:PATH for the CIFAR-10 targets; --tiny-imagenet synthetic writes an archive in
tiny-imagenet-200.zip's own layout at the real image count when the official one is absent),
with the paper's models, batch sizes, trials, grids, executor and scoring sets. Only the loops
are cut short, by the switches of mnog.rehearsal, which the core reads from $MNOG_REHEARSE (so
the sweep's worker processes see them too):

- every model trains `train_batches` batches of each training phase instead of its epochs;
- a sweep runs the first configuration of each method (the rest are counted, not run), on
  every trial; each unlearning run stops after `steps` steps;
- each metric scores the first `scored` images of its set, except once per metric and set
  shape in the whole rehearsal, which scores the whole evaluation set (Table 2's 100,000
  predictions);
- without the ResNet-50 ImageNet weights (no network, `make data` not run) the Tiny ImageNet
  models start from random weights of the same shapes, said in one line.

Every process appends what it measured to a JSON-lines log (seconds per training batch and per
unlearning step, data set sizes, its peak memory); the driver samples the memory of the
target's whole process tree (the workers included) and stops a target whose memory passes
--memory-limit. It prints, per target, the peak host memory (and each process's peak GPU
memory on a GPU), seconds per training batch and per unlearning step at the paper's shapes,
and which stages completed, and writes the report over the rehearsal's paper-profile results.
Everything goes to <results>/rehearsal/ (models, records, tables, REPORT.md, rehearsal.md):
never into the results a real run reads, so a rehearsal's few-batch models are never taken
for trained ones.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mnog.rehearsal import ENV, Cuts


IMAGE_SCRIPTS = ("table2_representation_collapse", "figure2_label_erasure", "table3_runtime", "random_forgetting")
# What a CPU leaves out, and why: one step of Table 3's rows with a non-empty subsample (n_pert
# 400: 800 rows of G, each a backward pass of ColorResNet-50 through 400 images) takes hours there.
CPU_CUTS = {"table3": (["--span-n-pert", "0"], "rows with a non-empty subsample left out (a CPU needs hours per step)")}


def image_targets() -> list[str]:
    """The targets whose paper profile runs the image experiments, in `make all`'s order."""
    from mnog.targets import TARGETS
    return [t.name for t in TARGETS if t.script in IMAGE_SCRIPTS]


def target_work(name: str, profile: str, args: list[str]):
    """(work, datasets, options) of a target's run at `profile` with `args` (mnog.plan); options:
    the names of its configuration's fields."""
    from mnog.plan import script_work
    from mnog.targets import BY_NAME
    target = BY_NAME[name]
    module = importlib.import_module(f"artifact.{target.script}")
    work, _ = script_work(module, [*target.args, "--profile", profile, *args])
    experiments = [s.experiment for s in work.sweeps] + list(work.models)
    datasets = {e.panel.dataset if hasattr(e, "panel") else e.cfg.dataset for e in experiments}
    return work, datasets, {f.name for f in dataclasses.fields(module.Config)}


@dataclass(frozen=True)
class Planned:
    """How the rehearsal runs one target: its script's arguments, the models and jobs its run
    plans (mnog.plan), its data sets, and what this device leaves out."""
    args: list[str]
    expected: tuple[int, int]
    datasets: set[str]
    note: str


def target_command(name: str, args, cuda: bool) -> Planned:
    """The script arguments of `name` in the rehearsal `args` (the driver's command line)."""
    extra = []
    work, datasets, options = target_work(name, args.profile, [])
    if args.dataset and "cifar10" in datasets:
        extra += ["--dataset", args.dataset]
    if args.trials:
        extra += ["--trials", str(args.trials)]
    if args.workers and work.sweeps:
        extra += ["--workers", str(args.workers)]
    if extra:
        work, datasets, _ = target_work(name, args.profile, extra)
    extra += ["--no-enforce"] if "enforce" in options else []
    cpu_cut, note = CPU_CUTS.get(name, ([], "")) if not cuda else ([], "")
    return Planned(extra + cpu_cut, planned_counts(work), datasets, note)


def planned_counts(work) -> tuple[int, int]:
    """(models, jobs) a target's paper-profile run trains and sweeps."""
    from mnog.plan import _costs
    seen, models = set(), 0
    for experiment in [s.experiment for s in work.sweeps] + list(work.models):
        for model in _costs(experiment.model_costs, []):
            if model.path not in seen:
                seen.add(model.path)
                models += model.count
    return models, sum(len(s.jobs) for s in work.sweeps)


def process_tree_rss(root: int) -> float:
    """GiB resident in `root` and every process below it (Linux /proc; 0 elsewhere)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
        except (OSError, ValueError):
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total / 2**30


def available_gb() -> float:
    """MemAvailable (GiB), or 0 where /proc/meminfo is not there."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


@dataclass
class Outcome:
    """One target's rehearsal, as the table shows it."""
    target: str
    status: str = "not run"
    wall_s: float = 0.0
    host_gb: float = 0.0                      # peak of the whole process tree, sampled
    gpu_gb: dict = dataclasses.field(default_factory=dict)   # peak per process (driver, workers)
    batch_s: dict = dataclasses.field(default_factory=dict)  # model recipe -> seconds per training batch
    step_s: dict = dataclasses.field(default_factory=dict)   # method -> seconds per unlearning step
    stages: dict = dataclasses.field(default_factory=dict)   # stage -> completed
    note: str = ""


def run_target(name: str, args: list[str], env: dict, log: Path, limit_gb: float, expected: tuple[int, int],
               folder: Path) -> Outcome:
    """Run one target's script through `artifact.report run` with the cuts in `env`; sample its
    process tree's memory; stop it past `limit_gb`; read what its processes logged."""
    outcome = Outcome(name)
    log.unlink(missing_ok=True)
    command = [sys.executable, "-m", "artifact.report", "run", name, "--", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    peak, over = 0.0, False
    while proc.poll() is None:
        peak = max(peak, process_tree_rss(proc.pid))
        if limit_gb and peak > limit_gb and not over:
            over = True
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.25)
    outcome.wall_s, outcome.host_gb = time.perf_counter() - start, peak
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    summarize(outcome, entries, expected, folder)
    if over:
        outcome.status = f"stopped: its processes passed --memory-limit {limit_gb:.1f} GiB"
    else:
        outcome.status = "completed" if proc.returncode == 0 else f"failed (exit status {proc.returncode})"
    return outcome


def summarize(outcome: Outcome, entries: list[dict], expected: tuple[int, int], folder: Path) -> None:
    """Fill `outcome` from the log's entries: rates, GPU peaks, stages."""
    by = lambda stage: [e for e in entries if e["stage"] == stage]  # noqa: E731
    for e in by("train"):
        outcome.batch_s.setdefault(e["model"], []).append(e["seconds"] / max(e["batches"], 1))
    outcome.batch_s = {k: sum(v) / len(v) for k, v in outcome.batch_s.items()}
    for e in by("unlearn"):
        if e["steps"]:
            outcome.step_s.setdefault(e["method"], []).append(e["seconds"] / e["steps"])
    outcome.step_s = {k: sum(v) / len(v) for k, v in outcome.step_s.items()}
    for e in entries:
        if "cuda_peak_gb" in e:
            outcome.gpu_gb[e["pid"]] = max(outcome.gpu_gb.get(e["pid"], 0.0), e["cuda_peak_gb"])
    models, jobs = expected
    sweeps = by("sweep")
    ran = {e["method"] for e in by("unlearn")}
    outcome.stages = {
        "data": bool(by("data")),
        "models": len({e["what"] for e in by("model")}) >= models,
        "jobs": not jobs or (bool(sweeps) and sum(e["jobs"] for e in sweeps) >= jobs
                             and len(ran) >= max(e["run"] for e in sweeps)),
        "full scoring": bool(by("score")),
        "results": folder.is_dir() and any(folder.glob("*.md")) and _exit_status(folder) == 0,
    }
    if not jobs:                                   # Table 3 times epochs: no sweep, nothing scored
        outcome.stages["jobs"] = bool(ran)
        del outcome.stages["full scoring"]
    missing = [e["missing"] for e in by("weights")]
    if missing:
        outcome.note = "ResNet-50 ImageNet weights unavailable: random weights"


def _exit_status(folder: Path) -> int | None:
    run = folder / "run.json"
    return json.loads(run.read_text())["exit_status"] if run.is_file() else None


def table(outcomes: list[Outcome]) -> str:
    from tabulate import tabulate
    rows = []
    for o in outcomes:
        gpu = f"{sum(o.gpu_gb.values()):.1f} ({' + '.join(f'{g:.1f}' for g in o.gpu_gb.values())})" if o.gpu_gb else "—"
        steps = ", ".join(f"{m} {s:.2g}" for m, s in sorted(o.step_s.items(), key=lambda i: -i[1])[:3])
        rows.append([o.target, o.status, _minutes(o.wall_s), f"{o.host_gb:.1f}", gpu,
                     ", ".join(f"{s:.2g}" for s in o.batch_s.values()) or "—",
                     f"{o.step_s['GD']:.2g}" if "GD" in o.step_s else "—", steps or "—",
                     " ".join(("✓ " if ok else "✗ ") + stage for stage, ok in o.stages.items()), o.note])
    return tabulate(rows, headers=["target", "status", "wall", "peak host GiB", "peak GPU GiB (per process)",
                                   "s / training batch", "s / GD step", "slowest steps (s)", "stages", "note"],
                    tablefmt="github", disable_numparse=True)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.0f} s"


def rehearsal_data(data: Path, folder: Path, tiny: str, per_class: int) -> dict:
    """The rehearsal's data folder: links to everything in `data` (archives, weights, decoded
    caches), and with tiny="synthetic" a synthetic tiny-imagenet-200.zip in the real layout
    (`per_class` training images per class) in place of Tiny ImageNet's files, accepted through
    a checksums table of the rehearsal's own. Returns the environment that points there."""
    from mnog.datasets import TINY_IMAGENET_ARCHIVE, TINY_IMAGENET_CACHE, TINY_IMAGENET_FOLDER, write_tiny_imagenet
    from mnog.download import CHECKSUMS
    folder.mkdir(parents=True, exist_ok=True)
    tiny_files = {TINY_IMAGENET_ARCHIVE, TINY_IMAGENET_CACHE, TINY_IMAGENET_FOLDER}
    for entry in data.iterdir() if data.is_dir() else ():
        link = folder / entry.name
        if (tiny == "synthetic" and entry.name in tiny_files) or link.exists() or link.is_symlink():
            continue
        link.symlink_to(entry.resolve())
    env = {"MNOG_DATA": str(folder)}
    if tiny == "synthetic":
        archive = folder / TINY_IMAGENET_ARCHIVE
        if not archive.is_file():
            print(f"rehearsal: writing a synthetic {TINY_IMAGENET_ARCHIVE} ({per_class} training images per class of "
                  f"200, 10,000 validation images, 64×64) to {folder} ...", flush=True)
            write_tiny_imagenet(archive, train_per_class=per_class)
        md5 = hashlib.md5(archive.read_bytes()).hexdigest()
        table = folder / "checksums-rehearsal.txt"
        table.write_text(CHECKSUMS.read_text() + f"\n# the rehearsal's synthetic archive\nmd5  {md5}  "
                         f"{TINY_IMAGENET_ARCHIVE}  file://{archive}\n")
        env["MNOG_CHECKSUMS"] = str(table)
    return env


def main(argv=None) -> int:
    from mnog.config import PROFILES, OneLineParser
    from mnog.datasets import DATA, TINY_IMAGENET_ARCHIVE, check_dataset
    from mnog.results import RESULTS, device_name, now, write_json, write_text

    targets = image_targets()
    parser = OneLineParser(description="the paper profile of every image target at the paper's shapes, every "
                                       "loop cut short; measures memory and speed and says what completed")
    parser.add_argument("targets", nargs="*", help=f"targets (default: {' '.join(targets)})")
    parser.add_argument("--profile", choices=PROFILES, default="paper",
                        help="the profile rehearsed (paper; the others for testing the rehearsal itself)")
    parser.add_argument("--dataset", default="", help="folder:PATH: CIFAR-10 as an image folder or an archive of one "
                                                      "for the CIFAR-10 targets (default: the official archive)")
    parser.add_argument("--tiny-imagenet", choices=("auto", "official", "synthetic"), default="auto",
                        help="Tiny ImageNet: the official archive in data/, or a synthetic one in its layout and at "
                             "its size (auto: the official one where present)")
    parser.add_argument("--tiny-per-class", type=int, default=500, help="synthetic Tiny ImageNet: training images "
                                                                        "per class (500: the real 100,000)")
    parser.add_argument("--trials", type=int, default=0, help="trials of every target (0: the profile's); a cut "
                                                                  "for slow devices: memory grows with them")
    parser.add_argument("--workers", type=int, default=0, help="the sweeps' local worker processes (0: the scripts' "
                                                                   "default); fewer hold less memory at once")
    parser.add_argument("--train-batches", type=int, default=Cuts.train_batches, help="training batches per phase")
    parser.add_argument("--steps", type=int, default=Cuts.steps, help="unlearning steps per run")
    parser.add_argument("--scored", type=int, default=Cuts.scored, help="images per metric after its full pass")
    parser.add_argument("--keep", action="store_true", help="keep what an earlier rehearsal stored in "
                                                                "<results>/rehearsal (models, records: only what is "
                                                                "missing runs); default: start afresh")
    parser.add_argument("--memory-limit", type=float, default=0.9 * available_gb(),
                        help="GiB: stop a target whose processes together pass it (default: 90%% of the memory "
                             "available now; 0: no limit)")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in targets]
    if unknown:
        parser.error(f"not image targets: {', '.join(unknown)} (the image targets: {', '.join(targets)})")
    if args.dataset:
        try:
            check_dataset(args.dataset)
        except ValueError as exc:
            parser.error(f"--dataset: {exc}")
    if min(args.train_batches, args.steps, args.scored, args.tiny_per_class) < 1 or min(args.trials, args.workers) < 0:
        parser.error("--train-batches, --steps, --scored and --tiny-per-class must be at least 1, --trials and "
                     "--workers at least 0")
    folder = RESULTS / "rehearsal"
    if not args.keep:                               # afresh: what an earlier rehearsal stored would not run again
        for entry in folder.iterdir() if folder.is_dir() else ():
            if entry.name != "data":                # the synthetic archive and decoded data sets stay
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    import torch
    cuda = torch.cuda.is_available()
    planned = {name: target_command(name, args, cuda) for name in args.targets or targets}
    tiny = args.tiny_imagenet
    if not any("tiny_imagenet" in p.datasets for p in planned.values()):
        tiny = "not needed"
    elif tiny == "auto":
        tiny = "official" if (DATA / TINY_IMAGENET_ARCHIVE).is_file() else "synthetic"
    env = {**os.environ, "PROFILE": args.profile, "MNOG_RESULTS": str(folder), "PYTHONUNBUFFERED": "1",
           **rehearsal_data(DATA, folder / "data", tiny, args.tiny_per_class)}
    print(f"rehearsal of the {args.profile} profile on {device_name()}: {folder}; Tiny ImageNet {tiny}"
          + (f" ({200 * args.tiny_per_class:,} training images)" if tiny == "synthetic" else "")
          + f"; memory limit {args.memory_limit:.1f} GiB", flush=True)
    outcomes = []
    for name, plan in planned.items():
        log = folder / "logs" / f"{name}.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        cut = Cuts(str(log), args.train_batches, args.steps, args.scored)
        print(f"\n== rehearsal: make {name} at the {args.profile} profile {' '.join(plan.args)}", flush=True)
        outcome = run_target(name, plan.args, {**env, ENV: json.dumps(dataclasses.asdict(cut))}, log,
                             args.memory_limit, plan.expected, folder / name / args.profile)
        outcome.note = "; ".join(n for n in (outcome.note, plan.note) if n)
        outcomes.append(outcome)
        print(table([outcome]), flush=True)
    status = subprocess.call([sys.executable, "-m", "artifact.report", "write", "--profile", args.profile,
                              "--results", str(folder)], env=env)
    text = "\n\n".join([f"# Rehearsal of the {args.profile} profile, {device_name()}, {now()}",
                        f"Cuts: {args.train_batches} training batches per phase, {args.steps} unlearning steps per "
                        f"run, the first configuration of each method, {args.scored} images per metric after one "
                        f"full pass, {args.trials or 'the profile’s'} trials; Tiny ImageNet {tiny}.", table(outcomes),
                        f"Report over the rehearsal's paper-profile results: "
                        f"{'written' if status == 0 else f'FAILED (exit status {status})'} ({folder / 'REPORT.md'})"])
    write_text(folder / "rehearsal.md", text + "\n")
    write_json(folder / "rehearsal.json", {"device": device_name(), "cuts": vars(args), "tiny_imagenet": tiny,
                                           "outcomes": [dataclasses.asdict(o) for o in outcomes], "report": status})
    print("\n" + text)
    complete = status == 0 and all(o.status == "completed" and all(o.stages.values()) for o in outcomes)
    return 0 if complete else 1


if __name__ == "__main__":
    from mnog import mkl
    from mnog.errors import cli
    mkl.reexec()
    sys.exit(cli(main))
