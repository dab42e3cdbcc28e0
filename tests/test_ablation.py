"""MinNorm-OG's ablation variants (span, scope: mnog.methods.MinNormOGConfig, mnog.projection)
and how their records are keyed (mnog.sweep.MethodOptions)."""
import copy
import dataclasses

import pytest
import torch
from torch import nn

import mnog
from mnog import projection
from mnog.models import mlp
from mnog.sweep import MethodOptions
from mnog.tasks import Task

from conftest import TwoHeadCNN

MSE = Task("mse")


def test_span_none_is_a_shrinkage_then_the_descent_step_exactly(sine_data):
    retain, forget = sine_data
    model = mlp(width=16)
    reference = copy.deepcopy(model)
    result = mnog.unlearn(model, "MinNorm-OG", forget=forget, retain=retain, loss="mse", epochs=4, eta=1e-2,
                          lambda_reg=0.3, gamma_reg=0.5, t_gd=1, t_proj=1, n_pert=8, span="none")

    params = list(reference.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-2, fused=True)       # mnog's AdamW on a CPU
    for epoch in range(4):
        if epoch < 3:                                                 # T − T_GD = 3 projecting epochs
            with torch.no_grad():
                for p in params:
                    p.mul_(1 - 0.3 * 0.5 ** epoch)
        optimizer.zero_grad(set_to_none=True)
        MSE.loss(reference(retain[0]), retain[1]).backward()
        optimizer.step()

    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert [p.strength for p in result.projections] == pytest.approx([0.3, 0.15, 0.075])
    assert all(p.rows == 0 and float(p.span_share) == 0 for p in result.projections)
    assert result.config.span == "none" and result.config.scope == "all"


def linear_problem(d=30, n_r=8, n_f=3):
    """Theorem 2's setting: f(θ, x) = θᵀx with θ* an interpolator of D_r ∪ D_f that is not of minimum norm."""
    g = torch.Generator().manual_seed(5)
    x_r, x_f = torch.randn(n_r, d, generator=g, dtype=torch.float64), torch.randn(n_f, d, generator=g, dtype=torch.float64)
    y_r, y_f = torch.randn(n_r, 1, generator=g, dtype=torch.float64), torch.randn(n_f, 1, generator=g, dtype=torch.float64)
    x_all = torch.cat([x_r, x_f])
    null = torch.randn(d, generator=g, dtype=torch.float64)
    null -= torch.linalg.pinv(x_all) @ (x_all @ null)
    model = nn.Sequential(nn.Linear(d, 1, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.linalg.pinv(x_all) @ torch.cat([y_r, y_f]).squeeze(1) + null)
    return model, (x_r, y_r), (x_f, y_f)


@pytest.mark.parametrize("span", ["full", "none"])
def test_on_theorem_2s_problem_only_the_projection_reaches_the_minimum_norm_interpolator(span):
    model, retain, forget = linear_problem()
    minimum_norm = torch.linalg.pinv(retain[0]) @ retain[1].squeeze(1)
    # λ_reg 0.5, γ_reg 1: 40 projection steps leave 0.5^40 of θ's part outside span(X_r); η so
    # small that the descent steps move nothing.
    mnog.unlearn(model, "MinNorm-OG", forget=forget, retain=retain, loss="mse", epochs=40, eta=1e-14,
                 lambda_reg=0.5, gamma_reg=1.0, t_gd=0, t_proj=1, n_pert=8, span=span)
    theta = model[0].weight.detach().squeeze(0)
    if span == "full":
        torch.testing.assert_close(theta, minimum_norm, rtol=1e-9, atol=1e-9)
    else:   # the same schedule without the span shrinks θ* toward 0, off every interpolator of D_r
        assert (theta - minimum_norm).norm() > 0.9 * minimum_norm.norm()
        assert (retain[0] @ theta - retain[1].squeeze(1)).norm() > 0.9 * retain[1].norm()


def test_scope_restricts_the_projection_to_its_parameters(two_head_data):
    (x_r, _), _ = two_head_data
    task = Task("cross_entropy")
    for scope, kept in [("heads", lambda n: not n.startswith("heads.")),
                        ("body", lambda n: n.startswith("heads.") or n.startswith("trunk.1."))]:
        model = TwoHeadCNN()
        names = projection.scope_parameters(model, scope)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        projection.project_out(model, x_r[:6], task, 0.5, parameters=names)
        for n, p in model.named_parameters():
            assert torch.equal(p, before[n]) == kept(n), (scope, n)
        assert set(names) == {n for n in before if not kept(n)}
    assert projection.scope_parameters(mlp(8), "heads") == ["4.weight", "4.bias"]
    assert projection.scope_parameters(mlp(8), "all") is None
    with pytest.raises(ValueError, match="scope 'body' holds none"):
        projection.scope_parameters(nn.Sequential(nn.Linear(3, 1)), "body")


def test_a_scoped_projection_is_the_projection_onto_that_parts_gradient_span(sine_data):
    model = mlp(width=12).double()
    (x_r, _), _ = sine_data
    x_r = x_r[:6].double()
    names = projection.scope_parameters(model, "heads")
    g = mnog.output_gradients(model, x_r, MSE)[:, -13:]                  # the head's 12 weights and bias
    head = lambda: torch.cat([model[4].weight.flatten(), model[4].bias]).detach()  # noqa: E731
    before = head()
    projection.project_out(model, x_r, MSE, 0.4, parameters=names)
    drift = head() - before
    assert drift.norm() > 0 and (g @ drift).abs().max() < 1e-7 * g.norm() * drift.norm()


def test_unknown_span_or_scope_is_refused():
    for options, match in [({"span": "half"}, "span must be one of"), ({"scope": "bn"}, "scope must be one of")]:
        with pytest.raises(ValueError, match=match):
            mnog.methods.MinNormOGConfig(eta=1e-3, lambda_reg=0.1, gamma_reg=0.9, t_gd=0, t_proj=1, n_pert=5,
                                         **options)


def test_variants_records_are_keyed_by_their_options_and_leave_minnorm_ogs_keys_alone():
    from mnog.poisoning import PROFILES, jobs
    cfg = dataclasses.replace(PROFILES["smoke"], methods=("MinNorm-OG",))
    default = jobs(cfg)
    # Algorithm 1's configurations name no variant option: the keys of records stored before them.
    assert {tuple(sorted(j.config)) for j in default} == {("eta", "gamma_reg", "lambda_reg", "n_pert", "order",
                                                          "precision", "t_gd", "t_proj")}
    setting = {"experiment": "table5"}
    keys = {j.key(setting, 1) for j in default}
    for options in [{"minnorm_span": "none"}, {"minnorm_scope": "heads"},
                    {"minnorm_span": "none", "minnorm_scope": "body"}]:
        variant = jobs(dataclasses.replace(cfg, **options))
        assert len(variant) == len(default) and keys.isdisjoint(j.key(setting, 1) for j in variant)
        assert all(j.config.get("span", "full") == options.get("minnorm_span", "full")
                   and j.config.get("scope", "all") == options.get("minnorm_scope", "all") for j in variant)
    assert MethodOptions(minnorm_span="none").method_options()["MinNorm-OG"]["span"] == "none"


def test_the_trace_measures_the_span_share_before_the_step_even_at_a_tiny_strength(vector_data):
    retain, forget = vector_data
    model = mlp(width=8, inputs=5).double()
    x = retain[0][:4].double()
    span, _, _ = projection.span_projection(model, x, MSE)
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    expected = float(torch.cat([span[n].flatten() for n, _ in model.named_parameters()]).norm() / theta.norm())
    rank, inside = projection.project_out(model, x, MSE, 1e-12, span_norm=True)
    step = mnog.methods.ProjectionStep(0, 4, rank, 1e-12, theta.double().pow(2).sum(), None, inside)
    assert 0 < expected < 1 and float(step.span_share) == pytest.approx(expected, rel=1e-9)
    assert float(step.orthogonal_share) == pytest.approx((1 - expected ** 2) ** 0.5, rel=1e-9)
