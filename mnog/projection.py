"""MinNorm-OG's projection step: θ ← θ − s·P_{G⊥}(θ) = θ + s·(P_G(θ) − θ)   (SPEC §2, Alg. 1).

G = [g_1 … g_k] holds the gradients, w.r.t. the trainable parameters θ, of k scalar
outputs on a retain subsample (one per sample and head: the regression output, or the
maximum logit). P_G(θ) = G c where (GᵀG) c = Gᵀθ. Everything is vectorized with
torch.func; nothing loops over samples.

Two ways to get the three ingredients GᵀG (k×k), Gᵀθ (k) and G c (d):

* "linear": an `nn.Sequential` of `nn.Linear` layers and elementwise activations (the Data
  Poisoning MLP). Layer l's part of a per-sample gradient is the outer product δ_i a_iᵀ of
  the output's gradient w.r.t. the layer's pre-activation z_i and the layer's input a_i, so
      GᵀG = Σ_l (Δ_l Δ_lᵀ) ⊙ (A_l A_lᵀ + 1[bias]),   Gᵀθ = Σ_l rowsum(Δ_l ⊙ Z_l),
      G c = { (c ⊙ Δ_l)ᵀ A_l ,  (c ⊙ Δ_l)ᵀ 1 }
  (the "ghost norm" identity of per-sample gradient clipping: Goodfellow 2015, Li et al.
  2022). One forward and one backward pass give Δ, A and Z; G is never formed, so a
  projection costs about one GD step instead of O(d·k²).
* "materialized": any model. G is built block by block (one block per parameter) with
  jacrev, then GᵀG is accumulated in float64 over column chunks. BatchNorm: with
  bn_mode="batch" (default, as the authors' code) the subsample goes through one batched
  forward in train mode, so BatchNorm's batch statistics couple the samples and G is the
  Jacobian of the batched outputs; with bn_mode="eval" each sample's gradient is taken
  alone in eval mode (running statistics). Without train-mode BatchNorm the two agree and
  the cheaper per-sample vmap is used.

The k×k system is solved in float64 (solver "gram": eigendecomposition, directions with
eigenvalue below rtol·λ_max count as rank-deficient), or by Householder QR of G in float64
with column pivoting (solver "qr", materialized only; the reference the tests compare
against). A float32 Gram solve is not enough: GᵀG squares G's condition number. G itself
is float32 unless precision="float64" (a float64 copy of θ and the inputs).
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Literal

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vjp, vmap

from mnog.chains import chain_forward, is_linear_chain
from mnog.ensemble import Ensemble
from mnog.errors import NonFiniteError
from mnog.tasks import Task

Path = Literal["auto", "linear", "materialized"]
Solver = Literal["gram", "qr"]
BNMode = Literal["batch", "eval"]
Precision = Literal["float32", "float64"]

# GᵀG is formed and solved in float64 (see _solve). Directions with eigenvalue below
# RTOL·λ_max count as rank-deficient. Any direction kept adds at most ~ε₆₄/√RTOL·|θ| ≈ 1e-8·|θ|
# of rounding error, while a larger RTOL would drop directions that QR resolves: on the
# trained Data Poisoning MLP (cond(G) ≈ 2e7) RTOL = 1e-14 already changes P_G(θ) by 10%.
RTOL = 1e-15
COLUMN_CHUNK = 1 << 18  # float64 columns of G converted at a time when forming GᵀG
ROW_BUDGET = 1 << 27    # chunk_size=None: G is computed in chunks of ≤ 2^27 floats (512 MiB) per head


def couples_samples(model: nn.Module) -> bool:
    """True when a batched forward mixes samples (BatchNorm in train mode)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())


# ---------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------

@torch.no_grad()
def project_out(model: nn.Module, inputs: Tensor, task: Task, strength: float, *,
                path: Path = "auto", solver: Solver = "gram", bn_mode: BNMode = "batch",
                precision: Precision = "float32", rtol: float = RTOL, chunk_size: int | None = None,
                untracked: bool = False) -> Tensor:
    """In place: θ ← θ + s·(P_G(θ) − θ), G from the outputs on `inputs` (the subsample B'_r).

    precision="float64" computes G from a float64 copy of θ and the inputs (SPEC §11: on a
    trained MLP, G is so ill-conditioned that float32 rounding moves P_G(θ)). `untracked`
    writes θ through `.data`, invisible to autograd, so that a graph recorded before the
    projection still back-propagates (with the new weights): the authors' stale gradient.
    Returns the numerical rank of G (one per ensemble member for an Ensemble).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"projection strength must lie in [0, 1], got {strength}")
    params = trainable_parameters(model)
    bad = [name for name, p in params.items() if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteError(f"MinNorm-OG: θ holds NaN/Inf ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}), "
                             "so the projection is undefined (did an earlier step diverge?)")
    if bn_mode == "batch" and couples_samples(model):
        # The authors' batched forward also moves BatchNorm's running statistics to the
        # subsample's statistics; do the same, once, at the same θ.
        model(inputs)
    targets, rank, finite = span_projection(model, inputs, task, path=path, solver=solver, bn_mode=bn_mode,
                                            precision=precision, rtol=rtol, chunk_size=chunk_size)
    if not bool(finite.all()):
        raise NonFiniteError("MinNorm-OG: the per-sample output gradients on the retain subsample, or their "
                             "products with θ, hold NaN/Inf, so the projection is undefined (did training diverge?)")
    for name, p in params.items():
        (p.data if untracked else p).lerp_(targets[name].to(p.dtype), strength)
    return rank


@torch.no_grad()  # torch.func differentiates inside; nothing here may join an outer graph
def span_projection(model: nn.Module, inputs: Tensor, task: Task, *, path: Path = "auto",
                    solver: Solver = "gram", bn_mode: BNMode = "batch", precision: Precision = "float32",
                    rtol: float = RTOL, chunk_size: int | None = None) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """P_G(θ) for every trainable parameter, the numerical rank of G, and a finiteness flag
    (false when G, GᵀG, Gᵀθ or the result holds NaN/Inf)."""
    if path not in ("auto", "linear", "materialized"):
        raise ValueError(f"unknown path {path!r}; choose 'auto', 'linear' or 'materialized'")
    if solver not in ("gram", "qr"):
        raise ValueError(f"unknown solver {solver!r}; choose 'gram' or 'qr'")
    if bn_mode not in ("batch", "eval"):
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose 'batch' or 'eval'")
    if precision not in ("float32", "float64"):
        raise ValueError(f"unknown precision {precision!r}; choose 'float32' or 'float64'")
    base = model.base if isinstance(model, Ensemble) else model
    if inputs.shape[1 if isinstance(model, Ensemble) else 0] == 0:
        # G has no columns (a class-balanced subsample of a batch with more classes than
        # n_pert, SPEC §2's formula): P_G(θ) = 0, so the step only scales θ by 1 − s.
        params = trainable_parameters(model)
        return ({n: torch.zeros_like(p) for n, p in params.items()}, torch.zeros((), dtype=torch.long),
                torch.ones((), dtype=torch.bool))
    if path == "auto":  # an explicit solver wins: QR needs the materialized G
        linear = is_linear_chain(base) and solver != "qr"
    else:
        linear = path == "linear"
    if linear and not is_linear_chain(base):
        raise ValueError("path='linear' needs an nn.Sequential of nn.Linear layers and elementwise activations")
    if linear and solver == "qr":
        raise ValueError("solver='qr' needs the materialized G; use path='materialized' (or 'auto')")
    trainable = [n for n, p in base.named_parameters() if p.requires_grad]

    ensemble = isinstance(model, Ensemble)
    if ensemble and not linear and solver == "qr":
        raise ValueError("solver='qr' (the reference solve, through SciPy) takes one model at a time, not an Ensemble")
    state = model.stacked_parameters() if ensemble else dict(model.named_parameters())
    buffers = model.stacked_buffers() if ensemble else dict(model.named_buffers())
    if precision == "float64":
        state = {n: t.detach().double() for n, t in state.items()}
        buffers = {n: b.double() if b.is_floating_point() else b for n, b in buffers.items()}
        inputs = inputs.double()
    if linear:  # batched over ensemble members natively
        return _linear_chain_span(base, state, trainable, inputs, task, rtol)

    def one_model(state: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor):
        return _materialized_span(base, state, buffers, trainable, x, task, rtol, solver, chunk_size,
                                  inplace=not ensemble)

    with _mode(base, bn_mode):
        if ensemble:
            return vmap(one_model)(state, buffers, inputs)
        return one_model(state, buffers, inputs)


@torch.no_grad()
def output_gradients(model: nn.Module, inputs: Tensor, task: Task, *, bn_mode: BNMode = "batch",
                     chunk_size: int | None = None) -> Tensor:
    """G as a (k, d) matrix: row h·N + i is ∇_θ of head h's scalar output on sample i."""
    if isinstance(model, Ensemble):
        raise ValueError("output_gradients takes one model; use model.member(i)")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    offsets = dict(zip(params, [0, *itertools.accumulate(p.numel() for p in params.values())]))
    matrix = None
    with _mode(model, bn_mode):
        for k, start, piece in _gradient_chunks(model, dict(model.named_parameters()), dict(model.named_buffers()),
                                                list(params), inputs, task, chunk_size):
            if matrix is None:
                matrix = inputs.new_empty(k, sum(p.numel() for p in params.values()))
            for n, g in piece.items():
                matrix[start:start + len(g), offsets[n]:offsets[n] + params[n].numel()] = g.flatten(1)
    return matrix


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """{name: parameter} of θ, under the base module's names for an Ensemble."""
    named = model.stacked_parameters() if isinstance(model, Ensemble) else dict(model.named_parameters())
    return {n: p for n, p in named.items() if p.requires_grad}


# ---------------------------------------------------------------------------------------
# The "linear" path: factors of G per nn.Linear layer
# ---------------------------------------------------------------------------------------

def _linear_chain_span(chain: nn.Sequential, state: dict[str, Tensor], trainable: list[str], x: Tensor,
                       task: Task, rtol: float):
    """As span_projection, for x (..., N, in) and parameters (..., *shape): leading dims are
    ensemble members, handled by batched matrix products."""
    linear_at = [name for name, layer in chain.named_children() if isinstance(layer, nn.Linear)]
    leaves = {n: t.detach() for n, t in state.items()}
    with torch.enable_grad():
        # Zero probes p_l on the pre-activations z_l: ∂(Σ_i f_i)/∂p_l = Δ_l with row i = ∂f_i/∂z_{l,i},
        # because the samples of a linear chain do not interact.
        probes = [x.new_zeros(*x.shape[:-2], chain.get_submodule(i).out_features, x.shape[-2], requires_grad=True)
                  for i in linear_at]
        out, inputs = chain_forward(chain, leaves, x, probes)
        deltas = torch.autograd.grad(task.scalar_outputs(out).sum(), probes)
    deltas = [d.mT.double() for d in deltas]                        # (..., N, out)
    inputs = [a.detach().mT.double() for a in inputs]               # (..., N, in)

    n = x.shape[-2]
    gram = x.new_zeros(*x.shape[:-2], n, n, dtype=torch.float64)
    g_theta = x.new_zeros(*x.shape[:-2], n, dtype=torch.float64)
    for i, delta, a in zip(linear_at, deltas, inputs):
        delta_gram = delta @ delta.mT
        if f"{i}.weight" in trainable:
            gram = gram + delta_gram * (a @ a.mT)
            # W a_i in float64: rounding in Gᵀθ is amplified by cond(G) in the solve.
            g_theta = g_theta + (delta * (a @ leaves[f"{i}.weight"].double().mT)).sum(-1)
        if f"{i}.bias" in trainable:
            gram = gram + delta_gram
            g_theta = g_theta + (delta * leaves[f"{i}.bias"].double().unsqueeze(-2)).sum(-1)
    c, rank = _solve(gram, g_theta, rtol)
    targets = {}
    for i, delta, a in zip(linear_at, deltas, inputs):
        weighted = c.unsqueeze(-1) * delta                           # rows c_i δ_i
        if f"{i}.weight" in trainable:
            targets[f"{i}.weight"] = (weighted.mT @ a).to(x.dtype)
        if f"{i}.bias" in trainable:
            targets[f"{i}.bias"] = weighted.sum(-2).to(x.dtype)
    # NaN/Inf anywhere in Δ, A or θ reaches GᵀG or Gᵀθ.
    return targets, rank, torch.isfinite(gram).all() & torch.isfinite(g_theta).all()


# ---------------------------------------------------------------------------------------
# The "materialized" path: G block by block
# ---------------------------------------------------------------------------------------

def _materialized_span(model, state, buffers, trainable, x, task, rtol, solver, chunk_size, inplace):
    blocks = _gradient_blocks(model, state, buffers, trainable, x, task, chunk_size, inplace=inplace)
    theta = {n: state[n] for n in trainable}
    finite = torch.stack([torch.isfinite(b).all() for b in blocks.values()]).all()
    if solver == "qr":
        return _qr_span(blocks, theta, rtol, finite)
    k = next(iter(blocks.values())).shape[0]
    gram = x.new_zeros(k, k, dtype=torch.float64)
    g_theta = x.new_zeros(k, dtype=torch.float64)
    for name, block in blocks.items():
        block = block.flatten(1)
        for cols, th in zip(block.split(COLUMN_CHUNK, 1), theta[name].flatten().split(COLUMN_CHUNK)):
            cols = cols.double()
            gram = gram + cols @ cols.T
            g_theta = g_theta + cols @ th.double()
    c, rank = _solve(gram, g_theta, rtol)
    targets = {n: (c @ b.flatten(1).double()).view_as(theta[n]).to(theta[n].dtype)
               for n, b in blocks.items()}
    return targets, rank, finite & torch.isfinite(gram).all() & torch.isfinite(g_theta).all()


def _qr_span(blocks: dict[str, Tensor], theta: dict[str, Tensor], rtol: float, finite: Tensor):
    """The reference solve: Householder QR of G with column pivoting (LAPACK geqp3, through
    SciPy) in float64, so that R's diagonal reveals the rank; P_G(θ) = Q_r Q_rᵀ θ with Q_r
    the first `rank` columns of Q (|R_jj| > √rtol·|R_00|, the Gram solve's threshold on
    singular values). Unpivoted QR would keep a junk direction for every dependent row."""
    g = torch.cat([b.flatten(1) for b in blocks.values()], 1).double()               # (k, d)
    flat_theta = torch.cat([t.flatten() for t in theta.values()]).double()
    if not bool(finite) or not bool(torch.isfinite(flat_theta).all()):
        return {n: torch.zeros_like(t) for n, t in theta.items()}, torch.zeros((), dtype=torch.long), \
            torch.zeros((), dtype=torch.bool)
    q, r, _ = scipy.linalg.qr(g.T.cpu().numpy(), mode="economic", pivoting=True)      # G^T P = Q R
    diagonal = np.abs(np.diag(r))
    rank = int((diagonal > rtol ** 0.5 * diagonal[0]).sum()) if diagonal.size and diagonal[0] > 0 else 0
    basis = torch.from_numpy(q[:, :rank]).to(g.device)                                 # (d, rank)
    flat = basis @ (basis.T @ flat_theta)
    pieces = dict(zip(theta, flat.split([t.numel() for t in theta.values()])))
    targets = {n: v.view_as(theta[n]).to(theta[n].dtype) for n, v in pieces.items()}
    return targets, torch.tensor(rank), torch.isfinite(flat).all()


def _gradient_chunks(model, state, buffers, trainable, x, task, chunk_size):
    """Yield (k, first row, {parameter name: (rows, *shape)}) over the k rows of G, head-major
    (row h·N + i), `chunk_size` rows at a time (default: ROW_BUDGET floats per chunk)."""
    frozen = {n: t for n, t in state.items() if n not in trainable}
    params = {n: state[n] for n in trainable}
    if couples_samples(model):
        # Batch statistics without touching the running buffers (the caller updates them).
        buffers = {n: (None if _is_batchnorm_buffer(model, n) else b) for n, b in buffers.items()}

    def outputs(params, inputs):                                        # -> (H·N,)
        out = functional_call(model, ({**params, **frozen}, buffers), (inputs,))
        return task.scalar_outputs(out).transpose(-1, -2).flatten()

    rows = chunk_size or max(1, ROW_BUDGET // sum(p.numel() for p in params.values()))
    if couples_samples(model):
        # One batched forward; then the backward pass of every output, `rows` at a time. On a
        # CPU one at a time is fastest (ResNet-18, 50 rows: 39 s, against 56 s in chunks of 11);
        # on a GPU the chunks are (432 ms for a loop against 207 ms for 100 rows on an H200).
        rows = chunk_size or (1 if x.device.type == "cpu" else rows)
        values, pullback = vjp(lambda p: outputs(p, x), params)
        basis = torch.eye(len(values), dtype=values.dtype, device=values.device)
        for start in range(0, len(values), rows):
            if rows == 1:
                yield len(values), start, {n: g.unsqueeze(0) for n, g in pullback(basis[start])[0].items()}
            else:
                yield len(values), start, vmap(pullback)(basis[start:start + rows])[0]
        return
    # Independent samples: per-sample Jacobians (one row per head), `rows` samples at a time.
    per_sample = vmap(jacrev(lambda p, xi: outputs(p, xi.unsqueeze(0))), in_dims=(None, 0))
    n = x.shape[0]
    for start in range(0, n, rows):
        chunk = per_sample(params, x[start:start + rows])               # (rows, H, *shape)
        heads = next(iter(chunk.values())).shape[1]
        for h in range(heads):
            yield heads * n, h * n + start, {name: g[:, h] for name, g in chunk.items()}


def _gradient_blocks(model, state, buffers, trainable, x, task, chunk_size, inplace=True) -> dict[str, Tensor]:
    """{parameter name: (k, *shape)}, the rows of G. `inplace` fills preallocated blocks
    (peak memory one G); under vmap, where that is impossible, chunks are concatenated."""
    blocks, pieces = None, []
    for k, start, piece in _gradient_chunks(model, state, buffers, trainable, x, task, chunk_size):
        if not inplace:
            pieces.append((start, piece))
            continue
        if blocks is None:
            blocks = {n: g.new_empty(k, *g.shape[1:]) for n, g in piece.items()}
        for n, g in piece.items():
            blocks[n][start:start + len(g)] = g
    if inplace:
        return blocks
    pieces.sort(key=lambda item: item[0])
    return {n: torch.cat([piece[n] for _, piece in pieces]) for n in trainable}


def _is_batchnorm_buffer(model: nn.Module, name: str) -> bool:
    owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    return isinstance(owner, nn.modules.batchnorm._BatchNorm)


def _solve(gram: Tensor, rhs: Tensor, rtol: float) -> tuple[Tensor, Tensor]:
    """c = (GᵀG)⁺ Gᵀθ on the numerical range of GᵀG, and that range's dimension (batched).

    Symmetric Jacobi scaling D⁻¹(GᵀG)D⁻¹, D² = diag(GᵀG), then an eigendecomposition:
    Cholesky fails or loses everything at cond(GᵀG) ~ 1e15, eigh keeps ~1e-3 accuracy."""
    # NaN/Inf would make eigh raise; solve a harmless system instead and let the caller's
    # finiteness flag report the problem.
    finite = torch.isfinite(gram).all(-1).all(-1) & torch.isfinite(rhs).all(-1)
    gram = torch.where(finite[..., None, None], gram, torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device))
    rhs = torch.where(finite[..., None], rhs, torch.zeros_like(rhs))
    scale = gram.diagonal(dim1=-2, dim2=-1).sqrt()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    eigenvalues, vectors = _eigh(gram / scale.unsqueeze(-1) / scale.unsqueeze(-2))
    keep = eigenvalues > rtol * eigenvalues[..., -1:]
    inverse = torch.where(keep, 1.0 / eigenvalues, torch.zeros_like(eigenvalues))
    coefficients = inverse * (vectors.mT @ (rhs / scale).unsqueeze(-1)).squeeze(-1)
    return (vectors @ coefficients.unsqueeze(-1)).squeeze(-1) / scale, keep.sum(-1)


def _eigh(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """torch.linalg.eigh, on the CPU for a GPU tensor: cuSOLVER takes milliseconds for the
    k×k (k ≈ 50-100) systems here, LAPACK microseconds."""
    if matrix.device.type == "cpu":
        return torch.linalg.eigh(matrix)
    eigenvalues, vectors = torch.linalg.eigh(matrix.cpu())
    return eigenvalues.to(matrix.device), vectors.to(matrix.device)


@contextlib.contextmanager
def _mode(model: nn.Module, bn_mode: BNMode):
    """bn_mode="eval" evaluates G in eval mode and restores the previous mode after."""
    if bn_mode == "batch":
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
