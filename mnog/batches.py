"""The batch protocol (docs/protocol.md#the-unlearning-loop): forget batches paired with same-size retain batches.

A data set is a pair (inputs, targets) of tensors, targets possibly a tuple (one per
head). For an `mnog.Ensemble` every tensor carries a leading member dim (E, N, ...) and
sample indices are per member (E, n); otherwise indices are (n,).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from mnog.tasks import Targets, as_heads


@dataclass(frozen=True)
class Batch:
    inputs: Tensor
    targets: Targets
    members: int | None = None  # E when the tensors carry a leading ensemble-member dim

    def take(self, index: Tensor) -> "Batch":
        """The samples at `index`: (n,) for one model, (E, n) per ensemble member."""
        heads = tuple(take(t, index) for t in as_heads(self.targets))
        targets = heads if isinstance(self.targets, (tuple, list)) else heads[0]
        return Batch(take(self.inputs, index), targets, self.members)

    def __len__(self) -> int:
        """Number of samples (per member)."""
        return self.inputs.shape[0 if self.members is None else 1]


def as_batch(data, members: int | None, name: str) -> Batch:
    """Validate (inputs, targets) and wrap it; `members` is E for an Ensemble, else None."""
    if isinstance(data, Batch):
        inputs, targets = data.inputs, data.targets
    else:
        try:
            inputs, targets = data
        except (TypeError, ValueError):
            raise TypeError(f"the {name} set must be a pair (inputs, targets) of tensors") from None
    if not isinstance(inputs, Tensor) or not all(isinstance(t, Tensor) for t in as_heads(targets)):
        raise TypeError(f"the {name} set must be a pair (inputs, targets) of tensors")
    dim = 0 if members is None else 1
    if members is not None and any(t.shape[0] != members for t in (inputs, *as_heads(targets))):
        raise ValueError(f"the {name} set of an ensemble of {members} needs a leading member dim of {members}")
    n = inputs.shape[dim]
    if n == 0:
        raise ValueError(f"the {name} set is empty")
    if any(t.shape[dim] != n for t in as_heads(targets)):
        raise ValueError(f"the {name} set has {n} inputs but targets of lengths "
                         f"{[t.shape[dim] for t in as_heads(targets)]}")
    return Batch(inputs, targets, members)


def take(x: Tensor, index: Tensor) -> Tensor:
    if index.dim() == 1:
        return x.index_select(0, index)
    return torch.vmap(lambda xi, ii: xi.index_select(0, ii))(x, index)


def random_subset(n: int, size: int, members: int | None, generator: torch.Generator, device) -> Tensor:
    """`size` distinct random indices out of n, drawn independently per member."""
    shape = (n,) if members is None else (members, n)
    return torch.rand(shape, generator=generator, device=device).argsort(-1)[..., :size]


def retain_subset(n: int, p_retain: float, seed: int, members: int | None = None) -> Tensor | None:
    """D'_r: the indices of int(p_retain · n) random retain samples (per member for an
    ensemble), drawn on the CPU from `seed` alone; None when p_retain keeps all of them."""
    kept = int(p_retain * n)
    if kept < 1:
        raise ValueError(f"p_retain={p_retain} keeps no sample of a retain set of {n}")
    if kept == n:
        return None
    return random_subset(n, kept, members, torch.Generator().manual_seed(seed), "cpu")


def paired_batches(retain: Batch, forget: Batch, batch_size: int | None, epochs: int,
                   members: int | None, generator: torch.Generator) -> Iterator[tuple[int, Batch, Batch]]:
    """Yield (epoch, retain batch, forget batch) for the whole run: the samples
    `paired_indices` picks (docs/protocol.md#the-unlearning-loop)."""
    for epoch, r_index, f_index in paired_indices(len(retain), len(forget), batch_size, epochs, members, generator,
                                                  retain.inputs.device):
        yield (epoch, retain if r_index is None else retain.take(r_index),
               forget if f_index is None else forget.take(f_index))


def paired_indices(n_r: int, n_f: int, batch_size: int | None, epochs: int, members: int | None,
                   generator: torch.Generator, device) -> Iterator[tuple[int, Tensor | None, Tensor | None]]:
    """Yield (epoch, retain indices, forget indices) of every step of the run, for a
    retain set of n_r and a forget set of n_f samples ((n,) indices, (E, n) per member).

    batch_size=None: one full-batch step per epoch (Data Poisoning), indices None (every
    sample). Otherwise every epoch iterates over the reshuffled forget set; each forget batch
    is paired with the next retain batch of the same size, retain batches continuing across
    epochs and reshuffling when exhausted (a partial last retain batch is dropped when the
    retain set holds more than one batch, as the authors' DataLoader does).
    """
    if batch_size is None:
        for epoch in range(epochs):
            yield epoch, None, None
        return
    retain_order, cursor = None, n_r
    for epoch in range(epochs):
        forget_order = random_subset(n_f, n_f, members, generator, device)
        for start in range(0, n_f, batch_size):
            if cursor + min(batch_size, n_r) > n_r:
                retain_order, cursor = random_subset(n_r, n_r, members, generator, device), 0
            size = min(batch_size, n_r)
            r_index = retain_order[..., cursor:cursor + size]
            cursor += size
            yield epoch, r_index, forget_order[..., start:start + batch_size]
