"""`unlearn`: the unlearning loop of SPEC §4 for any torch.nn.Module."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from mnog.batches import as_batch, paired_batches, retain_subset
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
    retain_indices: torch.Tensor | None  # D'_r: the retain samples the method could see (None: all)


def unlearn(model: nn.Module, method: str, forget, retain, loss: str | Task, epochs: int, *,
            batch_size: int | None = None, p_retain: float = 1.0, seed: int = 0,
            retain_seed: int | None = None, bn_stats: str = "loss", progress: bool = False,
            **hyperparameters) -> UnlearnResult:
    """Unlearn the forget set from `model`, in place.

    model:      any torch.nn.Module (or an mnog.Ensemble of identical modules).
    method:     a name in mnog.METHODS, e.g. "MinNorm-OG", "GD", "SCRUB".
    forget, retain: (inputs, targets) tensor pairs; targets a tuple for multi-head models.
    loss:       "mse" (regression) or "cross_entropy" (classification; every head's
                cross-entropy summed).
    epochs:     T. batch_size=None runs one full-batch step per epoch (Data Poisoning);
                otherwise each forget batch is paired with a retain batch of the same size.
    p_retain:   fraction of the retain set the method may see (D'_r, drawn once).
    seed:       seeds every random draw of the run (batches, noise, subsamples, and D'_r
                unless retain_seed is given).
    retain_seed: seeds the draw of D'_r alone (on the CPU, so the same on every device);
                the experiments pass one per trial, so that every method and configuration
                of a trial sees the same D'_r (SPEC §4, §11.2).
    bn_stats:   "loss" forwards only the batches a method's objective uses; "both" also
                forwards the other one (no gradient), so that BatchNorm's running statistics
                see the retain and the forget batch of every step, as the authors' loop
                (SPEC §11.1). Models without BatchNorm are unaffected.
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
    kept = retain_subset(len(retain), p_retain, seed if retain_seed is None else retain_seed, members)
    if kept is not None:
        retain = retain.take(kept.to(device))

    model.train()
    runner = method_cls(config, model, task, epochs, generator, bn_stats=bn_stats)
    start = time.perf_counter()
    runner.start(forget, batch_size)
    steps_per_epoch = 1 if batch_size is None else -(-len(forget) // batch_size)
    batches = paired_batches(retain, forget, batch_size, epochs, members, generator)
    for epoch, retain_batch, forget_batch in tqdm(batches, total=epochs * steps_per_epoch, disable=not progress,
                                                  desc=method, unit="step", leave=False):
        runner.step(epoch, retain_batch, forget_batch)
    return UnlearnResult(method, config, epochs, runner.steps, time.perf_counter() - start, kept)


def check_finite(model: nn.Module) -> None:
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteError(f"the model's parameters hold NaN/Inf ({', '.join(bad[:5])}"
                             f"{' ...' if len(bad) > 5 else ''}); unlearning needs a finite model")
