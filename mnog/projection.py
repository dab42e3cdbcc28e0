"""MinNorm-OG's projection step: θ ← θ − s·P_{G⊥}(θ) = θ + s·(P_G(θ) − θ) (docs/protocol.md#minnorm-og).

G = [g_1 … g_k] holds the gradients, w.r.t. the trainable parameters θ, of k scalar
outputs on a retain subsample (one per sample and head: the regression output, or the
maximum logit). P_G(θ) = G c where (GᵀG) c = Gᵀθ. Everything is vectorized with
torch.func; nothing loops over samples.

Three ways to get the three ingredients GᵀG (k×k), Gᵀθ (k) and G c (d):

* "linear": an `nn.Sequential` of `nn.Linear` layers and elementwise activations (the Data
  Poisoning MLP). Layer l's part of a per-sample gradient is the outer product δ_i a_iᵀ of
  the output's gradient w.r.t. the layer's pre-activation z_i and the layer's input a_i, so
      GᵀG = Σ_l (Δ_l Δ_lᵀ) ⊙ (A_l A_lᵀ + 1[bias]),   Gᵀθ = Σ_l rowsum(Δ_l ⊙ Z_l),
      G c = { (c ⊙ Δ_l)ᵀ A_l ,  (c ⊙ Δ_l)ᵀ 1 }
  (the "ghost norm" identity of per-sample gradient clipping: Goodfellow 2015, Li et al.
  2022). One forward and one backward pass give Δ, A and Z; G is never formed, so a
  projection costs about one GD step instead of O(d·k²).
* "layerwise": models whose samples are independent (no BatchNorm with batch statistics)
  built from nn.Linear, nn.Conv2d and eval-mode BatchNorm layers and parameter-free ones
  (ColorResNet with bn_mode="eval"). One forward with hooks and one backward pass per head
  give every layer's inputs and per-sample output signals; per layer, the rows of G are
  formed a few output channels at a time (or their Gram block by the same identity as
  above, where cheaper), GᵀG and Gᵀθ accumulated, and after the solve G c is one weight
  gradient of the batch with the signals reweighted by c. G is never held whole.
* "materialized": any model. G is built block by block (one block per parameter) with
  jacrev, then GᵀG is accumulated in float64 over column chunks. BatchNorm: with
  bn_mode="batch" (default, as the authors' code) the subsample goes through one batched
  forward in train mode, so BatchNorm's batch statistics couple the samples and G is the
  Jacobian of the batched outputs; with bn_mode="eval" each sample's gradient is taken
  alone in eval mode (running statistics). Without train-mode BatchNorm the two agree and
  the cheaper per-sample vmap is used.

path="auto" takes "linear" for a linear chain, else "layerwise" where it applies, else
"materialized" (`resolve_path`).

The k×k system is solved in float64 (solver "gram": eigendecomposition, directions with
eigenvalue below rtol·λ_max count as rank-deficient), or by Householder QR of G in float64
with column pivoting (solver "qr", materialized only; the reference the tests compare
against). A float32 Gram solve is not enough: GᵀG squares G's condition number. G itself
is float32 unless precision="float64" (a float64 copy of θ and the inputs).
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Collection, Literal

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vjp, vmap
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from mnog.chains import chain_forward, is_linear_chain
from mnog.ensemble import Ensemble
from mnog.errors import NonFiniteError
from mnog.tasks import Task

Path = Literal["auto", "linear", "layerwise", "materialized"]
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
LAYER_BUDGET = 1 << 26  # layerwise: ≤ 2^26 entries per piece of one layer's per-sample gradients


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
                untracked: bool = False, parameters: Collection[str] | None = None,
                span_norm: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """In place: θ ← θ + s·(P_G(θ) − θ), G from the outputs on `inputs` (the subsample B'_r).

    precision="float64" computes G from a float64 copy of θ and the inputs (docs/authors-code.md: on a
    trained MLP, G is so ill-conditioned that float32 rounding moves P_G(θ)). `untracked`
    writes θ through `.data`, invisible to autograd, so that a graph recorded before the
    projection still back-propagates (with the new weights): the authors' stale gradient.
    `parameters` (names, as `scope_parameters` gives them; None: every trainable one) restricts
    θ to a part of the model: G holds the output gradients with respect to that part only, and
    the rest of θ stays as it is.
    Returns the numerical rank of G (one per ensemble member for an Ensemble); with
    `span_norm`, (rank, ‖P_G(θ)‖² in float64), the part of θ the step keeps, measured before
    the step (a difference of norms after it would drown in rounding at small s).
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
                                            precision=precision, rtol=rtol, chunk_size=chunk_size,
                                            parameters=parameters)
    if not bool(finite.all()):
        raise NonFiniteError("MinNorm-OG: the per-sample output gradients on the retain subsample, or their "
                             "products with θ, hold NaN/Inf, so the projection is undefined (did training diverge?)")
    members = isinstance(model, Ensemble)
    inside = sum((t.double().pow(2).flatten(1 if members else 0).sum(-1) for t in targets.values()),
                 torch.zeros(rank.shape, dtype=torch.float64, device=rank.device)) if span_norm else None
    for name, target in targets.items():
        p = params[name]
        (p.data if untracked else p).lerp_(target.to(p.dtype), strength)
    return (rank, inside) if span_norm else rank


@torch.no_grad()
def shrink(model: nn.Module, strength: float, *, untracked: bool = False,
           parameters: Collection[str] | None = None) -> None:
    """In place: θ ← (1 − s)·θ over `parameters` (None: every trainable one). MinNorm-OG's step
    with G empty (span="none"): the projection's shrinkage without its span. `untracked` as
    in `project_out`."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"shrinkage strength must lie in [0, 1], got {strength}")
    for name, p in trainable_parameters(model).items():
        if parameters is None or name in parameters:
            (p.data if untracked else p).mul_(1 - strength)


SCOPES = ("all", "body", "heads")


def scope_parameters(model: nn.Module, scope: str) -> list[str] | None:
    """The trainable parameters a MinNorm-OG step acts on (names as `trainable_parameters`
    gives them): "all" → None (every one); "heads" → those of the output layers (the modules
    of a `heads` attribute, as ColorResNet's, else the last module that owns trainable
    parameters: an MLP's last nn.Linear); "body" → the rest, less BatchNorm's scales and
    shifts. ValueError if the scope holds none of the model's parameters."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    if scope == "all":
        return None
    base = model.base if isinstance(model, Ensemble) else model
    owners = [(name, m) for name, m in base.named_modules()
              if any(p.requires_grad for p in m.parameters(recurse=False))]
    heads = getattr(base, "heads", None)
    if isinstance(heads, nn.Module):
        head_modules = {id(m) for m in heads.modules()}
    else:
        head_modules = {id(owners[-1][1])} if owners else set()
    names = []
    for name, module in owners:
        is_head = id(module) in head_modules
        if (scope == "heads") != is_head or (scope == "body" and isinstance(module, _BatchNorm)):
            continue
        names += [f"{name}.{p}" if name else p for p, t in module.named_parameters(recurse=False) if t.requires_grad]
    if not names:
        raise ValueError(f"MinNorm-OG scope {scope!r} holds none of {type(base).__name__}'s trainable parameters")
    return names


@torch.no_grad()  # torch.func differentiates inside; nothing here may join an outer graph
def span_projection(model: nn.Module, inputs: Tensor, task: Task, *, path: Path = "auto",
                    solver: Solver = "gram", bn_mode: BNMode = "batch", precision: Precision = "float32",
                    rtol: float = RTOL, chunk_size: int | None = None, parameters: Collection[str] | None = None
                    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """P_G(θ) for every trainable parameter (of `parameters` only, when given: G then holds the
    gradients with respect to those), the numerical rank of G, and a finiteness flag (false
    when G, GᵀG, Gᵀθ or the result holds NaN/Inf)."""
    if path not in ("auto", "linear", "layerwise", "materialized"):
        raise ValueError(f"unknown path {path!r}; choose 'auto', 'linear', 'layerwise' or 'materialized'")
    if solver not in ("gram", "qr"):
        raise ValueError(f"unknown solver {solver!r}; choose 'gram' or 'qr'")
    if bn_mode not in ("batch", "eval"):
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose 'batch' or 'eval'")
    if precision not in ("float32", "float64"):
        raise ValueError(f"unknown precision {precision!r}; choose 'float32' or 'float64'")
    base = model.base if isinstance(model, Ensemble) else model
    if inputs.shape[1 if isinstance(model, Ensemble) else 0] == 0:
        # G has no columns (a class-balanced subsample of a batch with more classes than
        # n_pert, the paper's formula): P_G(θ) = 0, so the step only scales θ by 1 − s.
        params = trainable_parameters(model)
        return ({n: torch.zeros_like(p) for n, p in params.items() if parameters is None or n in parameters},
                torch.zeros((), dtype=torch.long), torch.ones((), dtype=torch.bool))
    chosen = resolve_path(model, path, solver, bn_mode)
    trainable = [n for n, p in base.named_parameters() if p.requires_grad and (parameters is None or n in parameters)]

    ensemble = isinstance(model, Ensemble)
    if ensemble and chosen == "materialized" and solver == "qr":
        raise ValueError("solver='qr' (the reference solve, through SciPy) takes one model at a time, not an Ensemble")
    state = model.stacked_parameters() if ensemble else dict(model.named_parameters())
    buffers = model.stacked_buffers() if ensemble else dict(model.named_buffers())
    if precision == "float64":
        state = {n: t.detach().double() for n, t in state.items()}
        buffers = {n: b.double() if b.is_floating_point() else b for n, b in buffers.items()}
        inputs = inputs.double()
    if chosen == "linear":  # batched over ensemble members natively
        return _linear_chain_span(base, state, trainable, inputs, task, rtol)
    if chosen == "layerwise":
        try:
            with _mode(base, bn_mode):
                return _layerwise_span(base, state, buffers, trainable, inputs, task, rtol)
        except _NotLayerwise as problem:  # found only while running the forward
            if path == "layerwise":
                raise ValueError(f"path='layerwise' cannot take this model: {problem}") from None

    def one_model(state: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor):
        return _materialized_span(base, state, buffers, trainable, x, task, rtol, solver, chunk_size,
                                  inplace=not ensemble)

    with _mode(base, bn_mode):
        if ensemble:
            return vmap(one_model)(state, buffers, inputs)
        return one_model(state, buffers, inputs)


def resolve_path(model: nn.Module, path: Path = "auto", solver: Solver = "gram", bn_mode: BNMode = "batch") -> str:
    """The path span_projection takes: "auto" picks "linear" for a linear chain, "layerwise"
    for any other model whose samples are independent and whose trainable parameters all sit
    in supported layers (`layerwise_obstacle`), else "materialized"; solver="qr" needs G
    itself, so it always takes "materialized". An explicit path that cannot work raises."""
    base = model.base if isinstance(model, Ensemble) else model
    if path == "auto":
        if solver == "qr":
            return "materialized"
        if is_linear_chain(base):
            return "linear"
        return "layerwise" if layerwise_obstacle(model, bn_mode) is None else "materialized"
    if path == "linear" and not is_linear_chain(base):
        raise ValueError("path='linear' needs an nn.Sequential of nn.Linear layers and elementwise activations")
    if path in ("linear", "layerwise") and solver == "qr":
        raise ValueError(f"solver='qr' needs the materialized G; use path='materialized' (or 'auto'), not {path!r}")
    if path == "layerwise" and (obstacle := layerwise_obstacle(model, bn_mode)) is not None:
        raise ValueError(f"path='layerwise' cannot take this model: {obstacle}")
    return path


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
# The "layerwise" path: per-sample gradients one layer at a time
# ---------------------------------------------------------------------------------------
#
# Samples are independent (no BatchNorm with batch statistics), so one backward pass of a
# head's summed output Σ_i f_{h,i} gives every sample's signal δ_{l,h,i} = ∂f_{h,i}/∂z_{l,i}
# at every layer output z_l. With a layer's input unfolded into U_{l,i} (p × L: im2col for a
# convolution, L output positions; L = 1 for a Linear layer on vectors), the layer's part of
# row (h, i) of G is δ_{l,h,i} U_{l,i}ᵀ (q × p), as in Opacus' per-sample gradients.
# Per layer, either those rows are formed (k × q·p, in pieces of output channels) and their
# Gram matrix and products with θ accumulated, or, where cheaper (few positions L: the last
# stage of a ResNet, every Linear layer on vectors), the "ghost" identity
#     ⟨g_a, g_b⟩_l = Σ_{t,t'} (δ_aᵀ δ_b)_{tt'} (U_aᵀ U_b)_{tt'}
# gives the Gram block without them (Li et al. 2022, Bu et al. 2023). After the solve,
#     (G c)_l = Σ_i (Σ_h c_{h,i} δ_{l,h,i}) U_{l,i}ᵀ
# is one weight gradient of the batch with the signals reweighted. G itself is never held:
# the memory is the layers' inputs and output signals (one per head) for the subsample.

_BatchNorm = nn.modules.batchnorm._BatchNorm


class _NotLayerwise(Exception):
    """The model does something the layerwise path cannot follow (found during its forward)."""


def layerwise_obstacle(model: nn.Module, bn_mode: BNMode = "batch") -> str | None:
    """Why the layerwise path cannot take `model`, or None when it can: every module that owns
    trainable parameters must be an nn.Linear, an nn.Conv2d (groups 1, zero padding given as
    numbers) or a BatchNorm that normalizes with its running statistics (eval mode, or
    bn_mode="eval"), no parameter may be shared by two modules, and no BatchNorm may use
    batch statistics (they couple the samples). Layers without trainable parameters may be
    anything that treats samples independently along the first dimension (the per-sample
    vmap of the materialized path assumes as much)."""
    if isinstance(model, Ensemble):
        return "an Ensemble (its members run under vmap; the materialized path takes it)"
    owners: dict[int, int] = {}
    for name, module in model.named_modules():
        label = name or type(module).__name__
        if isinstance(module, _BatchNorm) and ((module.training and bn_mode == "batch") or module.running_mean is None):
            return f"{label}: BatchNorm with batch statistics couples the samples"
        own = [p for p in module._parameters.values() if p is not None and p.requires_grad]
        for p in own:
            owners[id(p)] = owners.get(id(p), 0) + 1
        if own and (reason := _unsupported_layer(module)) is not None:
            return f"{label}: {reason}"
    if any(count > 1 for count in owners.values()):
        return "a trainable parameter is shared by several modules"
    return None


def _unsupported_layer(module: nn.Module) -> str | None:
    kind = type(module)
    if isinstance(module, nn.Linear) and kind.forward is nn.Linear.forward:
        return None
    if isinstance(module, nn.Conv2d) and kind.forward is nn.Conv2d.forward \
            and kind._conv_forward is nn.Conv2d._conv_forward:
        if module.groups != 1:
            return "grouped convolution"
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return f"convolution padding {module.padding!r} ({module.padding_mode})"
        return None
    if isinstance(module, _BatchNorm) and kind.forward is _BatchNorm.forward:
        return None
    return f"{kind.__name__} has trainable parameters and no per-sample rule here"


# Tensor methods and attributes that read metadata only: no use of a parameter's values.
_METADATA = {"size", "dim", "numel", "stride", "is_contiguous", "shape", "dtype", "device", "ndim", "layout",
             "requires_grad", "is_leaf", "grad_fn", "is_floating_point", "is_complex"}


class _ParameterGuard(TorchFunctionMode):
    """Notes any use of a trainable parameter outside its own layer's forward (a parent that
    computes x @ self.fc.weight.T, say): the hooks would miss that part of its gradient."""

    def __init__(self, owners: dict[int, nn.Module]):
        super().__init__()
        self.owners, self.active, self.watching, self.problem = owners, None, False, None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.watching and self.problem is None:
            name = getattr(func, "__name__", "")
            if name == "__get__":                                       # an attribute: its own name
                name = getattr(getattr(func, "__self__", None), "__name__", name)
            if name not in _METADATA:
                for t in pytree.tree_leaves((args, kwargs)):
                    if isinstance(t, Tensor) and self.owners.get(id(t), self.active) is not self.active:
                        self.problem = f"a trainable parameter is used outside its own layer ({name})"
        return func(*args, **kwargs)


class _Layer:
    """One layer's factors over all its calls in the forward (L runs over output positions,
    then over calls): `deltas`, the output signals (heads, N, q, L); for Linear and Conv2d
    the unfolded inputs U, (n, p, L) from `unfolded` or (p, n·L) from `unfolded_t`; for
    BatchNorm (diagonal) x̂, (N, C, L)."""

    def __init__(self, name: str, module: nn.Module, calls: list[dict], heads: int):
        self.name, self.module = name, module
        self.diagonal = isinstance(module, _BatchNorm)
        self.linear = isinstance(module, nn.Linear)
        n = calls[0]["input"].shape[0]
        self.deltas = _cat_positions([self._signal_shape(c["delta"].view(heads, n, *c["delta"].shape[1:]))
                                      for c in calls])
        if self.diagonal:
            self.normalized = _cat_positions([_normalized(c) for c in calls])
        elif self.linear:
            self.p = module.in_features
            self._inputs = [c["input"].reshape(n, -1, self.p) for c in calls]           # (N, L, in)
        else:
            self.p = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            ph, pw = module.padding
            self._inputs = [F.pad(c["input"], (pw, pw, ph, ph)) for c in calls]      # (N, C, H, W), padded

    def _signal_shape(self, delta: Tensor) -> Tensor:                   # (H, N, *out) -> (H, N, q, L)
        if self.linear:
            return delta.reshape(*delta.shape[:2], -1, delta.shape[-1]).mT
        return delta.flatten(3) if delta.dim() > 3 else delta.unsqueeze(-1)

    def _windows(self, x: Tensor) -> Tensor:
        """im2col as a strided view (n, C, kh, kw, out_h, out_w) of a padded input: copied
        once by the caller's reshape, 6-13× faster than F.unfold on a CPU."""
        (kh, kw), (dh, dw), (sh, sw) = self.module.kernel_size, self.module.dilation, self.module.stride
        n, c, h, w = x.shape
        out_h, out_w = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
        sn, sc, sy, sx = x.stride()
        return x.as_strided((n, c, kh, kw, out_h, out_w), (sn, sc, sy * dh, sx * dw, sy * sh, sx * sw))

    def unfolded(self, rows: slice) -> Tensor:
        """U for samples `rows`: (n, p, L)."""
        if self.linear:
            pieces = [x[rows].mT for x in self._inputs]
        else:
            pieces = [(w := self._windows(x[rows])).reshape(w.shape[0], self.p, -1) for x in self._inputs]
        return _cat_positions(pieces)

    def unfolded_t(self, rows: slice, dtype: torch.dtype) -> Tensor:
        """U for samples `rows`, transposed to (p, n·L), in `dtype`."""
        if self.linear:
            pieces = [x[rows].permute(2, 0, 1).to(dtype) for x in self._inputs]
        else:
            # Converted before the gather: 2× faster than converting the unfolded copy.
            pieces = [self._windows(x[rows].to(dtype)).permute(1, 2, 3, 0, 4, 5).reshape(self.p, len(x[rows]), -1)
                      for x in self._inputs]
        return _cat_positions(pieces).reshape(self.p, -1)


def _cat_positions(pieces: list[Tensor]) -> Tensor:
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, -1)


def _normalized(call: dict) -> Tensor:
    """BatchNorm's x̂ = (x − running mean) / √(running var + ε), (N, C, L)."""
    x = call["input"].flatten(2) if call["input"].dim() > 2 else call["input"].unsqueeze(-1)
    return (x - call["mean"][:, None]) * (call["var"][:, None] + call["eps"]).rsqrt()


def _layerwise_span(model, state, buffers, trainable, x, task, rtol):
    layers, calls, heads = _capture(model, state, buffers, trainable, x, task)
    n = x.shape[0]
    k = heads * n
    gram = x.new_zeros(k, k, dtype=torch.float64)
    g_theta = x.new_zeros(k, dtype=torch.float64)
    factors = [_Layer(name, layers[name], calls[name], heads) for name in layers if calls[name]]
    del calls
    # GᵀG and Gᵀθ, one layer at a time (rows head-major: h·N + i).
    for layer in factors:
        weight, bias = _owned(layer.name, "weight", trainable), _owned(layer.name, "bias", trainable)
        if bias is not None:                                            # Σ_t δ per row: (k, q)
            gram, g_theta = _accumulate(gram, g_theta, layer.deltas.sum(-1).flatten(0, 1), state[bias])
        if weight is None:
            continue
        if layer.diagonal:                                              # Σ_t δ ⊙ x̂ per row: (k, C)
            rows = (layer.deltas * layer.normalized).sum(-1).flatten(0, 1)
            gram, g_theta = _accumulate(gram, g_theta, rows, state[weight])
        elif _prefer_ghost(layer, k):
            gram, g_theta = _ghost_gram(gram, g_theta, layer, state[weight])
        else:
            gram, g_theta = _per_sample_gram(gram, g_theta, layer, state[weight])
    c, rank = _solve(gram, g_theta, rtol)

    # G c: per layer one weight gradient of the batch with signals Σ_h c_{h,i} δ_{h,i}, in float64.
    targets = {name: torch.zeros_like(state[name]) for name in trainable}
    weights = c.view(heads, n)
    for layer in factors:
        weight, bias = _owned(layer.name, "weight", trainable), _owned(layer.name, "bias", trainable)
        signal = layer.deltas[0].double().mul_(weights[0, :, None, None])   # Σ_h c_{h,i} δ_{h,i}: (N, q, L)
        for h in range(1, heads):
            signal.addcmul_(layer.deltas[h].double(), weights[h, :, None, None])
        if bias is not None:
            targets[bias] = signal.sum((0, 2)).to(state[bias].dtype)
        if weight is None:
            continue
        if layer.diagonal:
            target = (signal * layer.normalized.double()).sum((0, 2))
        else:
            q = signal.shape[1]
            target = sum(signal[rows].transpose(0, 1).reshape(q, -1) @ layer.unfolded_t(rows, torch.float64).T
                         for rows in _sample_chunks(layer, n))
        targets[weight] = target.view_as(state[weight]).to(state[weight].dtype)
    return targets, rank, torch.isfinite(gram).all() & torch.isfinite(g_theta).all()


def _capture(model, state, buffers, trainable, x, task):
    """One forward with hooks on the layers that own trainable parameters, then one backward
    pass per head. Returns {layer name: module}, {layer name: [one dict per call: input,
    delta (heads·N, *out); BatchNorm also its running statistics]} and the number of heads."""
    n = x.shape[0]
    owner_names = list(dict.fromkeys(name.rpartition(".")[0] for name in trainable))
    layers = {name: model.get_submodule(name) for name in owner_names}
    calls: dict[str, list[dict]] = {name: [] for name in layers}
    # Parameters are detached: the graph starts at the probes, so autograd computes no weight
    # gradients, only the signals the probes receive.
    leaves = {name: t.detach() for name, t in state.items()}
    guard = _ParameterGuard({id(leaves[p]): layers[p.rpartition(".")[0]] for p in trainable})

    def enter(module, args):
        guard.active = module

    def leave(name):
        def hook(module, args, output):
            guard.active = None
            inp = args[0] if args else None
            if not (isinstance(inp, Tensor) and isinstance(output, Tensor) and inp.shape[:1] == (n,)
                    and output.shape[:1] == (n,) and (inp.dim() == 4 or not isinstance(module, nn.Conv2d))):
                guard.problem = guard.problem or f"{name}: its input or output is not batched along the first dimension"
                return None
            # A zero probe added to the output: its gradient is δ. (The output itself may be
            # modified in place later, by ReLU(inplace=True) or `out += identity`.)
            probe = torch.zeros((), dtype=output.dtype, device=output.device, requires_grad=True).expand(output.shape)
            record = {"input": inp, "version": inp._version, "probe": probe}
            if isinstance(module, _BatchNorm):
                record.update(mean=module.running_mean, var=module.running_var, eps=module.eps)
            calls[name].append(record)
            return output + probe
        return hook

    def watch(on):
        def hook(*_):
            guard.watching = on
        return hook

    handles = [model.register_forward_pre_hook(watch(True)), model.register_forward_hook(watch(False))]
    for name, module in layers.items():
        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave(name))]
    try:
        with torch.enable_grad(), guard:
            out = functional_call(model, (leaves, buffers), (x,))
        with torch.enable_grad():
            scalars = task.scalar_outputs(out)                          # (N, heads)
            totals = scalars.sum(0).unbind()                            # Σ_i f_{h,i}, one per head
    finally:
        for handle in handles:
            handle.remove()
    if guard.problem is not None:
        raise _NotLayerwise(guard.problem)
    records = [r for rs in calls.values() for r in rs]
    heads = len(totals)
    signals: list[list[Tensor]] = [[] for _ in records]
    for h in range(heads):
        grads = (torch.autograd.grad(totals[h], [r["probe"] for r in records], retain_graph=h < heads - 1,
                                     allow_unused=True)
                 if totals[h].requires_grad and records else [None] * len(records))
        for signal, g, r in zip(signals, grads, records):
            signal.append(torch.zeros(r["probe"].shape, dtype=r["probe"].dtype, device=x.device) if g is None else g)
    for r, signal in zip(records, signals):
        if r["input"]._version != r["version"]:
            raise _NotLayerwise("a layer's input was modified in place after the layer ran")
        r["delta"] = torch.cat(signal)                                  # (heads·N, *out), head-major
        del r["probe"]
    return layers, calls, heads


def _owned(layer: str, attr: str, trainable: list[str]) -> str | None:
    name = f"{layer}.{attr}" if layer else attr
    return name if name in trainable else None


def _sample_chunks(layer: _Layer, n: int) -> list[slice]:
    """Samples per piece so that an unfolded input holds ≤ LAYER_BUDGET entries."""
    step = max(1, LAYER_BUDGET // (layer.p * layer.deltas.shape[-1]))
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def _prefer_ghost(layer: _Layer, k: int) -> bool:
    """Ghost Gram when it costs fewer multiply-adds than forming the rows (k·L·p·q to form,
    k²·p·q for their float64 Gram) and its (k·L)² Gram of signals fits LAYER_BUDGET."""
    heads, n, q, positions = layer.deltas.shape
    p = layer.p
    ghost = (k * positions) ** 2 * q + (n * positions) ** 2 * p + n * positions * p * q
    rows = k * positions * p * q + k * k * p * q
    return ghost < rows and (k * positions) ** 2 <= LAYER_BUDGET and n * p * positions <= LAYER_BUDGET


def _ghost_gram(gram: Tensor, g_theta: Tensor, layer: _Layer, weight: Tensor) -> tuple[Tensor, Tensor]:
    heads, n, q, positions = layer.deltas.shape
    u = layer.unfolded_t(slice(0, n), torch.float64)                   # (p, N·L), columns (i, t)
    deltas = layer.deltas.double()                                      # (H, N, q, L)
    d = deltas.mT.reshape(heads * n * positions, q)                     # rows (h, i, t)
    inputs = (u.T @ u).view(n, positions, n, positions)
    signals = (d @ d.T).view(heads, n, positions, heads, n, positions)
    gram = gram + (signals * inputs[None, :, :, None]).sum((2, 5)).view_as(gram)
    # Gᵀθ: ⟨δ_{h,i}, W U_i⟩ with W U_i in float64 (its rounding would reach the solve).
    wu = (weight.double().view(q, -1) @ u).view(q, n, positions)
    return gram, g_theta + (deltas * wu.transpose(0, 1)).sum((2, 3)).flatten()


def _per_sample_gram(gram: Tensor, g_theta: Tensor, layer: _Layer, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of G for this layer, a few output channels at a time: (k, channels·p)."""
    heads, n, q, positions = layer.deltas.shape
    chunks = _sample_chunks(layer, n)
    cached = [layer.unfolded(rows).mT for rows in chunks] if len(chunks) == 1 else None  # (n, L, p)
    p = layer.p
    channels = max(1, LAYER_BUDGET // (heads * n * p))
    flat_weight = weight.view(q, -1)
    for first in range(0, q, channels):
        last = min(first + channels, q)
        block = layer.deltas.new_empty(heads, n, last - first, p)
        for j, rows in enumerate(chunks):
            u = cached[j] if cached else layer.unfolded(rows).mT
            for h in range(heads):
                torch.bmm(layer.deltas[h, rows, first:last], u, out=block[h, rows])
        gram, g_theta = _accumulate(gram, g_theta, block.view(heads * n, -1), flat_weight[first:last])
    return gram, g_theta


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
        gram, g_theta = _accumulate(gram, g_theta, block.flatten(1), theta[name])
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


def _accumulate(gram: Tensor, g_theta: Tensor, block: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    """gram + B Bᵀ and g_theta + B θ for a block B of G's columns (k, d_b), in float64,
    COLUMN_CHUNK columns converted at a time. Out of place: the materialized path runs
    under vmap for an Ensemble."""
    for cols, th in zip(block.split(COLUMN_CHUNK, 1), theta.flatten().split(COLUMN_CHUNK)):
        cols = cols.double()
        gram = gram + cols @ cols.T
        g_theta = g_theta + cols @ th.double()
    return gram, g_theta


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
