"""`unlearn`: the unlearning loop of SPEC §4 for any torch.nn.Module."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from mnog.batches import as_batch, paired_batches, random_subset
from mnog.ensemble import members_of
from mnog.errors import NonFiniteError
from mnog.methods import Hyperparameters, get_method
from mnog.tasks import Task, get_task


@dataclass(frozen=True)
class UnlearnResult:
    method: str
    config: Hyperparameters
    epochs: int
    steps: int
    seconds: float


def unlearn(model: nn.Module, method: str, forget, retain, loss: str | Task, epochs: int, *,
            batch_size: int | None = None, p_retain: float = 1.0, seed: int = 0,
            progress: bool = False, **hyperparameters) -> UnlearnResult:
    """Unlearn the forget set from `model`, in place.

    model:      any torch.nn.Module (or an mnog.Ensemble of identical modules).
    method:     a name in mnog.METHODS, e.g. "MinNorm-OG", "GD", "SCRUB".
    forget, retain: (inputs, targets) tensor pairs; targets a tuple for multi-head models.
    loss:       "mse" (regression) or "cross_entropy" (classification; every head's
                cross-entropy summed).
    epochs:     T. batch_size=None runs one full-batch step per epoch (Data Poisoning);
                otherwise each forget batch is paired with a retain batch of the same size.
    p_retain:   fraction of the retain set the method may see (D'_r, drawn once).
    seed:       seeds every random draw of the run (D'_r, batches, noise, subsamples).
    **hyperparameters: the method's, e.g. eta=1e-3, lambda_reg=0.1, ... ; an unknown or
                missing one raises TypeError listing what the method takes.
    """
    task = get_task(loss)
    method_cls = get_method(method)
    config = method_cls.build_config(hyperparameters)
    if method_cls.classification_only and not task.is_classifier:
        raise ValueError(f"{method} is defined for classifiers only (loss='cross_entropy')")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (full batch) or a positive integer, got {batch_size!r}")
    if not 0 < p_retain <= 1:
        raise ValueError(f"p_retain must lie in (0, 1], got {p_retain}")
    members = members_of(model)
    forget = as_batch(forget, members, "forget")
    retain = as_batch(retain, members, "retain")
    check_finite(model)

    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    kept = int(p_retain * len(retain))
    if kept < 1:
        raise ValueError(f"p_retain={p_retain} keeps no sample of a retain set of {len(retain)}")
    if kept < len(retain):
        retain = retain.take(random_subset(len(retain), kept, members, generator, device))

    model.train()
    runner = method_cls(config, model, task, epochs, generator)
    start = time.perf_counter()
    runner.start(forget, batch_size)
    steps_per_epoch = 1 if batch_size is None else -(-len(forget) // batch_size)
    batches = paired_batches(retain, forget, batch_size, epochs, members, generator)
    for epoch, retain_batch, forget_batch in tqdm(batches, total=epochs * steps_per_epoch, disable=not progress,
                                                  desc=method, unit="step", leave=False):
        runner.step(epoch, retain_batch, forget_batch)
    return UnlearnResult(method, config, epochs, runner.steps, time.perf_counter() - start)


def check_finite(model: nn.Module) -> None:
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteError(f"the model's parameters hold NaN/Inf ({', '.join(bad[:5])}"
                             f"{' ...' if len(bad) > 5 else ''}); unlearning needs a finite model")
