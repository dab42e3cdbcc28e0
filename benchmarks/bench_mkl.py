"""MKL's kernels on this CPU with and without mnog's library (mnog/mkl.py), measured in one run.

    python -m benchmarks.bench_mkl [--steps 300]

Each setting runs in a child process of its own, one after the other (the library only works
from process start, through LD_PRELOAD): MKL as torch ships it (LD_PRELOAD without the library,
MNOG_MKL_INTEL=0), then with the library preloaded. Each child measures a 2000³ sgemm, the
batched product of Table 5's hidden layer (10 members, 300 × 300 by 300 × 55), one step of
training θ* (the 10-member 1-300-300-1 ensemble, full batch, fused AdamW) and one MinNorm-OG
job at T = 100 on that ensemble after those training steps (Table 6's configuration: η 1e-3, λ_reg 0.1, γ_reg 0.9,
T_GD 50, T_proj 2, n_pert 50; the cost does not depend on the weights). On an Intel CPU both settings
take the same kernels and the ratios are ~1.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from tabulate import tabulate

import mnog
from mnog import mkl
from mnog.datasets import SinePoisoning
from mnog.models import mlp
from mnog.results import device_name
from mnog.tasks import get_task


def _per_call(f, calls: int) -> float:
    f()
    start = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - start) / calls


def child(steps: int) -> dict:
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    a = torch.randn(2000, 2000)
    weights, inputs = torch.randn(10, 300, 300), torch.randn(10, 300, 55)
    sgemm = 2 * 2000 ** 3 / _per_call(lambda: a @ a, 5) / 1e9
    bmm = _per_call(lambda: torch.bmm(weights, inputs), steps) * 1e3

    task, (retain, forget) = get_task("mse"), SinePoisoning().sample_trials(list(range(1, 11)))
    model = mnog.Ensemble([mlp(300) for _ in range(10)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x, y = torch.cat([retain[0], forget[0]], 1), torch.cat([retain[1], forget[1]], 1)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        task.loss(model(x), y).backward()
        optimizer.step()
    train = _per_call(train_step, steps) * 1e3

    config = {"eta": 1e-3, "lambda_reg": 0.1, "gamma_reg": 0.9, "t_gd": 50, "t_proj": 2, "n_pert": 50}
    start = time.perf_counter()
    mnog.unlearn(model, "MinNorm-OG", forget=forget, retain=retain, loss=task, epochs=100, seed=0,
                 on_nonfinite="ignore", **config)
    job = time.perf_counter() - start
    return {"code_path": mkl.code_path(), "loaded": mkl.preloaded(), "sgemm": sgemm, "bmm": bmm, "train": train,
            "job": job}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="calls timed per small product and training step")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps)))
        return 0
    library = mkl.library()
    if library is None:
        print("mnog's MKL library could not be built (no C compiler?): nothing to compare", file=sys.stderr)
        return 1
    others = " ".join(p for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split() if p != str(library))
    settings = {"MKL as shipped": {"LD_PRELOAD": others, mkl.ENV: "0"},
                "with mnog's library": {"LD_PRELOAD": f"{library} {others}".strip(), mkl.ENV: str(library)}}
    rows = {}
    for name, env in settings.items():
        done = subprocess.run([sys.executable, "-m", "benchmarks.bench_mkl", "--child", "--steps", str(args.steps)],
                              env={**os.environ, **env}, capture_output=True, text=True, check=True)
        rows[name] = json.loads(done.stdout.splitlines()[-1])
    base, fast = rows.values()
    table = [[name, r["code_path"], r["loaded"], r["sgemm"], r["bmm"], r["train"], 1e3 / r["train"], r["job"]]
             for name, r in rows.items()]
    table.append(["speed-up with the library", "", "", fast["sgemm"] / base["sgemm"], base["bmm"] / fast["bmm"],
                  base["train"] / fast["train"], base["train"] / fast["train"], base["job"] / fast["job"]])
    print(f"MKL on {device_name()} (vendor {mkl.cpu_vendor()}, {torch.get_num_threads()} threads):")
    print(tabulate(table, headers=["setting", "MKL code path", "loaded", "sgemm 2000³ GFLOP/s", "bmm ms",
                                   "θ* step ms", "θ* epochs/s", "MinNorm-OG T=100 job s"],
                   tablefmt="github", floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
