"""The eleven unlearning methods (docs/protocol.md#baselines), behind one interface and one registry.

A method is a class with a frozen `Config` of its hyperparameters (paper symbols: eta=η,
lambda_reg=λ_reg, gamma_reg=γ_reg, lambda_ga=λ_GA, sigma=σ, t_gd=T_GD, t_proj=T_proj,
n_pert=n_pert) and a `step(epoch, retain, forget)` that `mnog.loop.unlearn` calls once per
pair of batches. The default step is one AdamW step on `objective`, the method's row of
the table of docs/protocol.md#baselines. Schedules (Ridge's λ, ℓ1's λ_t, MinNorm-OG's strength s) are functions
of the step, epoch or projection count; no configuration is ever mutated.

Every method uses AdamW with learning rate η and PyTorch's other defaults, weight decay
0.01 included (docs/protocol.md#minnorm-og).

AdamW's kernel (`adamw`): "fused" (the library's default, where every
parameter allows it), "default" (what `AdamW(params, lr)` picks, as the authors' code
constructs it: the for-loop kernel on a CPU, foreach on CUDA), or "forloop" / "foreach"
explicitly. They compute the same update up to float rounding.

BatchNorm's running statistics: with bn_stats="loss" (the library's default) a step
forwards only the batches its objective uses; with bn_stats="both" it also forwards the
other one, without gradient, so that the running statistics see the retain and the forget
batch of every step, retain first, as the authors' loop does (docs/authors-code.md#batchnorm-sees-both-batches).
"""
from __future__ import annotations

import copy
import dataclasses
import typing
import warnings
from dataclasses import dataclass
from typing import ClassVar, Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnog import projection
from mnog.batches import Batch, random_subset
from mnog.ensemble import Ensemble, members_of
from mnog.errors import is_integer, is_number
from mnog.models import reinitialize
from mnog.tasks import Task, as_heads, batch_mean, kl_to_teacher

METHODS: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type["Method"]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


# ---------------------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hyperparameters:
    eta: float  # η: AdamW learning rate

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), hints[f.name]
            if kind is float and not is_number(value):
                raise TypeError(f"{f.name} must be a finite number, got {value!r}")
            if kind is int and not is_integer(value):
                raise TypeError(f"{f.name} must be an integer, got {value!r}")
            if kind is str and value not in _CHOICES.get(f.name, (value,)):
                raise ValueError(f"{f.name} must be one of {_CHOICES[f.name]}, got {value!r}")
        if self.eta <= 0:
            raise ValueError(f"eta must be positive, got {self.eta}")
        for name in ("lambda_reg", "lambda_ga", "sigma", "t_gd"):
            if getattr(self, name, 0) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        if not 0 <= getattr(self, "gamma_reg", 0) <= 1:
            raise ValueError(f"gamma_reg must lie in [0, 1], got {self.gamma_reg}")
        for name in ("t_proj", "n_pert"):
            if getattr(self, name, 1) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_CHOICES = {"order": ("project_first", "descent_first", "authors"), "bn_mode": ("batch", "eval"),
            "solver": ("gram", "qr"), "precision": ("float32", "float64"), "mask_loss": ("mean", "batch_sum"),
            "unmasked": ("fixed", "decay"), "schedule": ("per_epoch", "one_step_late"),
            "form": ("softplus", "ratio")}
BN_STATS = ("loss", "both")
# AdamW's kernel -> torch.optim.AdamW's keyword arguments ("fused" falls back to "default"
# where a parameter does not allow it).
ADAMW_KERNELS = {"fused": {"fused": True}, "default": {}, "forloop": {"foreach": False}, "foreach": {"foreach": True}}


@dataclass(frozen=True)
class NGPConfig(Hyperparameters):
    lambda_ga: float  # λ_GA: weight of the forget loss's ascent


@dataclass(frozen=True)
class NGDConfig(Hyperparameters):
    sigma: float  # σ: standard deviation of the noise added to every gradient entry


@dataclass(frozen=True)
class RidgeConfig(Hyperparameters):
    lambda_reg: float  # λ_reg: initial weight of ||θ||²
    gamma_reg: float   # γ_reg: its decay after every step


@dataclass(frozen=True)
class L1Config(Hyperparameters):
    lambda_reg: float  # λ_reg: ℓ1 weight, scaled by (2 - 2t/T)
    # "per_epoch": (2 − 2t/T)·λ_reg at every step of epoch t (the paper); "one_step_late": the
    # authors' code, λ_reg at the first step, then at every step the weight of the previous
    # step's epoch: 4 steps per epoch and T = 2 give λ, 2λ, 2λ, 2λ, 2λ, λ, λ, λ.
    schedule: str = "per_epoch"


@dataclass(frozen=True)
class SCRUBConfig(Hyperparameters):
    lambda_reg: float  # weight of the KL to the teacher on retain batches
    lambda_ga: float   # weight of the KL ascent on forget batches
    t_gd: int          # T_GD: final epochs of retain-only (min) steps


@dataclass(frozen=True)
class NPOConfig(Hyperparameters):
    lambda_reg: float  # β of NPO
    # log(1 + r^β), r = π_θ(y|x) / π_θ*(y|x): "softplus" of β·(log π_θ − log π_θ*) (stable for
    # any r), or "ratio": the probabilities' ratio, its power, then log1p, as the authors' code
    # writes it. Equal in exact arithmetic; they round differently.
    form: str = "softplus"


@dataclass(frozen=True)
class SalUnConfig(Hyperparameters):
    lambda_ga: float  # weight of the random-relabel loss on forget batches
    # The saliency mask's gradient (docs/authors-code.md#saluns-mask): "mean": of the mean forget loss over D_f
    # (docs/protocol.md#baselines); "batch_sum": the sum of the batch-mean losses over D_f in shuffled batches
    # of the unlearning batch size (the authors' code; differs only by the short last batch).
    mask_loss: str = "mean"
    # Entries outside the mask: "fixed" at θ* (docs/protocol.md#baselines: only masked entries are updated);
    # "decay": their gradients are zeroed but AdamW's decoupled weight decay still shrinks
    # them (the authors' gradient hooks).
    unmasked: str = "fixed"


@dataclass(frozen=True)
class MinNormOGConfig(Hyperparameters):
    lambda_reg: float  # λ_reg ∈ (0, 1]: strength s of the first projection
    gamma_reg: float   # γ_reg ∈ [0, 1]: s ← γ_reg·s after every projection step
    t_gd: int          # T_GD: final epochs of descent only
    t_proj: int        # T_proj: project in epochs t with t mod T_proj = 0
    n_pert: int        # size of the retain subsample B'_r whose output gradients span G
    # docs/protocol.md#minnorm-og. "project_first": project, then a descent step with a fresh gradient at the
    # projected θ (ours); "descent_first": the paper's prose; "authors": the authors' code:
    # the retain forward at the old θ, the projection in place, then the backward pass of
    # the graph recorded before it (a stale gradient).
    order: str = "project_first"
    bn_mode: str = "batch"        # "batch": authors' batched train-mode forward; "eval": per sample
    solver: str = "gram"          # "gram": float64 k×k solve; "qr": pivoted Householder QR of G
    precision: str = "float32"    # of G: "float32" (authors) or "float64" (a float64 copy of θ)
    # The ablation's variants (artifact/ablation.py); the defaults are Algorithm 1.
    # span "none": G is empty and nothing is added back, so a projection step is θ ← (1 − s)·θ
    # on the same schedule (no subsample is drawn or forwarded): GD plus a scheduled shrinkage.
    span: str = "full"
    # The parameters a projection step acts on (mnog.projection.scope_parameters): "all";
    # "body": all but BatchNorm's scales and shifts and the heads; "heads": the output layers.
    scope: str = "all"

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.lambda_reg <= 1:
            raise ValueError(f"MinNorm-OG needs 0 < lambda_reg <= 1, got {self.lambda_reg}")
        for name, choices in (("span", SPANS), ("scope", projection.SCOPES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")


SPANS = ("full", "none")


# ---------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------

class Method:
    name: ClassVar[str]
    Config: ClassVar[type[Hyperparameters]] = Hyperparameters
    classification_only: ClassVar[bool] = False

    def __init__(self, config: Hyperparameters, model: nn.Module, task: Task, epochs: int,
                 generator: torch.Generator, bn_stats: str = "loss", adamw: str = "fused"):
        if bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {BN_STATS}, got {bn_stats!r}")
        self.config, self.model, self.task, self.epochs, self.generator = config, model, task, epochs, generator
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_adamw(self.params, config.eta, adamw)
        self.steps = 0  # optimizer steps taken
        # Forwarding a batch the loss does not use only matters for running statistics.
        self.forward_both = bn_stats == "both" and tracks_running_stats(model)

    @classmethod
    def hyperparameters(cls, required_only: bool = False) -> list[str]:
        """Names of the method's hyperparameters (the required ones: those without a default)."""
        return [f.name for f in dataclasses.fields(cls.Config) if not required_only
                or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)]

    @classmethod
    def build_config(cls, hyperparameters: dict) -> Hyperparameters:
        fields, required = cls.hyperparameters(), cls.hyperparameters(required_only=True)
        unknown = sorted(set(hyperparameters) - set(fields))
        missing = [f for f in required if f not in hyperparameters]
        if unknown or missing:
            problem = (f"unknown hyperparameter(s) {', '.join(unknown)}" if unknown
                       else f"missing hyperparameter(s) {', '.join(missing)}")
            raise TypeError(f"{cls.name}: {problem}; {cls.name} takes {', '.join(fields)} "
                            f"(required: {', '.join(required)})")
        return cls.Config(**hyperparameters)

    @classmethod
    def check_budget(cls, config: Hyperparameters, epochs: int) -> None:
        """Raise ValueError when `config` makes no sense for a run of `epochs` epochs."""

    def start(self, forget: Batch, batch_size: int | None) -> None:
        """Once, before the first epoch."""

    def uses(self, epoch: int) -> tuple[bool, bool]:
        """Whether (the retain batch, the forget batch) enter this epoch's objective."""
        return True, False

    def objective(self, epoch: int, retain: Batch, forget: Batch) -> Tensor:
        raise NotImplementedError

    def loss(self, epoch: int, retain: Batch, forget: Batch) -> Tensor:
        """The objective; with bn_stats="both" the batch it leaves out is forwarded as well
        (train mode, no gradient), the retain batch before the forget batch
        (docs/authors-code.md#batchnorm-sees-both-batches)."""
        uses_retain, uses_forget = self.uses(epoch)
        if self.forward_both and not uses_retain:
            self.forward_only(retain)
        loss = self.objective(epoch, retain, forget)
        if self.forward_both and not uses_forget:
            self.forward_only(forget)
        return loss

    def forward_only(self, batch: Batch) -> None:
        with torch.no_grad():
            self.model(batch.inputs)

    def step(self, epoch: int, retain: Batch, forget: Batch) -> None:
        self.descend(self.loss(epoch, retain, forget))

    def descend(self, loss: Tensor) -> None:
        """One AdamW step on `loss`, its gradient taken at the current θ."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.edit_gradients()
        self.optimizer.step()
        self.after_step()
        self.steps += 1

    def edit_gradients(self) -> None:
        """Between backward and the optimizer step (NGD's noise, SalUn's mask)."""

    def after_step(self) -> None:
        """After the optimizer step."""

    # shared pieces ------------------------------------------------------------------------
    def data_loss(self, batch: Batch) -> Tensor:
        return self.task.loss(self.model(batch.inputs), batch.targets)


def make_adamw(params: list[Tensor], lr: float, kernel: str = "fused") -> torch.optim.AdamW:
    """AdamW with PyTorch's defaults besides lr, running `kernel` (ADAMW_KERNELS)."""
    if kernel not in ADAMW_KERNELS:
        raise ValueError(f"adamw must be one of {tuple(ADAMW_KERNELS)}, got {kernel!r}")
    if kernel == "fused" and not _fused_ok(params):
        kernel = "default"
    return torch.optim.AdamW(params, lr=lr, **ADAMW_KERNELS[kernel])


def _fused_ok(params: list[Tensor]) -> bool:
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def tracks_running_stats(model: nn.Module) -> bool:
    """True when a forward pass in the model's mode updates BatchNorm's running statistics."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
               for m in model.modules())


# ---------------------------------------------------------------------------------------
# The methods (docs/protocol.md#baselines)
# ---------------------------------------------------------------------------------------

@register
class GD(Method):
    """Descent on the retain loss: J(θ; B_r)."""
    name = "GD"

    def objective(self, epoch, retain, forget):
        return self.data_loss(retain)


@register
class Retrain(GD):
    """Re-initialize θ, then GD on the retain set."""
    name = "Retrain"

    def start(self, forget, batch_size):
        seed = int(torch.randint(2**62, (1,), generator=self.generator, device=self.generator.device))
        reinitialize(self.model, seed)


@register
class GA(Method):
    """Ascent on the forget loss: −J(θ; B_f)."""
    name = "GA"

    def uses(self, epoch):
        return False, True

    def objective(self, epoch, retain, forget):
        return -self.data_loss(forget)


@register
class NGP(Method):
    """NegGrad+: J(θ; B_r) − λ_GA·J(θ; B_f)."""
    name = "NGP"
    Config = NGPConfig

    def uses(self, epoch):
        return True, True

    def objective(self, epoch, retain, forget):
        return self.data_loss(retain) - self.config.lambda_ga * self.data_loss(forget)


@register
class NGD(GD):
    """Noisy GD: N(0, σ²) added to every gradient entry before the step."""
    name = "NGD"
    Config = NGDConfig

    def edit_gradients(self):
        for p in self.params:
            noise = torch.randn(p.shape, generator=self.generator, device=p.device, dtype=p.dtype)
            p.grad.add_(noise, alpha=self.config.sigma)


def _norm_penalty(params: list[Tensor], p: int) -> Tensor:
    # Summed over all entries, hence over ensemble members too: each member's own penalty.
    return sum(t.abs().sum() if p == 1 else t.pow(2).sum() for t in params)


@register
class Ridge(Method):
    """J(θ; B_r) + λ·||θ||², λ = λ_reg·γ_reg^k at step k."""
    name = "Ridge"
    Config = RidgeConfig

    def objective(self, epoch, retain, forget):
        weight = self.config.lambda_reg * self.config.gamma_reg ** self.steps
        return self.data_loss(retain) + weight * _norm_penalty(self.params, 2)


@register
class L1Sparse(Method):
    """J(θ; B_r) + λ_t·||θ||₁, λ_t = (2 − 2t/T)·λ_reg in epoch t (schedule="one_step_late":
    λ_reg at the first step, then λ_t of the previous step's epoch t, as the authors' code)."""
    name = "L1Sparse"
    Config = L1Config
    previous_epoch: int | None = None    # the epoch of the last step taken (None before the first)

    def weight(self, epoch: int) -> float:
        """The ℓ1 weight of the next step, taken in `epoch`."""
        if self.config.schedule == "one_step_late":
            if self.previous_epoch is None:
                return self.config.lambda_reg
            epoch = self.previous_epoch
        return (2 - 2 * epoch / self.epochs) * self.config.lambda_reg

    def objective(self, epoch, retain, forget):
        return self.data_loss(retain) + self.weight(epoch) * _norm_penalty(self.params, 1)

    def step(self, epoch, retain, forget):
        super().step(epoch, retain, forget)
        self.previous_epoch = epoch


class WithTeacher(Method):
    """A method that compares with the frozen initial model θ* (the teacher)."""

    def start(self, forget, batch_size):
        # In the student's (train) mode, as the authors' teacher.
        self.teacher = copy.deepcopy(self.model).requires_grad_(False)

    def teacher_outputs(self, batch: Batch):
        with torch.no_grad():
            return self.teacher(batch.inputs)


@register
class SCRUB(WithTeacher):
    """Even epochs and the last T_GD: J(θ; B_r) + λ_reg·KL(π_θ* ‖ π_θ) on B_r.
    Odd epochs before those: −λ_GA·KL(π_θ* ‖ π_θ) on B_f. Teacher θ* frozen."""
    name = "SCRUB"
    Config = SCRUBConfig
    classification_only = True

    def uses(self, epoch):
        on_retain = epoch % 2 == 0 or epoch >= self.epochs - self.config.t_gd
        return on_retain, not on_retain

    def objective(self, epoch, retain, forget):
        if self.uses(epoch)[0]:
            outputs = self.model(retain.inputs)
            kl = batch_mean(kl_to_teacher(self.task.clamp(outputs), self.teacher_outputs(retain)))
            return self.task.loss(outputs, retain.targets) + self.config.lambda_reg * kl
        kl = batch_mean(kl_to_teacher(self.task.clamp(self.model(forget.inputs)), self.teacher_outputs(forget)))
        return -self.config.lambda_ga * kl


@register
class NPO(WithTeacher):
    """(2/β)·mean log(1 + (π_θ(y|x) / π_θ*(y|x))^β) on B_f, β = λ_reg, summed over heads."""
    name = "NPO"
    Config = NPOConfig
    classification_only = True

    def uses(self, epoch):
        return False, True

    def objective(self, epoch, retain, forget):
        beta = self.config.lambda_reg
        reference = as_heads(self.teacher_outputs(forget))
        total = 0
        outputs = as_heads(self.task.clamp(self.model(forget.inputs)))
        for out, ref, labels in zip(outputs, reference, as_heads(forget.targets)):
            if self.config.form == "ratio":
                ratio = _label_prob(out, labels) / _label_prob(ref, labels)
                per_sample = torch.log1p(ratio.pow(beta))
            else:   # log(1 + r^β) = softplus(β·log r), r the likelihood ratio: stable for any r
                per_sample = F.softplus(beta * (_label_log_prob(out, labels) - _label_log_prob(ref, labels)))
            total = total + (2 / beta) * batch_mean(per_sample)
        return total


def _label_log_prob(logits: Tensor, labels: Tensor) -> Tensor:
    return logits.log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def _label_prob(logits: Tensor, labels: Tensor) -> Tensor:
    return logits.softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)


@register
class SalUn(Method):
    """Saliency mask m = |∂J(θ*; D_f)/∂θ| ≥ median (per model, over all entries), then
    J(θ; B_r) + λ_GA·J(θ; B'_f), B'_f with every label replaced by a random other label;
    only the masked entries of θ change."""
    name = "SalUn"
    Config = SalUnConfig
    classification_only = True

    def uses(self, epoch):
        return True, True

    def start(self, forget, batch_size):
        # One pass over D_f (not an epoch), in the model's train mode: the gradient of the
        # mean forget loss, or (mask_loss="batch_sum") of the sum of batch-mean losses over
        # shuffled batches, as the authors' loop over their forget DataLoader.
        self.optimizer.zero_grad(set_to_none=True)
        n, size = len(forget), batch_size or len(forget)
        order = (random_subset(n, n, forget.members, self.generator, forget.inputs.device)
                 if self.config.mask_loss == "batch_sum" else None)
        for start in range(0, n, size):
            if order is None:
                index = torch.arange(start, min(start + size, n), device=forget.inputs.device)
                index = index if forget.members is None else index.expand(forget.members, -1)
            else:
                index = order[..., start:start + size]
            part = forget.take(index)
            per_sample = self.task.per_sample_loss(self.model(part.inputs), part.targets)
            loss = batch_mean(per_sample) if order is not None else (per_sample.sum(-1) / n).sum()
            loss.backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        members = members_of(self.model)
        flat = torch.cat([g.abs().flatten(0 if members is None else 1) for g in grads], -1)
        threshold = flat.median(-1).values                         # () or (E,)
        self.masks = [g.abs() >= threshold.view(-1, *[1] * (g.dim() - 1)) if members else g.abs() >= threshold
                      for g in grads]
        self.initial = [p.detach().clone() for p in self.params]
        self.optimizer.zero_grad(set_to_none=True)

    def objective(self, epoch, retain, forget):
        retain_loss = self.data_loss(retain)    # the retain batch first, as the authors' loop (BatchNorm)
        outputs = self.model(forget.inputs)
        relabeled = tuple(self._other_label(out, labels)
                          for out, labels in zip(as_heads(outputs), as_heads(forget.targets)))
        targets = relabeled if isinstance(forget.targets, (tuple, list)) else relabeled[0]
        return retain_loss + self.config.lambda_ga * self.task.loss(outputs, targets)

    def _other_label(self, logits: Tensor, labels: Tensor) -> Tensor:
        classes = logits.shape[-1]
        shift = torch.randint(1, classes, labels.shape, generator=self.generator, device=labels.device)
        return (labels + shift) % classes

    def edit_gradients(self):
        for p, m in zip(self.params, self.masks):
            p.grad.mul_(m)

    def after_step(self):
        # AdamW's decoupled weight decay still shrinks unmasked entries (unmasked="decay", the
        # authors'); the paper updates only the masked ones, so by default they keep their θ* values.
        if self.config.unmasked == "decay":
            return
        with torch.no_grad():
            for p, m, p0 in zip(self.params, self.masks, self.initial):
                p.copy_(torch.where(m, p, p0))


@register
class MinNormOG(Method):
    """Algorithm 1 as run in the experiments (docs/protocol.md#minnorm-og). In epoch t < T − T_GD with
    t mod T_proj = 0, every step first projects θ ← θ − s·P_{G⊥}(θ) with G the output
    gradients of a retain subsample B'_r (s = λ_reg·γ_reg^j at the j-th projection), then
    takes one AdamW step on J(θ; B_r) with a fresh gradient at the projected θ
    (order="descent_first" swaps the two; order="authors" is the authors' stale gradient).
    The ablation's variants: span="none" replaces the projection by θ ← (1 − s)·θ; scope
    restricts θ (of the projection or the shrinkage) to a part of the model."""
    name = "MinNorm-OG"
    Config = MinNormOGConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.projections = 0
        self.warned_empty = False
        self.trace: list[ProjectionStep] = []
        self.scope = projection.scope_parameters(self.model, self.config.scope)   # None: all of θ

    @classmethod
    def check_budget(cls, config, epochs):
        if config.t_gd >= epochs:
            raise ValueError(f"MinNorm-OG with t_gd={config.t_gd} ≥ epochs={epochs} never projects (it would be GD); "
                             f"choose t_gd < epochs")

    def objective(self, epoch, retain, forget):
        return self.data_loss(retain)

    def step(self, epoch, retain, forget):
        c = self.config
        if not (epoch < self.epochs - c.t_gd and epoch % c.t_proj == 0):
            self.descend(self.loss(epoch, retain, forget))
        elif c.order == "project_first":
            self.project(retain)
            self.descend(self.loss(epoch, retain, forget))
        elif c.order == "descent_first":
            self.descend(self.loss(epoch, retain, forget))
            self.project(retain)
        else:  # "authors": forward at the old θ, project in place, back-propagate the old graph
            loss = self.loss(epoch, retain, forget)
            self.project(retain, untracked=True)
            self.descend(loss)

    def project(self, retain: Batch, untracked: bool = False) -> None:
        c = self.config
        strength = c.lambda_reg * c.gamma_reg ** self.projections
        before = squared_norm(self.model, self.scope)
        if c.span == "none":
            projection.shrink(self.model, strength, untracked=untracked, parameters=self.scope)
            rows, rank, inside = 0, torch.zeros((), dtype=torch.long), torch.zeros_like(before)
        else:
            subsample = retain.take(perturbation_subsample(retain, c.n_pert, self.task, self.generator))
            if len(subsample) == 0 and not self.warned_empty:
                warnings.warn(f"MinNorm-OG: n_pert // (classes in the batch) = 0 (n_pert = {c.n_pert}), so the "
                              "subsample is empty and each projection step only scales θ by 1 − s (as the "
                              "authors' code does on Tiny ImageNet)", stacklevel=2)
                self.warned_empty = True
            rank, inside = projection.project_out(self.model, subsample.inputs, self.task, strength,
                                                  bn_mode=c.bn_mode, solver=c.solver, precision=c.precision,
                                                  untracked=untracked, parameters=self.scope, span_norm=True)
            rows = len(subsample) * len(as_heads(subsample.targets))
        self.trace.append(ProjectionStep(self.steps, rows, rank, strength, before, squared_norm(self.model, self.scope),
                                         inside))
        self.projections += 1


@dataclass(frozen=True)
class ProjectionStep:
    """What one MinNorm-OG projection did (tensors: one value per ensemble member; no device
    synchronisation while unlearning). θ' = θ − s·P_{G⊥}(θ) with P_{G⊥} orthogonal, so
    ‖θ‖² = ‖P_G θ‖² + ‖P_{G⊥}θ‖²; without `inside`, ‖θ'‖² = ‖θ‖² − (1 − (1 − s)²)·‖P_{G⊥}θ‖² gives
    the orthogonal part from the two norms (which rounding swamps when s is small)."""
    step: int               # optimizer steps before it
    rows: int               # k: the columns of G (samples × heads); 0 with span="none"
    rank: torch.Tensor      # G's numerical rank
    strength: float         # s
    before: torch.Tensor    # ‖θ‖² before (float64), θ the parameters the step acts on (its scope)
    after: torch.Tensor     # ‖θ‖² after
    inside: torch.Tensor | None = None   # ‖P_G θ‖² before (float64), measured by the projection

    @property
    def orthogonal_share(self) -> torch.Tensor:
        """‖P_{G⊥}θ‖ / ‖θ‖: how much of θ lies outside the span of the output gradients."""
        if self.inside is not None:
            return (1 - self.inside / self.before).clamp(min=0).sqrt()
        shrink = 1 - (1 - self.strength) ** 2
        if shrink == 0:
            return torch.full_like(self.before, float("nan"))
        return ((self.before - self.after).clamp(min=0) / shrink / self.before).sqrt()

    @property
    def span_share(self) -> torch.Tensor:
        """‖P_G θ‖ / ‖θ‖: the part of θ the step keeps (0 when G is empty)."""
        if self.inside is not None:
            return (self.inside / self.before).clamp(max=1).sqrt()
        return (1 - self.orthogonal_share.clamp(max=1) ** 2).sqrt()


def squared_norm(model: nn.Module, parameters: Collection[str] | None = None) -> torch.Tensor:
    """‖θ‖² over the trainable parameters (those named in `parameters`, when given; names as
    mnog.projection.trainable_parameters gives them) in float64, per member for an Ensemble."""
    members = isinstance(model, Ensemble)
    return sum(p.detach().double().pow(2).flatten(1 if members else 0).sum(-1)
               for name, p in projection.trainable_parameters(model).items()
               if parameters is None or name in parameters)


# The paper's order of its methods (the columns of Tables 2, 5 and 17, the legends of its figures).
PAPER_ORDER = ("Retrain", "MinNorm-OG", "GD", "GA", "NGP", "NGD", "Ridge", "L1Sparse", "SCRUB", "NPO", "SalUn")


def paper_methods(classifier: bool = True) -> tuple[str, ...]:
    """Every registered method, the paper's in its order and any other after them;
    classifier=False leaves out the classification-only ones (Table 5 is a regression)."""
    ordered = [m for m in PAPER_ORDER if m in METHODS] + [m for m in METHODS if m not in PAPER_ORDER]
    return tuple(m for m in ordered if classifier or not METHODS[m].classification_only)


def perturbation_subsample(retain: Batch, n_pert: int, task: Task, generator: torch.Generator) -> Tensor:
    """Indices of B'_r ⊆ B_r (docs/protocol.md#minnorm-og): n_pert random samples; for a classifier,
    n_pert // (#classes in the batch) random samples of every class of the first head's
    label (all of a class when it has fewer)."""
    n, members, device = len(retain), retain.members, retain.inputs.device
    if not task.is_classifier:
        return random_subset(n, min(n_pert, n), members, generator, device)
    labels = as_heads(retain.targets)[0]
    keys = torch.rand(labels.shape, generator=generator, device=device)
    order = (labels.double() + keys).argsort(-1)                     # by class, random within
    sorted_labels = labels.gather(-1, order)
    position = torch.arange(n, device=device).expand_as(order)
    starts = torch.ones_like(order, dtype=torch.bool)
    starts[..., 1:] = sorted_labels[..., 1:] != sorted_labels[..., :-1]
    rank = position - torch.cummax(torch.where(starts, position, 0), -1).values
    per_class = n_pert // starts.sum(-1, keepdim=True)
    chosen = rank < per_class
    if members is None:
        return order[chosen]
    counts = chosen.sum(-1)
    if not bool((counts == counts[0]).all()):
        raise ValueError("class-balanced subsamples differ in size across ensemble members; "
                         "unlearn such classifiers one at a time")
    return order[chosen].view(members, -1)
