"""Speed of the colored-image experiments' pieces on the machine at hand.

    .venv/bin/python -m benchmarks.bench_images [--width 16]
    .venv/bin/python -m benchmarks.bench_images --minnorm [--width 64]   # part 3 alone, both BatchNorm modes

1. Training throughput (images/s) of ColorResNet-18 at 32×32 and ColorResNet-50 at 64×64
   (batch 256; on a GPU in bf16 autocast and channels-last with data on the GPU, as
   `mnog.training.train_classifier` runs).
2. Seconds per unlearning epoch of every method (the Table 3 quantity) on a small,
   synthetic Label-Erasure-shaped problem: two-head ColorResNet-18 (`--width`), 32×32
   inputs, 512 forget and 512 retain samples, batch 256 (two steps per epoch), T = 3,
   n_pert = 50; the first epoch is excluded as warm-up, CUDA synchronized around timing.
3. With --minnorm: only MinNorm-OG's epoch against GD's on the same problem (its subsample is
   not empty: 5 images of each of 10 classes), with BatchNorm in train mode (batch statistics,
   the authors' reading) and in eval mode (per-sample gradients); the goal is MinNorm-OG ≤ 5×
   GD in eval mode (`--samples`, `--batch`, `--n-pert` shrink the problem).
Writes results/bench/images-<device>.json (--minnorm: minnorm-<device>.json).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time

import torch
from tabulate import tabulate

import mnog
from mnog.colors import CIFAR_NORM, ERASURE_RGB, ColoredImages
from mnog.methods import METHODS
from mnog.models import ColorResNet
from mnog.results import RESULTS, device_name, provenance, write_json
from mnog.training import Phase, SGDConfig, train_classifier

HYPERPARAMETERS = dict(eta=1e-4, lambda_reg=0.1, gamma_reg=0.8, lambda_ga=0.01, sigma=0.1, t_gd=0, t_proj=1,
                       n_pert=50)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_throughput(depth: int, size: int, width: int, device, steps: int, compile: bool = False) -> float:
    """Images per second of `train_classifier`, timed over `steps` batches after one warm-up epoch."""
    n = 256 * steps
    labels = torch.randint(10, (n,), device=device)
    data = ColoredImages(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, device=device),
                         colors=torch.zeros(n, dtype=torch.long, device=device), labels=(labels, labels % 3),
                         palette=ERASURE_RGB, norm=CIFAR_NORM)
    model = ColorResNet(depth, heads=(10, 3), width=width if depth == 18 else 64).to(device)
    sgd = SGDConfig(lr=0.01, batch_size=256)
    train_classifier(model, [Phase(data, 1)], sgd, seed=0, compile=compile, desc="warm-up")
    sync(device)
    start = time.perf_counter()
    train_classifier(model, [Phase(data, 1)], sgd, seed=1, compile=compile, desc=f"ResNet-{depth} {size}×{size}")
    sync(device)
    return n / (time.perf_counter() - start)


def unlearning_epoch_seconds(width: int, device, epochs: int = 3, variants: dict | None = None, samples: int = 512,
                             batch: int = 256, n_pert: int = 50) -> dict[str, float]:
    """Seconds per unlearning epoch of each variant (label -> (method, extra hyperparameters);
    default every method) on `samples` forget and `samples` retain images, batch `batch`."""
    g = torch.Generator().manual_seed(0)
    make = lambda n: (torch.randn(n, 3, 32, 32, generator=g).to(device),  # noqa: E731
                      (torch.randint(10, (n,), generator=g).to(device), torch.randint(3, (n,), generator=g).to(device)))
    forget, retain = make(samples), make(samples)
    model = ColorResNet(18, heads=(10, 3), width=width).to(device)
    # Warm-up (allocator, cuDNN's algorithm search), not timed.
    mnog.unlearn(copy.deepcopy(model), "GD", forget, retain, "cross_entropy", epochs=2, batch_size=batch, eta=1e-4)
    seconds = {}
    for label, (name, extra) in (variants or {name: (name, {}) for name in METHODS}).items():
        method = METHODS[name]
        hp = {k: v for k, v in {**HYPERPARAMETERS, "n_pert": n_pert, **extra}.items() if k in method.hyperparameters()}
        times = []
        for T in (1, epochs):  # T = 1 measures set-up and warm-up; the difference is per epoch
            copy_ = copy.deepcopy(model)
            sync(device)
            start = time.perf_counter()
            mnog.unlearn(copy_, name, forget, retain, "cross_entropy", epochs=T, batch_size=batch, **hp)
            sync(device)
            times.append(time.perf_counter() - start)
        seconds[label] = (times[1] - times[0]) / (epochs - 1)
    return seconds


MINNORM_GOAL = 5.0   # MinNorm-OG's epoch ≤ 5× GD's with eval-mode BatchNorm


def minnorm_against_gd(width: int, device, samples: int, batch: int, n_pert: int) -> int:
    """Part 3: MinNorm-OG's epoch against GD's in both BatchNorm modes; prints and stores the ratios."""
    variants = {"GD": ("GD", {}), "MinNorm-OG, BatchNorm batch": ("MinNorm-OG", {"bn_mode": "batch"}),
                "MinNorm-OG, BatchNorm eval": ("MinNorm-OG", {"bn_mode": "eval"})}
    seconds = unlearning_epoch_seconds(width, device, variants=variants, samples=samples, batch=batch, n_pert=n_pert)
    gd = seconds["GD"]
    ratio = seconds["MinNorm-OG, BatchNorm eval"] / gd
    print(f"\ndevice: {device_name()} · torch {torch.__version__} · ColorResNet-18 width {width}, two heads, {samples} "
          f"forget and {samples} retain images, batch {batch}, n_pert {n_pert} ({n_pert // 10} images per class)")
    print(tabulate([[label, f"{s:.3f}", f"{s / gd:.2f}"] for label, s in seconds.items()],
                   headers=["", "s / unlearning epoch", "÷ GD"], tablefmt="github"))
    print(f"goal MinNorm-OG ≤ {MINNORM_GOAL:g}× GD in eval mode: {'met' if ratio <= MINNORM_GOAL else 'NOT met'} "
          f"({ratio:.2f}×)")
    write_json(RESULTS / "bench" / f"minnorm-{device.type}.json",
               {"device": device_name(), "width": width, "samples": samples, "batch": batch, "n_pert": n_pert,
                "seconds_per_epoch": seconds, "eval_ratio_to_gd": ratio, "goal": MINNORM_GOAL,
                "provenance": provenance()})
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=0, help="ResNet-18 width for the unlearning timings (default 16; "
                                                             "--minnorm: 64)")
    parser.add_argument("--steps", type=int, default=0, help="training batches timed (default 4 CPU, 40 GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="only ResNet-18 throughput, with torch.compile")
    parser.add_argument("--minnorm", action="store_true", help="only MinNorm-OG's epoch against GD's, both "
                                                               "BatchNorm modes (width 64 unless --width)")
    parser.add_argument("--samples", type=int, default=512, help="--minnorm: forget and retain images each")
    parser.add_argument("--batch", type=int, default=256, help="--minnorm: unlearning batch")
    parser.add_argument("--n-pert", type=int, default=50, help="--minnorm: MinNorm-OG's subsample")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.minnorm:
        return minnorm_against_gd(args.width or 64, device, args.samples, args.batch, args.n_pert)
    args.width = args.width or 16
    steps = args.steps or (40 if device.type == "cuda" else 4)
    if args.compile:
        print(f"ColorResNet-18 (width 64), 32×32, torch.compile: "
              f"{training_throughput(18, 32, 64, device, steps, compile=True):,.0f} images/s on {device_name()}")
        return 0

    widths = sorted({64, args.width}, reverse=True)
    throughput = [*([f"ColorResNet-18 (width {w}), 32×32", training_throughput(18, 32, w, device, steps)]
                    for w in widths),
                  ["ColorResNet-50, 64×64", training_throughput(50, 64, 64, device, max(1, steps // 4))]]
    per_epoch = unlearning_epoch_seconds(args.width, device)
    gd = per_epoch["GD"]
    print(f"\ndevice: {device_name()} · torch {torch.__version__}")
    print(tabulate([[name, f"{ips:,.0f}"] for name, ips in throughput], headers=["training", "images/s"],
                   tablefmt="github"))
    print(tabulate([[name, f"{s:.3f}", f"{s / gd:.2f}"] for name, s in per_epoch.items()],
                   headers=["method", f"s / unlearning epoch (width {args.width})", "÷ GD"], tablefmt="github"))
    write_json(RESULTS / "bench" / f"images-{device.type}.json",
               {"device": device_name(), "throughput": throughput, "seconds_per_epoch": per_epoch,
                "width": args.width, "provenance": provenance()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
