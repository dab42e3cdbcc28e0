"""Where does MinNorm-OG's projection act? Per part of the model (the body, BatchNorm's scales and
shifts, the heads), at each experiment's θ*: the part's share of ‖θ‖², and the share of the part
that the projection keeps, ‖(P_G θ)_part‖/‖θ_part‖, for G over all of θ and for G over the part
alone (the ablation's scopes). Read on the ablation's cached models (run `make ablation` first,
or the experiments' own targets).

    python -m benchmarks.diagnose_scopes --profile cpu --dataset folder:PATH/cifar10-jpeg.tar.gz

The first projection of MinNorm-OG's first step, on every trial: the subsample of the first
retain batch (n_pert 50, class-balanced for a classifier), BatchNorm as in the experiments
(the subsample's batch statistics). It picks the ablation's scopes: a part that holds most of
θ but none of the span, or the reverse, is one whose shrinkage alone is worth separating.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses

import pandas as pd
import torch
from tabulate import tabulate

from mnog import projection
from mnog.ablation import MODULES, PROFILES, experiment_config
from mnog.batches import as_batch, retain_subset
from mnog.experiment import prepared
from mnog.methods import perturbation_subsample
from mnog.projection import span_projection
from mnog.sweep import retain_seed


def parts(model) -> dict[str, list[str]]:
    """{part: parameter names}: the ablation's scopes, BatchNorm's parameters on their own."""
    names = list(projection.trainable_parameters(model))
    heads = projection.scope_parameters(model, "heads")
    body = projection.scope_parameters(model, "body")
    batchnorm = [n for n in names if n not in heads and n not in body]
    return {k: v for k, v in (("body", body), ("BatchNorm", batchnorm), ("heads", heads)) if v}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--dataset", default="", help="as the ablation's --dataset (empty: the profile's)")
    args = parser.parse_args(argv)
    cfg = dataclasses.replace(PROFILES[args.profile], dataset=args.dataset)
    rows = []
    for name in cfg.experiments:
        settings = experiment_config(cfg, name)
        experiment = MODULES[name].plan(settings).sweeps[0].experiment
        n_pert = getattr(settings, "n_pert", 0) or 50                # the grids' n_pert
        state = prepared(experiment)
        protocol = experiment.protocol()
        for seed, trial in state.trials.items():
            model = copy.deepcopy(trial.initial).train()
            retain = as_batch(trial.retain, None, "retain")
            kept = retain_subset(len(retain), protocol.get("p_retain", 1.0), retain_seed(seed), None)
            retain = retain if kept is None else retain.take(kept.to(retain.inputs.device))
            batch = retain.take(torch.arange(min(len(retain), protocol.get("batch_size") or len(retain)),
                                             device=retain.inputs.device))
            generator = torch.Generator(device=batch.inputs.device).manual_seed(seed)
            subsample = batch.take(perturbation_subsample(batch, n_pert, experiment.task, generator))
            theta = {n: t.detach() for n, t in projection.trainable_parameters(model).items()}
            total = sum(float(t.double().pow(2).sum()) for t in theta.values())
            full, _, _ = span_projection(model, subsample.inputs, experiment.task)
            for part, names in parts(model).items():
                own, _, _ = span_projection(model, subsample.inputs, experiment.task, parameters=names)
                norm = sum(float(theta[n].double().pow(2).sum()) for n in names)
                kept_full = sum(float(full[n].double().pow(2).sum()) for n in names)
                kept_own = sum(float(own[n].double().pow(2).sum()) for n in names)
                rows.append({"experiment": name, "trial": seed, "part": part,
                             "parameters": sum(theta[n].numel() for n in names), "share of ‖θ‖²": norm / total,
                             "kept, G over θ": (kept_full / norm) ** 0.5,
                             "kept, G over the part": (kept_own / norm) ** 0.5})
    table = pd.DataFrame(rows).groupby(["experiment", "part"], sort=False).mean(numeric_only=True).drop(columns="trial")
    print(f"MinNorm-OG's first projection at θ*, profile {args.profile}, mean over the trials: the part's share of "
          "‖θ‖², and ‖(P_G θ)_part‖ / ‖θ_part‖ with G over all of θ and over the part alone\n")
    print(tabulate(table.reset_index(), headers="keys", floatfmt=".4g", showindex=False, tablefmt="github"))


if __name__ == "__main__":
    main()
