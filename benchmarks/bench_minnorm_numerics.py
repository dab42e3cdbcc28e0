"""Does Table 5's MinNorm-OG result rest on float32 rounding?

    .venv/bin/python -m benchmarks.bench_minnorm_numerics [--seeds 5]      # after make table5

G on the trained Data Poisoning MLP is ill-conditioned (cond ≈ 1e7-1e11, docs/authors-code.md), so
P_G(θ) moves with rounding: with the order of G's rows (the subsample B'_r is a random
permutation of the 50 retain points, drawn from the job's seed), and with G's precision.
This re-runs MinNorm-OG's selected configuration of Table 5 (paper profile: the 10 trials
of `make table5`, read from its records) at T = 100 and T = 1000 with `--seeds` different
seeds, G in float32 and in float64, and prints the median sup error over the trials for
each, beside the next-best method's median. Nothing else changes between the runs; the
spread over seeds is what the row order alone does. Writes results/bench/minnorm_numerics.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys

import numpy as np
from tabulate import tabulate

import mnog
from mnog import poisoning
from mnog.experiment import prepared
from mnog.metrics import sup_error
from mnog.results import RESULTS, RecordStore, device_name, provenance, write_json
from mnog.sweep import select_best, summarize
from mnog.training import load_only


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds (row orders of G) per precision")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    cfg = poisoning.PROFILES["paper"]
    experiment = poisoning.DataPoisoning(cfg)
    store = RecordStore(RESULTS / "table5" / "records.jsonl")
    wanted = {job.key(experiment.setting(), t) for job in poisoning.jobs(cfg) for t in experiment.seeds()}
    records = [r for r in store.load() if r["key"] in wanted]        # the default protocol's records
    best = select_best(summarize(records, "sup_error"), n=cfg.trials)
    minnorm = best[(best["method"] == "MinNorm-OG") & best["epochs"].isin([100, 1000])]
    if minnorm.empty:
        sys.exit("no Table 5 records at the paper profile: run `make table5` first")
    with load_only():
        poisoned, grid = prepared(experiment).evaluation
    retain, forget = experiment.data(experiment.seeds())

    rows, out = [], []
    for _, row in minnorm.iterrows():
        epochs, config = int(row["epochs"]), json.loads(row["config"])
        others = best[(best["epochs"] == epochs) & (best["method"] != "MinNorm-OG")]
        runner_up = others.loc[others["median"].idxmin()]
        for precision in ("float32", "float64"):
            medians = []
            for seed in range(args.seeds):
                model = copy.deepcopy(poisoned)
                mnog.unlearn(model, "MinNorm-OG", forget=forget, retain=retain, loss="mse", epochs=epochs,
                             seed=seed, on_nonfinite="ignore", **{**config, "precision": precision})
                medians.append(float(np.median(sup_error(model, grid).numpy())))
            out.append({"epochs": epochs, "precision": precision, "config": config, "medians": medians})
            rows.append([epochs, precision, f"{row['median']:.3g}", " ".join(f"{m:.3g}" for m in medians),
                         f"{min(medians):.3g} – {max(medians):.3g}", f"{statistics.stdev(medians):.2g}"
                         if len(medians) > 1 else "—", f"{runner_up['method']} {runner_up['median']:.3g}"])
    print(f"MinNorm-OG's selected Table 5 configurations re-run with {args.seeds} seeds; {device_name()}")
    print(tabulate(rows, headers=["T", "G", "Table 5 (float32)", "median per seed", "range", "sd",
                                  "next method"], tablefmt="github"))
    write_json(RESULTS / "bench" / "minnorm_numerics.json", {"runs": out, "provenance": provenance()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
