"""Speed of the colored-image experiments' pieces on the machine at hand.

    .venv/bin/python -m benchmarks.bench_images [--width 16]

1. Training throughput (images/s) of ColorResNet-18 at 32×32 and ColorResNet-50 at 64×64
   (batch 256; on a GPU in bf16 autocast and channels-last with data on the GPU, as
   `mnog.training.train_classifier` runs).
2. Seconds per unlearning epoch of every method (the Table 3 quantity) on a small,
   synthetic Label-Erasure-shaped problem: two-head ColorResNet-18 (`--width`), 32×32
   inputs, 512 forget and 512 retain samples, batch 256 (two steps per epoch), T = 3,
   n_pert = 50; the first epoch is excluded as warm-up, CUDA synchronized around timing.
Writes results/bench/images-<device>.json.
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


def unlearning_epoch_seconds(width: int, device, epochs: int = 3) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    make = lambda n: (torch.randn(n, 3, 32, 32, generator=g).to(device),  # noqa: E731
                      (torch.randint(10, (n,), generator=g).to(device), torch.randint(3, (n,), generator=g).to(device)))
    forget, retain = make(512), make(512)
    model = ColorResNet(18, heads=(10, 3), width=width).to(device)
    # Warm-up (allocator, cuDNN's algorithm search), not timed.
    mnog.unlearn(copy.deepcopy(model), "GD", forget, retain, "cross_entropy", epochs=2, batch_size=256, eta=1e-4)
    seconds = {}
    for name, method in METHODS.items():
        hp = {k: v for k, v in HYPERPARAMETERS.items() if k in method.hyperparameters()}
        times = []
        for T in (1, epochs):  # T = 1 measures set-up and warm-up; the difference is per epoch
            copy_ = copy.deepcopy(model)
            sync(device)
            start = time.perf_counter()
            mnog.unlearn(copy_, name, forget, retain, "cross_entropy", epochs=T, batch_size=256, **hp)
            sync(device)
            times.append(time.perf_counter() - start)
        seconds[name] = (times[1] - times[0]) / (epochs - 1)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=16, help="ResNet-18 width for the unlearning timings")
    parser.add_argument("--steps", type=int, default=0, help="training batches timed (default 4 CPU, 40 GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="only ResNet-18 throughput, with torch.compile")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
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
