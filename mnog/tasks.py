"""What a model is trained to predict: the loss J(θ; B) and the scalar outputs behind G.

Every reduction here is "mean over the samples of a batch (the last batch dimension),
summed over anything in front of it". For an ordinary model the front is empty and the
loss is the usual batch mean; for an `mnog.Ensemble`, whose tensors carry a leading
member dimension (E, N, ...), it is the sum of the members' batch means, so that each
member receives exactly its own gradient.

Outputs and targets are a tensor, or a tuple of tensors with one entry per head
(the colored-image models have a content head and a color head).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Outputs = Tensor | tuple[Tensor, ...]
Targets = Tensor | tuple[Tensor, ...]


def as_heads(x: Outputs | Targets) -> tuple[Tensor, ...]:
    """A single-head tensor as a 1-tuple; tuples and lists of heads as tuples."""
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def batch_mean(per_sample: Tensor) -> Tensor:
    """Mean over samples (last dim), summed over ensemble members (leading dims)."""
    return per_sample.mean(-1).sum()


@dataclass(frozen=True)
class Task:
    """A supervised objective: "mse" (regression) or "cross_entropy" (classification).

    Regression outputs have shape (..., N, F) and targets the same shape; classification
    outputs are logits (..., N, C) with integer targets (..., N). With several heads the
    per-head losses are summed (docs/protocol.md#baselines).
    """

    name: str
    # The image experiments clamp logits to ±30 inside every unlearning loss, as the
    # authors' code does (its MAX_LOGIT_THRESHOLD); None leaves outputs untouched.
    logit_clamp: float | None = None

    def __post_init__(self):
        if self.name not in ("mse", "cross_entropy"):
            raise ValueError(f"unknown loss {self.name!r}; choose 'mse' or 'cross_entropy'")

    def clamp(self, outputs: Outputs) -> Outputs:
        """Outputs as the losses see them (clamped logits when logit_clamp is set)."""
        if self.logit_clamp is None:
            return outputs
        heads = tuple(o.clamp(-self.logit_clamp, self.logit_clamp) for o in as_heads(outputs))
        return heads if isinstance(outputs, (tuple, list)) else heads[0]

    @property
    def is_classifier(self) -> bool:
        return self.name == "cross_entropy"

    def per_sample_loss(self, outputs: Outputs, targets: Targets) -> Tensor:
        """Loss of each sample, summed over heads: shape (..., N)."""
        outputs, targets = as_heads(self.clamp(outputs)), as_heads(targets)
        if len(outputs) != len(targets):
            raise ValueError(f"the model has {len(outputs)} heads but the targets have {len(targets)}")
        for o, t in zip(outputs, targets):
            self._check_shapes(o, t)
        if self.is_classifier:
            return sum(_cross_entropy(o, t) for o, t in zip(outputs, targets))
        return sum((o - t).pow(2).mean(-1) for o, t in zip(outputs, targets))

    def _check_shapes(self, output: Tensor, target: Tensor) -> None:
        # Exact shapes: broadcasting (N, 1) outputs against (N,) targets would silently give an N×N loss.
        if self.is_classifier and target.shape != output.shape[:-1]:
            raise ValueError(f"cross-entropy needs one class label per sample: outputs {tuple(output.shape)} need "
                             f"targets of shape {tuple(output.shape[:-1])}, got {tuple(target.shape)}")
        if not self.is_classifier and target.shape != output.shape:
            raise ValueError(f"mse needs targets shaped like the outputs: outputs {tuple(output.shape)}, targets "
                             f"{tuple(target.shape)}")

    def check_targets(self, outputs: Outputs, targets: Targets, name: str) -> None:
        """Validate a whole set's targets against the model's outputs on its first sample(s):
        heads, shapes (after the sample dimension), label dtype and range; one clear ValueError."""
        outputs, targets = as_heads(outputs), as_heads(targets)
        if len(outputs) != len(targets):
            raise ValueError(f"the model has {len(outputs)} head(s) but the {name} set has targets for {len(targets)}")
        for h, (o, t) in enumerate(zip(outputs, targets)):
            where = f"the {name} set's targets" + (f" for head {h}" if len(outputs) > 1 else "")
            if self.is_classifier:
                if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                    raise ValueError(f"{where} must be integer class labels, got {t.dtype}")
                if t.dim() != o.dim() - 1:
                    raise ValueError(f"{where} must hold one label per sample (shape {tuple(t.shape)} against "
                                     f"outputs {tuple(o.shape)})")
                classes = o.shape[-1]
                if t.numel() and (int(t.min()) < 0 or int(t.max()) >= classes):
                    raise ValueError(f"{where} must lie in [0, {classes}) for a {classes}-way output, got labels "
                                     f"from {int(t.min())} to {int(t.max())}")
            elif t.dim() != o.dim() or t.shape[-1] != o.shape[-1]:
                raise ValueError(f"mse needs targets shaped like the outputs: {where} have shape {tuple(t.shape)}, "
                                 f"the outputs {o.dim()} dimensions with {o.shape[-1]} value(s) per sample")

    def loss(self, outputs: Outputs, targets: Targets) -> Tensor:
        """J(θ; B): the batch mean of `per_sample_loss` (summed over ensemble members)."""
        return batch_mean(self.per_sample_loss(outputs, targets))

    def scalar_outputs(self, outputs: Outputs) -> Tensor:
        """The scalar outputs whose gradients MinNorm-OG keeps: shape (..., N, heads).

        Regression: the model's single output. Classification: the maximum logit
        z_θ(x)_j with j = argmax, which `max` differentiates as a constant index (docs/protocol.md#minnorm-og).
        """
        heads = as_heads(outputs)
        if self.is_classifier:
            return torch.stack([o.max(-1).values for o in heads], -1)
        if any(o.shape[-1] != 1 for o in heads):
            raise ValueError("MinNorm-OG on a regression model needs one scalar output per head "
                             f"(got output shapes {[tuple(o.shape) for o in heads]})")
        return torch.cat(heads, -1)


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    per_sample = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none")
    return per_sample.view(labels.shape)


def kl_to_teacher(student: Outputs, teacher: Outputs) -> Tensor:
    """KL(π_θ* ‖ π_θ) per sample, summed over heads: shape (..., N)  (SCRUB, docs/protocol.md#baselines)."""
    return sum(
        F.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="none").sum(-1)
        for s, t in zip(as_heads(student), as_heads(teacher))
    )


def label_probability(logits: Tensor, labels: Tensor) -> Tensor:
    """π(y | x) of each sample's label: shape (..., N)."""
    return logits.softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)


TASKS = {name: Task(name) for name in ("mse", "cross_entropy")}


def get_task(loss: str | Task) -> Task:
    if isinstance(loss, Task):
        return loss
    if loss not in TASKS:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(TASKS)}")
    return TASKS[loss]
