"""What scoring one job costs in Label Erasure's sweep: its paper metrics (erasure_metrics) and
the field's (mnog.experiment.field_metrics), at Figure 6's `cpu` shapes, by batch size and by
the field metrics' sample limits.

    python -m benchmarks.bench_scoring [--repeats 3]

A ColorResNet-18 of width 8 with two heads (10 classes, 3 colors), untrained (the cost does not
depend on the weights), on random 32×32 images: 1,000 test images shown in 3 colors for the
paper's metrics; forget 20, retain 1,000 and test 1,000 for the field's, or the `cpu` profile's
fixed subsamples (--field-retain 500 --field-test 500). Prints seconds per job and trial (the
median of the repeats) for each variant.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from tabulate import tabulate

from mnog.colors import CIFAR_NORM
from mnog.evaluation import evaluate
from mnog.experiment import field_sets
from mnog.metrics import erasure_metrics
from mnog.models import ColorResNet
from mnog.results import device_name


class _Trial:
    """What field_sets reads of a Trial."""
    def __init__(self, forget, retain):
        self.forget, self.retain, self.seed = forget, retain, 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, reference = (ColorResNet(18, heads=(10, 3), width=8) for _ in range(2))

    def data(n):
        return (torch.rand(n, 3, 32, 32) * 2 - 1, (torch.randint(0, 10, (n,)), torch.randint(0, 3, (n,))))
    trial, test = _Trial(data(20), data(1000)), data(1000)
    images, labels = torch.randint(0, 256, (1000, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (1000,))

    def job(paper_batch: int, batch: int, retain_limit: int, test_limit: int):
        sets = field_sets(trial, test, retain_limit, test_limit)
        gt = evaluate(reference, **sets, n_bootstrap=0, batch_size=batch)      # once per trial in a sweep

        def run():
            erasure_metrics(model, images, labels, CIFAR_NORM, batch_size=paper_batch)
            paper = time.perf_counter()
            evaluate(model, **sets, reference=gt, n_bootstrap=0, batch_size=batch)
            return paper
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            paper = run()
            end = time.perf_counter()
            times.append((paper - start, end - paper))
        return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)

    rows = []
    variants = [(500, 1000, 2000, 0, "before: batches 500 (paper) and 1,000 (field), all samples"),
                (256, 256, 2000, 0, "batch 256 (scoring_batch on a CPU), all samples"),
                (256, 256, 500, 500, "batch 256, the cpu profile's 500 retain + 500 test")]
    for paper_batch, batch, retain_limit, test_limit, note in variants:
        paper, field = job(paper_batch, batch, retain_limit, test_limit)
        rows.append([note, paper, field, paper + field])
    print(f"scoring one job and trial at Figure 6's cpu shapes on {device_name()} "
          f"({torch.get_num_threads()} threads), median of {args.repeats}:")
    print(tabulate(rows, headers=["variant", "paper metrics s", "field metrics s", "total s"], tablefmt="github",
                   floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
