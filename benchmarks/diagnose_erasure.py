"""Why does (or doesn't) MinNorm-OG come out ahead in a Label Erasure setting? A diagnostic run
on one profile's cached trials (train them first: `make figure6 PROFILE=cpu ...`).

    python -m benchmarks.diagnose_erasure --profile cpu --figure 6 \\
        --dataset folder:PATH/cifar10-jpeg.tar.gz

It answers four questions, on every trial, and prints one table per question:
1. Does θ* interpolate its training set? Train accuracy (class, color, both) of the initial
   model on D_r and on D_f.
2. How large is each projection? ‖P_{G⊥}θ‖ / ‖θ‖, the columns k of G (subsample × heads)
   and G's numerical rank, per projection step of MinNorm-OG.
3. How do retain quality and forget error move, step by step, for MinNorm-OG against GD at
   the same η?
4. Does BatchNorm's setting (docs/authors-code.md#batchnorm-sees-both-batches) matter? Questions 2
   and 3 under both bn_stats.
Writes results/diagnostics/figure<N>-<profile>/steps.csv and projections.csv.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses

import pandas as pd
from tabulate import tabulate

from mnog.erasure import PROFILES, LabelErasure
from mnog.experiment import prepared
from mnog.loop import unlearn
from mnog.metrics import erasure_metrics, fit_accuracy
from mnog.results import RESULTS
from mnog.sweep import Job, retain_seed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--figure", default="6")
    parser.add_argument("--dataset", default="", help="as the figure scripts' --dataset (empty: the profile's)")
    parser.add_argument("--eta", type=float, default=1e-3, help="η of both methods")
    parser.add_argument("--lambda-reg", type=float, default=1e-3,
                        help="MinNorm-OG's λ_reg (default: its closest configuration at Figure 6's cpu profile)")
    parser.add_argument("--gamma-reg", type=float, default=0.8, help="MinNorm-OG's γ_reg")
    args = parser.parse_args(argv)
    cfg = PROFILES[args.profile]
    cfg = dataclasses.replace(cfg, figure=args.figure, **({"dataset": args.dataset} if args.dataset else {}))
    experiment = LabelErasure(cfg, args.figure)
    setting = experiment.panel
    state = prepared(experiment)
    images, labels, _ = state.evaluation
    print(f"Figure {args.figure}, profile {args.profile}: {setting.label()}, {len(state.trials)} trials, "
          f"unlearning batch {setting.batch_size}")

    fits = [{"trial": seed, "set": name, **dict(zip(("class", "color", "both"), fit_accuracy(trial.initial, data)))}
            for seed, trial in state.trials.items() for name, data in (("D_r", trial.retain), ("D_f", trial.forget))]
    print("\n1. Train accuracy of θ* (interpolation: 1.0 everywhere)\n"
          + tabulate(pd.DataFrame(fits), headers="keys", floatfmt=".3f", showindex=False))

    runs = {"GD": {"eta": args.eta},
            "MinNorm-OG": {"eta": args.eta, "lambda_reg": args.lambda_reg, "gamma_reg": args.gamma_reg, "t_proj": 1,
                           "n_pert": cfg.n_pert or 50, "t_gd": 0}}
    steps, projections = [], []
    for bn_stats in ("both", "loss"):
        protocol = {**experiment.protocol(), "bn_stats": bn_stats}
        for seed, trial in state.trials.items():
            for method, config in runs.items():
                model = copy.deepcopy(trial.initial)

                def record(step: int, epoch: int) -> None:
                    quality, error = erasure_metrics(model, images, labels, setting.norm)
                    model.train()
                    steps.append({"bn_stats": bn_stats, "trial": seed, "method": method, "step": step,
                                  "epoch": epoch, "retain_quality": quality, "forget_error": error})

                record(0, -1)
                job = Job.of(method, setting.epochs, config)
                result = unlearn(model, method, forget=trial.forget, retain=trial.retain, loss=experiment.task,
                                 epochs=setting.epochs, seed=experiment.run_seed(job, seed),
                                 retain_seed=retain_seed(seed), on_step=record, **protocol, **config)
                projections += [{"bn_stats": bn_stats, "trial": seed, "step": p.step, "k": p.rows,
                                 "rank": int(p.rank), "strength": p.strength,
                                 "orthogonal_share": float(p.orthogonal_share)} for p in result.projections]
    steps, projections = pd.DataFrame(steps), pd.DataFrame(projections)
    out = RESULTS / "diagnostics" / f"figure{args.figure}-{args.profile}"
    out.mkdir(parents=True, exist_ok=True)
    steps.to_csv(out / "steps.csv", index=False)
    projections.to_csv(out / "projections.csv", index=False)

    by_step = projections.groupby(["bn_stats", "step"]).agg(
        k=("k", "mean"), rank=("rank", "mean"), strength=("strength", "first"),
        orthogonal_share=("orthogonal_share", "mean")).reset_index()
    print("\n2. MinNorm-OG's projections (mean over trials): ‖P_G⊥θ‖/‖θ‖, k columns of G, its rank\n"
          + tabulate(by_step, headers="keys", floatfmt=".4g", showindex=False))
    moving = steps.groupby(["bn_stats", "method", "step"])[["retain_quality", "forget_error"]].mean().unstack("method")
    moving.columns = [f"{metric} {method}" for metric, method in moving.columns]
    print(f"\n3-4. Retain quality and forget error step by step (mean over trials), η = {args.eta:g}\n"
          + tabulate(moving.reset_index(), headers="keys", floatfmt=".4f", showindex=False))
    print(f"\nwrote {out}/steps.csv, projections.csv")


if __name__ == "__main__":
    main()
