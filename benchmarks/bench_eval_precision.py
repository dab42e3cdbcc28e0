"""May the image metrics' forward passes run in bf16? Predictions and metrics of float32 against
bf16-autocast evaluation (mnog.metrics.scoring), on one Label Erasure profile's trained models.

    python -m benchmarks.bench_eval_precision --profile cpu --figure 6 \\
        --dataset folder:PATH/cifar10-jpeg.tar.gz

For every trial's initial and GT model (trained and cached by `make figure6` at that profile,
else trained now): each head's argmax on the gray, red and green copy of every test image in
both precisions, the number that differ per 10,000 predictions, the two metrics (retain quality,
forget-quality error) both ways, and seconds per evaluation. The rule: bf16 may replace
float32 where at most one prediction in 10,000 changes; the sweeps keep float32
(--eval-precision float32) by default. Writes results/benchmarks/eval-precision-<profile>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from tabulate import tabulate

from mnog.colors import ERASURE_RGB, GRAY, GREEN, RED, render
from mnog.erasure import PROFILES, LabelErasure
from mnog.experiment import prepared
from mnog.metrics import erasure_metrics, scoring
from mnog.results import RESULTS, device_name, provenance, write_json


def predictions(model, images, norm, precision: str, batch_size: int = 500) -> torch.Tensor:
    """(copies × heads, images): each head's argmax on each colored copy of every image."""
    rows = []
    with scoring(model, precision):
        for color in (GRAY, RED, GREEN):
            heads = [[], []]
            for part in images.split(batch_size):
                outputs = model(render(part, torch.full((len(part),), color, device=part.device), ERASURE_RGB, norm))
                for h, o in enumerate(outputs):
                    heads[h].append(o.float().argmax(-1))
            rows += [torch.cat(h) for h in heads]
    return torch.stack(rows)


def timed(fn):
    start = time.perf_counter()
    value = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--figure", default="6")
    parser.add_argument("--dataset", default="", help="as the figure scripts' --dataset (empty: the profile's)")
    args = parser.parse_args(argv)
    cfg = dataclasses.replace(PROFILES[args.profile], dataset=args.dataset or PROFILES[args.profile].dataset)
    experiment = LabelErasure(cfg, args.figure)
    state = prepared(experiment)
    images, labels, _ = state.evaluation
    norm = experiment.panel.norm
    rows, changed, total = [], 0, 0
    for seed, trial in state.trials.items():
        for name, model in (("initial", trial.initial), ("GT", trial.references["gt"])):
            full, half = (predictions(model, images, norm, precision) for precision in ("float32", "bfloat16"))
            (q32, e32), s32 = timed(lambda: erasure_metrics(model, images, labels, norm, precision="float32"))
            (q16, e16), s16 = timed(lambda: erasure_metrics(model, images, labels, norm, precision="bfloat16"))
            differ = int((full != half).sum())
            changed, total = changed + differ, total + full.numel()
            rows.append([f"trial {seed}", name, full.numel(), differ, 1e4 * differ / full.numel(),
                         q32, q16, e32, e16, s32, s16])
    headers = ["trial", "model", "predictions", "changed", "per 10,000", "retain quality f32", "bf16",
               "forget error f32", "bf16", "s f32", "s bf16"]
    print(tabulate(rows, headers=headers, tablefmt="github", floatfmt=".4g"))
    rate = 1e4 * changed / total
    verdict = "bf16 meets" if rate <= 1 else "bf16 misses"
    print(f"{changed} of {total} predictions changed ({rate:.2f} per 10,000): {verdict} the rule "
          f"(≤ 1 per 10,000) on {device_name()}")
    out = RESULTS / "benchmarks" / f"eval-precision-{args.profile}.json"
    write_json(out, {"profile": args.profile, "figure": args.figure, "dataset": args.dataset, "rows": rows,
                     "headers": headers, "changed_per_10000": rate, "provenance": provenance()})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
