"""`unlearn`: the unlearning loop (docs/protocol.md#the-unlearning-loop) for any torch.nn.Module."""
from __future__ import annotations

import itertools
import time
import warnings
from typing import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from mnog import rehearsal
from mnog.batches import as_batch, paired_indices, retain_subset
from mnog.colors import ColoredImages, rendered
from mnog.ensemble import members_of
from mnog.errors import NonFiniteError, is_integer, is_number
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
    finite: bool                         # every parameter finite at the end (see on_nonfinite)
    projections: tuple = ()              # MinNorm-OG: one ProjectionStep per projection (mnog.methods)
    # With record_batches: one (epoch, retain indices, forget indices) per step, indices into the
    # retain and forget sets as given (D_r, not D'_r; None: the whole set, full-batch steps).
    batches: tuple = ()


def unlearn(model: nn.Module, method: str, forget, retain, loss: str | Task, epochs: int, *,
            batch_size: int | None = None, p_retain: float = 1.0, seed: int = 0,
            retain_seed: int | None = None, bn_stats: str = "loss", adamw: str = "fused",
            on_nonfinite: str = "raise", progress: bool = False,
            on_step: Callable[[int, int], None] | None = None, record_batches: bool = False,
            **hyperparameters) -> UnlearnResult:
    """Unlearn the forget set from `model`, in place.

    model:      any torch.nn.Module (or an mnog.Ensemble of identical modules).
    method:     a name in mnog.METHODS, e.g. "MinNorm-OG", "GD", "SCRUB".
    forget, retain: (inputs, targets) tensor pairs; targets a tuple for multi-head models. Or
                a mnog.colors.ColoredImages (uint8 images and their colors; one model, not an
                Ensemble): only what the run uses is rendered (D'_r of a retain set).
    loss:       "mse" (regression) or "cross_entropy" (classification; every head's
                cross-entropy summed).
    epochs:     T. batch_size=None runs one full-batch step per epoch (Data Poisoning);
                otherwise each forget batch is paired with a retain batch of the same size.
    p_retain:   fraction of the retain set the method may see (D'_r, drawn once).
    seed:       seeds every random draw of the run (batches, noise, subsamples, and D'_r
                unless retain_seed is given).
    retain_seed: seeds the draw of D'_r alone (on the CPU, so the same on every device);
                the experiments pass one per trial, so that every method and configuration
                of a trial sees the same D'_r (docs/authors-code.md#one-retain-subset-per-trial).
    bn_stats:   "loss" forwards only the batches a method's objective uses; "both" also
                forwards the other one (no gradient), so that BatchNorm's running statistics
                see the retain and the forget batch of every step, as the authors' loop
                (docs/authors-code.md#batchnorm-sees-both-batches). Models without BatchNorm are unaffected.
    adamw:      AdamW's kernel: "fused" (where the parameters allow it), "default" (PyTorch's
                choice, as the authors' code: the for-loop kernel on a CPU, foreach on CUDA),
                "forloop" or "foreach" (mnog.methods.make_adamw).
    on_nonfinite: a run that ends with NaN/Inf parameters (a diverged method, e.g. GA at a
                large η) raises NonFiniteError ("raise"), warns ("warn") or says nothing
                ("ignore"); the result's `finite` tells.
    on_step:    called as on_step(step, epoch) after every step (steps count from 1), e.g. to
                watch the metrics move step by step (the model is in train mode; restore it).
    record_batches: keep the samples of every step in the result's `batches`, e.g. to feed
                another implementation the same batches (benchmarks/compare_authors.py).
    **hyperparameters: the method's, e.g. eta=1e-3, lambda_reg=0.1, ... ; an unknown or
                missing one raises TypeError listing what the method takes.
    """
    task = get_task(loss)
    method_cls = get_method(method)
    config = method_cls.build_config(hyperparameters)
    if method_cls.classification_only and not task.is_classifier:
        raise ValueError(f"{method} is defined for classifiers only (loss='cross_entropy')")
    if not is_integer(epochs) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    method_cls.check_budget(config, epochs)
    if on_nonfinite not in ("raise", "warn", "ignore"):
        raise ValueError(f"on_nonfinite must be 'raise', 'warn' or 'ignore', got {on_nonfinite!r}")
    if batch_size is not None and (not is_integer(batch_size) or batch_size < 1):
        raise ValueError(f"batch_size must be None (full batch) or a positive integer, got {batch_size!r}"
                         f"{' (a bool, not a number)' if isinstance(batch_size, bool) else ''}")
    if not is_number(p_retain) or not 0 < p_retain <= 1:
        raise ValueError(f"p_retain must lie in (0, 1], got {p_retain!r}"
                         f"{' (a bool, not a number)' if isinstance(p_retain, bool) else ''}")
    for name, value in (("seed", seed), ("retain_seed", retain_seed)):
        if value is not None and (not is_integer(value) or value < 0):
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"the model ({type(model).__name__}) has no trainable parameters to unlearn")
    members = members_of(model)
    forget = as_batch(rendered(forget), members, "forget")
    retain, kept = draw_retain(retain, p_retain, seed if retain_seed is None else retain_seed, members)
    check_finite(model)
    for name, batch in (("forget", forget), ("retain", retain)):
        check_inputs(model, task, batch, name)

    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)

    model.train()
    runner = method_cls(config, model, task, epochs, generator, bn_stats=bn_stats, adamw=adamw)
    start = time.perf_counter()
    runner.start(forget, batch_size)
    steps_per_epoch = 1 if batch_size is None else -(-len(forget) // batch_size)
    indices = paired_indices(len(retain), len(forget), batch_size, epochs, members, generator, device)
    recorded = []
    with rehearsal.timed("unlearn", method=method, batch_size=batch_size or len(forget)) as timing:
        # A rehearsal (mnog.rehearsal) stops after a few steps.
        for epoch, r_index, f_index in tqdm(itertools.islice(indices, rehearsal.unlearn_steps()),
                                            total=epochs * steps_per_epoch, disable=not progress,
                                            desc=method, unit="step", leave=False):
            runner.step(epoch, retain if r_index is None else retain.take(r_index),
                        forget if f_index is None else forget.take(f_index))
            if record_batches:
                recorded.append((epoch, _in_given_set(r_index, kept), f_index))
            if on_step is not None:
                on_step(runner.steps, epoch)
        timing["steps"] = runner.steps
    seconds = time.perf_counter() - start
    bad = nonfinite_parameters(model)
    if bad and on_nonfinite != "ignore":
        message = (f"{method} diverged: after {runner.steps} steps the model's parameters hold NaN/Inf "
                   f"({', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}); try a smaller eta")
        if on_nonfinite == "raise":
            raise NonFiniteError(message)
        warnings.warn(message, stacklevel=2)
    return UnlearnResult(method, config, epochs, runner.steps, seconds, kept, not bad,
                         tuple(getattr(runner, "trace", ())), tuple(recorded))


def _in_given_set(index: torch.Tensor | None, kept: torch.Tensor | None) -> torch.Tensor | None:
    """Indices into D'_r (None: all of it) as indices into the retain set D'_r was drawn from."""
    if kept is None or index is None:
        return kept if index is None else index
    kept = kept.to(index.device)
    return kept[index] if index.dim() == 1 else kept.gather(-1, index)


def draw_retain(retain, p_retain: float, seed: int, members: int | None):
    """(D'_r as a Batch, its indices in the retain set, or None when p_retain keeps all of it),
    drawn on the CPU from `seed` alone (docs/protocol.md#the-unlearning-loop). A ColoredImages retain set renders D'_r
    alone: a paper-scale D_r rendered whole takes GBs in float32 (Tiny ImageNet: 4.9 GB)."""
    if isinstance(retain, ColoredImages):
        kept = retain_subset(len(retain), p_retain, seed)
        chosen = retain if kept is None else retain.take(kept.to(retain.images.device))
        return as_batch(rendered(chosen), members, "retain"), kept
    batch = as_batch(retain, members, "retain")
    kept = retain_subset(len(batch), p_retain, seed, members)
    return (batch if kept is None else batch.take(kept.to(batch.inputs.device))), kept


def nonfinite_parameters(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]


def check_finite(model: nn.Module) -> None:
    bad = nonfinite_parameters(model)
    if bad:
        raise NonFiniteError(f"the model's parameters hold NaN/Inf ({', '.join(bad[:5])}"
                             f"{' ...' if len(bad) > 5 else ''}); unlearning needs a finite model")


def check_inputs(model: nn.Module, task: Task, batch, name: str) -> None:
    """Run the model (eval mode, no gradient) on the set's first sample and check its targets
    against the outputs, so that a wrong input shape or dtype or a bad label fails here, in
    one line, rather than deep inside the first step."""
    first = torch.zeros(1 if batch.members is None else (batch.members, 1), dtype=torch.long,
                        device=batch.inputs.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(batch.take(first).inputs)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"the model cannot take the {name} inputs (shape {tuple(batch.inputs.shape)}, "
                         f"{batch.inputs.dtype}): {reason}") from None
    finally:
        model.train(was_training)
    task.check_targets(outputs, batch.targets, name)
