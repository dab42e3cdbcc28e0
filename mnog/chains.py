"""Linear chains: an nn.Sequential of nn.Linear layers and elementwise activations.

The Data Poisoning MLP is one. Two things are faster for them than for a general module:
an ensemble's forward (`chain_forward` below: batched matrix products instead of vmap)
and MinNorm-OG's projection (`mnog.projection`: the Gram matrix of per-sample gradients
from per-layer factors, without forming G).
"""
from __future__ import annotations

from torch import Tensor, nn

ELEMENTWISE = (nn.ReLU, nn.SiLU, nn.Tanh, nn.GELU, nn.Sigmoid, nn.LeakyReLU, nn.ELU,
               nn.Softplus, nn.Mish, nn.Hardtanh, nn.Identity)


def is_linear_chain(model: nn.Module) -> bool:
    return (isinstance(model, nn.Sequential)
            and any(isinstance(m, nn.Linear) for m in model)
            and all(isinstance(m, (nn.Linear, *ELEMENTWISE)) for m in model))


def chain_forward(chain: nn.Sequential, params: dict[str, Tensor], x: Tensor,
                  probes: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
    """The chain on x of shape (..., N, in) with weights (..., out, in) from `params`, keyed by
    the chain's own names ("0.weight", or "fc1.weight" for a chain built from an OrderedDict).

    Activations are kept feature-major, (..., features, N), so that z = W a + b is one
    (batched) matrix product whose weight gradient comes out contiguous: no layout copies
    in the backward pass. `probes`, one per Linear layer shaped like its pre-activation
    (..., out, N), are added to the pre-activations (mnog.projection differentiates
    w.r.t. them). Returns the output (..., N, out) and every Linear layer's input (..., in, N).
    """
    a, inputs = x.mT, []
    for name, layer in chain.named_children():
        if isinstance(layer, nn.Linear):
            inputs.append(a)
            weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
            a = weight @ a if bias is None else _affine(weight, a, bias)
            if probes is not None:
                a = a + probes[len(inputs) - 1]
        else:
            a = layer(a)
    return a.mT, inputs


def _affine(weight: Tensor, a: Tensor, bias: Tensor) -> Tensor:
    """bias + weight @ a, fused (addmm / baddbmm) when the shapes allow it."""
    if a.dim() == 2 and weight.dim() == 2:
        return bias.unsqueeze(-1).addmm(weight, a)
    if a.dim() == 3 and weight.dim() == 3:
        return bias.unsqueeze(-1).baddbmm(weight, a)
    return weight @ a + bias.unsqueeze(-1)
