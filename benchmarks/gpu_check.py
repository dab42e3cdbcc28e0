"""The Python halves of benchmarks/gpu_check.sh: what its parts read back and measure.

    python -m benchmarks.gpu_check slice                      # (a) ours beside Table 17's row, from the records
    python -m benchmarks.gpu_check workers 1 2 4 8 -- ARGS    # (d) jobs/s of Table 2's sweep with ARGS

`slice` reads the Table 2 records under $MNOG_RESULTS (the slice's own results folder), takes
each method's best configuration (the highest color accuracy; one trial, so no standard error)
and prints it beside the paper's Table 17 row for the same p_retain and T, with how many of
the method's configurations ran (all, unless the part's timeout cut the sweep). It reads only
stored records, so it reports whatever finished.

`workers` runs the sweep that `python -m artifact.table2_representation_collapse ARGS` runs,
from an empty record store, once per value of --workers-per-gpu (local executor; on a CPU: that
many workers per core), on the models the same arguments cached before (the slice's; it does not train them), and prints
jobs per second, worker start-up included.
Both write a JSON and a markdown copy of what they print to $OUT (default /tmp/mnog-gpu-check).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from tabulate import tabulate

OUT = Path(os.environ.get("OUT") or "/tmp/mnog-gpu-check")
PAPER_ROW = ("Retrain", "MinNorm-OG", "NGP", "SCRUB", "GD")   # Table 17's row p_retain 1 %, T = 10, in its order


def beside_paper() -> int:
    from mnog.compare import load_paper_table
    from mnog.results import RESULTS, RecordStore, write_json, write_text
    from mnog.sweep import select_best, summarize

    records = RecordStore(RESULTS / "table2" / "records.jsonl").load()
    if not records:
        print(f"slice: no Table 2 records under {RESULTS}: the slice did not get to its sweep", file=sys.stderr)
        return 1
    setting = records[0]["setting"]
    p_retain, epochs = setting["p_retain"], records[0]["epochs"]
    best = select_best(summarize(records, "color_accuracy", higher_is_better=True), n=1, by="mean",
                       higher_is_better=True).set_index("method")
    ran = {m: len({str(r["config"]) for r in records if r["method"] == m}) for m in {r["method"] for r in records}}
    paper = load_paper_table("table17")
    row = paper[(paper["retain_pct"] == 100 * p_retain) & (paper["epochs"] == epochs)].set_index("method")
    methods = [m for m in PAPER_ROW if m in best.index] + [m for m in best.index if m not in PAPER_ROW]
    rows = [[m, f"{best.loc[m, 'mean']:.1f}", f"{row.loc[m, 'mean']:.1f} ± {row.loc[m, 'se']:.1f}" if m in row.index
             else "—", ran.get(m, 0), best.loc[m, "config"]] for m in methods]
    text = "\n\n".join([
        f"Table 17's row p_retain {p_retain:g}, T = {epochs}: color accuracy (%), ours from one trial (one trial has "
        f"no standard error) beside the paper's mean ± standard error over 5 trials. Ours: {setting['dataset']}, "
        f"width {setting['width']}, θ* epochs (warm, main, GT) {tuple(setting['epochs'])}, training in "
        f"{setting['precision']}, on {setting['device']}.",
        tabulate(rows, headers=["method", "ours (1 trial)", "paper", "configurations run", "best configuration"],
                 tablefmt="github", disable_numparse=True)])
    print(text)
    write_text(OUT / "slice.md", text + "\n")
    write_json(OUT / "slice.json", {"setting": setting, "epochs": epochs, "configurations_run": ran,
                                    "ours": {m: best.loc[m, "mean"] for m in methods},
                                    "paper": {m: row.loc[m, "mean"] for m in methods if m in row.index}})
    return 0


def workers(per_gpu: list[int], args: list[str]) -> int:
    from artifact import table2_representation_collapse as table2
    from mnog.executors import ExecutorConfig
    from mnog.experiment import prepared, sweep
    from mnog.plan import script_work
    from mnog.results import RESULTS, RecordStore, device_name, write_json, write_text
    from mnog.training import load_only

    work, _ = script_work(table2, args)
    planned = work.sweeps[0]
    experiment = planned.experiment
    try:
        with load_only():
            prepared(experiment)
    except FileNotFoundError:
        print("workers: the models of these arguments are not cached (did the slice train them?); not training "
              "them here", file=sys.stderr)
        return 1
    rows = []
    for n in per_gpu:
        store = RecordStore(RESULTS / "workers" / f"per-device-{n}-{time.time_ns()}" / "records.jsonl")
        prepared(experiment)          # the driver's data and models (the slice's), loaded before the clock starts
        start = time.perf_counter()
        records = sweep(experiment, planned.jobs, ExecutorConfig(workers_per_gpu=n), f"workers per device {n}",
                        store=store)
        wall = time.perf_counter() - start
        jobs = len({(r["method"], str(r["config"])) for r in records})
        rows.append({"workers_per_device": n, "jobs": jobs, "wall_s": round(wall, 2),
                     "jobs_per_s": round(jobs / wall, 3) if wall else math.nan})
        print(f"--workers-per-gpu {n}: {jobs} jobs in {wall:.1f} s, {jobs / wall:.2f} jobs/s", flush=True)
        write_json(OUT / "workers.json", {"device": device_name(), "args": args, "rows": rows})
    text = (f"Table 2's sweep ({' '.join(args)}) from an empty record store on {device_name()}, local executor; "
            "wall time from the start of the sweep to its last record, worker start-up (spawning, loading the data "
            "and the models in each worker) included:\n\n"
            + tabulate([list(r.values()) for r in rows], headers=["--workers-per-gpu", "jobs", "wall s", "jobs/s"],
                       tablefmt="github"))
    print(text)
    write_text(OUT / "workers.md", text + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("slice", help="ours beside Table 17's row, from the stored records")
    p = commands.add_parser("workers", help="jobs/s of Table 2's sweep per --workers-per-gpu value; after --, the "
                                            "Table 2 script's arguments")
    p.add_argument("per_gpu", type=int, nargs="+", help="--workers-per-gpu values")
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    if args.command == "slice":
        return beside_paper()
    return workers(args.per_gpu, argv[split + 1:])


if __name__ == "__main__":
    from mnog import mkl
    from mnog.errors import cli
    mkl.reexec()
    sys.exit(cli(main))
