"""Jobs per second of Table 5's smoke sweep on every executor: serial, local pools, Ray.

    .venv/bin/python -m benchmarks.bench_executors [--grid-values 1 2] [--workers 1 2] [--no-ray]

Trains the smoke profile's θ* once (in $MNOG_RESULTS, by default a temporary folder), then
runs the same sweep from an empty record store on each executor and prints, per run, the
wall time from creating the executor to the last stored record (worker start-up included),
the executor's start-up alone, and jobs per second with and without it; the last column
says whether the records equal the serial run's at the same torch thread count (a different
count changes float reductions in the last bits). Ray runs as a local instance (ray.init)
with one CPU and one torch thread per task.

Measured results, with machine and date: docs/scaling.md#benchmark.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tabulate import tabulate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid-values", type=int, nargs="+", default=[1, 2],
                        help="values per Table 7 axis: 1 is the smoke sweep (16 jobs), 2 gives 116 jobs")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="local pool sizes")
    parser.add_argument("--ray", action=argparse.BooleanOptionalAction, default=True, help="include Ray")
    args = parser.parse_args(argv)
    # Before mnog is imported: every path below it (the θ* cache, the stores) goes there.
    os.environ.setdefault("MNOG_RESULTS", tempfile.mkdtemp(prefix="mnog-bench-executors-"))

    import torch

    from mnog import executors, poisoning
    from mnog.experiment import Runner, _load, _run, prepared
    from mnog.results import RESULTS, RecordStore, device_name
    from mnog.sweep import run_sweep

    cores = executors.cpu_cores()
    backends = [("serial", "1 thread", lambda: executors.Serial(), 1),
                ("serial", f"{cores} threads", lambda: executors.Serial(), cores)]
    backends += [("local", f"{n} worker(s)", lambda n=n: executors.Local(n), max(1, cores // n)) for n in args.workers]
    if args.ray:
        backends.append(("ray", f"local instance, {cores} CPUs", lambda: executors.Ray(), 1))

    rows = []
    for grid_values in args.grid_values:
        cfg = replace(poisoning.PROFILES["smoke"], grid_values=grid_values, budgets=(10, 100))
        experiment = poisoning.DataPoisoning(cfg)
        prepared(experiment)  # θ* trained once, outside the timings
        jobs, runner = poisoning.jobs(cfg), Runner(_load, _run, experiment)  # what mnog.experiment.sweep runs
        serial = {}  # torch threads -> the serial run's metrics
        for name, detail, make, threads in backends:
            torch.set_num_threads(threads)  # the driver's own count: what a serial job computes with
            store = RecordStore(Path(tempfile.mkdtemp(dir=RESULTS)) / "records.jsonl")
            start = time.perf_counter()
            executor = make()
            executor.start()  # worker processes (local) or the Ray instance, timed apart
            started = time.perf_counter() - start
            with executor:
                records = run_sweep(jobs, experiment.seeds(), runner, store, experiment.setting(),
                                    desc=f"{name} {detail}", executor=executor)
            wall = time.perf_counter() - start
            metrics = {r["key"]: r["metrics"] for r in records}
            if name == "serial":
                serial[threads] = metrics
            rows.append([len(jobs), name, detail, threads, f"{wall:.1f}", f"{started:.1f}",
                         f"{len(jobs) / wall:.1f}", f"{len(jobs) / (wall - started):.1f}",
                         "—" if name == "serial" else "✓" if metrics == serial[threads] else "✗"])
            torch.set_num_threads(cores)
    print(tabulate(rows, headers=["jobs", "executor", "", "torch threads per job", "wall s", "start-up s",
                                  "jobs/s", "jobs/s after start-up", "records = serial's"],
                   tablefmt="github"))
    print(f"Table 5 smoke sweep (4 trials per job, T ∈ {{10, 100}}) on {device_name()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
