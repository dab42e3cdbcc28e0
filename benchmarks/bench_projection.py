"""Speed of MinNorm-OG's pieces against the authors' approach, on the machine at hand.

    make bench            # or: .venv/bin/python -m benchmarks.bench_projection [--quick]

Rows: the per-sample gradient matrix G for n_pert = 50 (torch.func against a reference
loop of one backward pass per output, as the authors' code; with the maximum difference
between the two) on the Data Poisoning MLP and on a CIFAR-sized ColorResNet-18 (32×32,
two heads, BatchNorm in train mode); the projection step (float64 QR of G, as the authors,
against our float64 Gram solve and the MLP's factored "linear" path); one MinNorm-OG step
against one GD step on the MLP, alone and as an ensemble of the 10 trials. Times are the
median of repeats (single runs for the slow ResNet-18 references).

With eval-mode BatchNorm (bn_mode="eval"): G + projection of a two-head
ColorResNet-18 (`--width`, 32×32, 50 images: 100 rows) by the materialized path (torch.func
vmap of per-sample jacrev) against the layerwise path, and one MinNorm-OG step (projection
of the 50-image subsample, then the AdamW step of a 256-image batch) against one GD step,
each the median of `--repeats` interleaved runs. `--layerwise` runs only these rows
(results/bench/projection-layerwise-<device>.json). Writes results/bench/projection-<device>.json.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch
from tabulate import tabulate

import mnog
from mnog import projection
from mnog.datasets import SinePoisoning
from mnog.models import ColorResNet, mlp
from mnog.results import RESULTS, device_name, provenance, write_json
from mnog.tasks import Task
from mnog.training import train_full_batch

MSE, CE = Task("mse"), Task("cross_entropy")


def timed(fn, repeats: int = 5, warmup: int = 1) -> tuple[float, object]:
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        out = fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def loop_gradients(model, inputs, task) -> torch.Tensor:
    """The authors' approach: one batched forward, then one backward pass per output."""
    scalars = task.scalar_outputs(model(inputs))                           # (N, heads)
    params = [p for p in model.parameters() if p.requires_grad]
    rows = [scalars[i, h] for h in range(scalars.shape[1]) for i in range(scalars.shape[0])]
    G = torch.empty(len(rows), sum(p.numel() for p in params), device=inputs.device)
    for r, out in enumerate(rows):
        grads = torch.autograd.grad(out, params, retain_graph=r < len(rows) - 1)
        G[r] = torch.cat([g.flatten() for g in grads])
    return G


def qr_projection(G: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The authors' projection: float64 QR of G, then Q Qᵀθ."""
    q, _ = torch.linalg.qr(G.T.double())
    return (q @ (q.T @ theta.double())).float()


def gram_projection(G: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Ours on a materialized G: float64 Gram accumulated in column chunks, eigh solve."""
    gram = torch.zeros(len(G), len(G), dtype=torch.float64, device=G.device)
    g_theta = torch.zeros(len(G), dtype=torch.float64, device=G.device)
    for cols, th in zip(G.split(projection.COLUMN_CHUNK, 1), theta.split(projection.COLUMN_CHUNK)):
        cols = cols.double()
        gram += cols @ cols.T
        g_theta += cols @ th.double()
    c, _ = projection._solve(gram, g_theta, projection.RTOL)
    return (c.float() @ G)


class Rows(list):
    """The table's rows, each also printed as soon as it is measured (with peak memory)."""

    def append(self, row):
        super().append(row)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"  {row[0]}: {_fmt(row[2])} vs {_fmt(row[4])} {row[5]}  (peak RSS {peak:.1f} GiB)", flush=True)


def step_times(model, x, y) -> tuple[float, float]:
    """Seconds of one AdamW step on the MSE, and of one projection (n_pert = all of x)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def gd_step():
        optimizer.zero_grad()
        MSE.loss(model(x), y).backward()
        optimizer.step()

    t_gd, _ = timed(gd_step, repeats=50, warmup=10)
    t_proj, _ = timed(lambda: projection.project_out(model, x, MSE, 0.5), repeats=50, warmup=10)
    return t_gd, t_proj


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


def max_diff(a, b) -> float:
    """max |a - b|, a few rows at a time (the ResNet-18's G is 4.5 GB)."""
    return max(float((x - y).abs().max()) for x, y in zip(a.split(8), b.split(8)))


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, the repeats taken in turn (fair under changing load)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync()
            start = time.perf_counter()
            fn()
            _sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def layerwise_rows(rows: Rows, device, width: int, repeats: int) -> None:
    """ColorResNet-18 with eval-mode BatchNorm: the materialized against the layerwise path."""
    g = torch.Generator().manual_seed(0)
    net = ColorResNet(18, heads=(10, 3), width=width).to(device).train()
    with torch.no_grad():                                  # running statistics of a few batches
        for _ in range(3):
            net(torch.randn(64, 3, 32, 32, generator=g).to(device))
    subsample = torch.randn(50, 3, 32, 32, generator=g).to(device)
    d = sum(p.numel() for p in net.parameters())
    spans = {path: (lambda path=path: projection.span_projection(net, subsample, CE, path=path, bn_mode="eval"))
             for path in ("materialized", "layerwise")}
    seconds = interleaved(spans, repeats)
    p_mat, p_lw = (torch.cat([t.flatten() for t in spans[path]()[0].values()])
                   for path in ("materialized", "layerwise"))
    rows.append([f"G + projection, ResNet-18 (width {width}), 2 heads (100 × {d:,}), BN eval",
                 "materialized (vmap of jacrev)", seconds["materialized"], "layerwise", seconds["layerwise"],
                 f"{seconds['materialized'] / seconds['layerwise']:.1f}× faster, rel. diff {rel(p_lw, p_mat):.1e}"])

    # One step of the unlearning loop: AdamW on a batch of 256 (model in train mode); MinNorm-OG
    # first projects (bn_mode="eval", 50-image subsample: the n_pert = 50 of Table 3's extra rows).
    batch = torch.randn(256, 3, 32, 32, generator=g).to(device)
    labels = (torch.randint(10, (256,), generator=g).to(device), torch.randint(3, (256,), generator=g).to(device))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-5)

    def gd_step():
        optimizer.zero_grad()
        CE.loss(net(batch), labels).backward()
        optimizer.step()

    def minnorm_step(path):
        projection.project_out(net, subsample, CE, 0.1, bn_mode="eval", path=path)
        gd_step()

    steps = interleaved({"GD": gd_step, "layerwise": lambda: minnorm_step("layerwise"),
                         "materialized": lambda: minnorm_step("materialized")}, repeats)
    for path in ("layerwise", "materialized"):
        rows.append([f"one step, ResNet-18 (width {width}), batch 256, n_pert 50, BN eval", "GD step", steps["GD"],
                     f"MinNorm-OG step ({path})", steps[path], f"{steps[path] / steps['GD']:.1f}× GD"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the ResNet-18 rows")
    parser.add_argument("--layerwise", action="store_true",
                        help="only the eval-mode BatchNorm ResNet-18 rows (materialized against layerwise)")
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 width of the eval-mode BatchNorm rows")
    parser.add_argument("--repeats", type=int, default=0, help="repeats of those rows (0: 3 on a CPU, 10 on a GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    layerwise_repeats = args.repeats or (10 if device.type == "cuda" else 3)
    rows = Rows()
    if args.layerwise:
        layerwise_rows(rows, device, args.width, layerwise_repeats)
        return report(rows, device, "projection-layerwise")

    # ---- the Data Poisoning MLP, trained on trial 1 for 20,000 epochs (G's conditioning, ----
    # ---- cond ≈ 2e7, is that of a trained model, not of a random initialization) -----------
    (x_r, y_r), (x_f, y_f) = SinePoisoning().sample(1)
    x_r, y_r = x_r.to(device), y_r.to(device)
    model = mlp().to(device)
    train_full_batch(model, torch.cat([x_r, x_f.to(device)]), torch.cat([y_r, y_f.to(device)]), MSE,
                     epochs=20_000, lr=1e-3, desc="MLP for the benchmark")
    t_loop, G_loop = timed(lambda: loop_gradients(model, x_r, MSE))
    t_func, G_func = timed(lambda: mnog.output_gradients(model, x_r, MSE))
    rows.append(["G, MLP (50 × 91,201)", "loop of 50 backward passes", t_loop, "torch.func", t_func,
                 f"max |Δ| {max_diff(G_loop, G_func):.1e}"])
    theta = flat(model)
    t_qr, p_qr = timed(lambda: qr_projection(G_func, theta))
    t_gram, p_gram = timed(lambda: gram_projection(G_func, theta))
    rows.append(["projection P_G(θ), MLP, given G", "float64 QR", t_qr, "float64 Gram + eigh", t_gram,
                 f"rel. diff {rel(p_gram, p_qr):.1e}"])
    t_full_ref = t_loop + t_qr
    t_linear, _ = timed(lambda: projection.span_projection(model, x_r, MSE), repeats=20)
    rows.append(["G + projection, MLP", "loop + QR", t_full_ref, "factored linear path", t_linear, ""])

    t_gd, t_proj = step_times(model, x_r, y_r)
    rows.append(["one step, MLP", "GD step", t_gd, "MinNorm-OG step (projection + GD)", t_gd + t_proj,
                 f"{(t_gd + t_proj) / t_gd:.1f}× GD"])
    (x_e, y_e), _ = SinePoisoning().sample_trials(list(range(1, 11)))
    ensemble = mnog.Ensemble([mlp() for _ in range(10)]).to(device)
    t_gd, t_proj = step_times(ensemble, x_e.to(device), y_e.to(device))
    rows.append(["one step, ensemble of 10 MLPs", "GD step", t_gd, "MinNorm-OG step", t_gd + t_proj,
                 f"{(t_gd + t_proj) / t_gd:.1f}× GD"])

    # ---- ColorResNet-18, 32×32 ------------------------------------------------------------
    if not args.quick:
        warm, repeats = (1, 3) if device.type == "cuda" else (0, 1)
        images = torch.randn(50, 3, 32, 32, device=device)
        net = ColorResNet(18, heads=(10, 3)).to(device).train()
        d = sum(p.numel() for p in net.parameters())
        t_loop, G_loop = timed(lambda: loop_gradients(net, images, CE), repeats, warm)
        t_func, G_func = timed(lambda: mnog.output_gradients(net, images, CE, bn_mode="batch"), repeats, warm)
        rows.append([f"G, ResNet-18, 2 heads (100 × {d:,}), BN batch", "loop of 100 backward passes", t_loop,
                     "torch.func vjp", t_func, f"max |Δ| {max_diff(G_loop, G_func):.1e}"])
        del G_loop, G_func
        t_eval, _ = timed(lambda: mnog.output_gradients(net, images, CE, bn_mode="eval"), repeats, warm)
        rows.append(["G, ResNet-18, 2 heads, BN eval (per sample)", "", None, "torch.func vmap", t_eval, ""])

        # One head, 50 rows: the setting of the authors' reference timings (50 s + 44 s on this CPU).
        net = ColorResNet(18, heads=(10,)).to(device).train()
        theta = flat(net)
        t_loop, G_loop = timed(lambda: loop_gradients(net, images, CE), repeats, warm)
        t_qr, p_qr = timed(lambda: qr_projection(G_loop, theta), repeats, warm)
        t_gram, p_gram = timed(lambda: gram_projection(G_loop, theta), repeats, warm)
        rows.append(["projection, ResNet-18, given G (50 rows)", "float64 QR", t_qr, "float64 Gram + eigh",
                     t_gram, f"rel. diff {rel(p_gram, p_qr):.1e}"])
        del G_loop
        for bn_mode in ("batch", "eval"):
            t_ours, _ = timed(lambda: projection.span_projection(net, images, CE, bn_mode=bn_mode), repeats, warm)
            rows.append([f"G + projection, ResNet-18 (50 rows), BN {bn_mode}", "loop + QR", t_loop + t_qr,
                         "span_projection", t_ours, f"{(t_loop + t_qr) / t_ours:.1f}× faster"])
        del net, theta
        layerwise_rows(rows, device, args.width, layerwise_repeats)
    return report(rows, device)


def report(rows: Rows, device, stem: str = "projection") -> int:
    table = [[name, ref, _fmt(tr), ours, _fmt(to), note] for name, ref, tr, ours, to, note in rows]
    print()
    print(f"device: {device_name()} · torch {torch.__version__} · threads {torch.get_num_threads()}")
    print(tabulate(table, headers=["quantity", "reference", "s", "ours", "s", "note"], tablefmt="github"))
    write_json(RESULTS / "bench" / f"{stem}-{device.type}.json",
               {"device": device_name(), "rows": list(rows), "provenance": provenance()})
    return 0


def _fmt(seconds):
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.1f}"


if __name__ == "__main__":
    sys.exit(main())
