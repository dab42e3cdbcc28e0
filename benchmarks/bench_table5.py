"""Where the time of `make table5` goes, from the records of a run.

    .venv/bin/python -m benchmarks.bench_table5 [--fresh] [--profile cpu]

With --fresh, runs Table 5 from scratch in a temporary results folder and times it
end to end (the paper profile takes ~25 minutes on a 2-core CPU); without it, reads
the records already in results/. Prints the wall time per (T, method) — the sum over
configurations of each batched run (all trials together) — and the totals.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from mnog.config import auto_profile
from mnog.results import RESULTS, ROOT


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fresh", action="store_true", help="run make table5 from scratch and time it")
    parser.add_argument("--profile", default=os.environ.get("PROFILE") or "auto",
                        help="the run's profile (auto: as make's, cpu without a GPU)")
    args = parser.parse_args(argv)
    if args.profile == "auto":
        args.profile = auto_profile()

    results, total = RESULTS, None
    if args.fresh:
        results = Path(tempfile.mkdtemp(prefix="mnog-bench-"))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "artifact.table5_data_poisoning", "--profile", args.profile,
                        "--no-enforce"], cwd=ROOT, env={**os.environ, "MNOG_RESULTS": str(results)}, check=True)
        total = time.perf_counter() - start
    store = results / "table5" / "records.jsonl"
    if not store.exists():
        sys.exit(f"no Table 5 records in {store}; run make table5 or pass --fresh")
    config_path = results / "table5" / args.profile / "config.json"
    if not config_path.exists():
        sys.exit(f"no Table 5 run at profile {args.profile} in {results}; pass --profile (make table5 runs cpu "
                 "without a GPU) or --fresh")
    config = json.loads(config_path.read_text())
    wanted = config["setting"]
    rows = [json.loads(line) for line in store.read_text().splitlines()]
    frame = pd.DataFrame([{"T": r["epochs"], "method": r["method"], "config": json.dumps(r["config"]),
                           "s": r["wall_s"]}
                          for r in rows if r["setting"] == wanted])
    per_run = frame.groupby(["T", "method", "config"])["s"].sum()       # one batched run per configuration
    table = per_run.groupby(["T", "method"]).agg(["count", "sum"]).reset_index()
    table.columns = ["T", "method", "configurations", "seconds"]
    print(tabulate(table.values.tolist(), headers=list(table.columns), tablefmt="github", floatfmt=".1f"))
    print(f"sweep total: {table['seconds'].sum():.0f} s over {int(table['configurations'].sum())} configurations")
    if total is not None:
        print(f"make table5 (profile {args.profile}) end to end: {total:.0f} s "
              f"({total / 60:.1f} min) on {rows[0]['provenance']['device']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
