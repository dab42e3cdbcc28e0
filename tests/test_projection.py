"""Properties of MinNorm-OG's projection (mnog.projection)."""
import copy

import pytest
import torch
from torch import nn

import mnog
from mnog import projection
from mnog.models import mlp
from mnog.tasks import Task

from conftest import TwoHeadCNN, Wrapped

MSE, CE = Task("mse"), Task("cross_entropy")


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def loop_gradients(model, inputs, task, per_sample_eval=False):
    """The reference: one backward pass per scalar output, as the authors' code."""
    if per_sample_eval:
        model.eval()
        outputs = [model(inputs[i:i + 1]) for i in range(len(inputs))]
        scalars = [task.scalar_outputs(o)[0] for o in outputs]           # (H,) per sample
        rows = [(scalars[i][h]) for h in range(len(scalars[0])) for i in range(len(inputs))]
    else:
        scalars = task.scalar_outputs(model(inputs))                     # (N, H)
        rows = [scalars[i, h] for h in range(scalars.shape[1]) for i in range(scalars.shape[0])]
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(r, params, retain_graph=True)])
                        for r in rows])


@pytest.mark.parametrize("path", ["linear", "materialized"])
def test_one_projection_of_a_linear_model_is_the_minimum_norm_interpolator(path):
    # f(θ, x) = θᵀx; θ* interpolates D_r ∪ D_f. With λ_reg = 1 and every retain sample in
    # the subsample, θ ← P_span(X_r)(θ*) is the minimum-norm interpolator of D_r (Theorem 2).
    d, n_r, n_f = 30, 8, 3
    x_r, x_f = torch.randn(n_r, d, dtype=torch.float64), torch.randn(n_f, d, dtype=torch.float64)
    y_r, y_f = torch.randn(n_r, dtype=torch.float64), torch.randn(n_f, dtype=torch.float64)
    x_all, y_all = torch.cat([x_r, x_f]), torch.cat([y_r, y_f])
    null = torch.randn(d, dtype=torch.float64)
    null -= torch.linalg.pinv(x_all) @ (x_all @ null)
    theta_star = torch.linalg.pinv(x_all) @ y_all + null                # an interpolator, not min-norm
    chain = nn.Sequential(nn.Linear(d, 1, bias=False)).double()
    model = chain if path == "linear" else Wrapped(chain)
    with torch.no_grad():
        chain[0].weight.copy_(theta_star)

    projection.project_out(model, x_r, MSE, strength=1.0, path=path)

    theta = chain[0].weight.detach().flatten()
    min_norm = torch.linalg.pinv(x_r) @ y_r
    torch.testing.assert_close(theta, min_norm, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x_r @ theta, y_r, rtol=1e-10, atol=1e-10)
    # The drift θ − θ* is orthogonal to every retain gradient (the rows of X_r).
    assert (x_r @ (theta - theta_star)).abs().max() < 1e-10


@pytest.mark.parametrize("strength", [0.3, 1.0])
def test_drift_is_orthogonal_to_the_retain_gradients_of_a_nonlinear_model(strength, sine_data):
    # float64 and 8 samples keep G well conditioned, so the QR reference below is exact.
    model = mlp(width=32).double()
    (x_r, _), _ = sine_data
    x_r = x_r[:8].double()
    G = mnog.output_gradients(model, x_r, MSE).double()
    before = flat(model).double()
    projection.project_out(model, x_r, MSE, strength)
    drift = flat(model).double() - before
    assert drift.norm() > 1e-3 * before.norm()
    assert (G @ drift).abs().max() < 1e-9 * G.norm() * drift.norm()
    # θ moved along -P_{G⊥}(θ): what remains of θ's part orthogonal to span(G) is (1 - s) of it.
    q, _ = torch.linalg.qr(G.T)
    perp = lambda v: v - q @ (q.T @ v)  # noqa: E731
    torch.testing.assert_close(perp(flat(model).double()), (1 - strength) * perp(before), rtol=1e-7, atol=1e-9)


def test_linear_path_matches_the_materialized_paths(vector_data):
    model = mlp(width=40, inputs=5)
    (x_r, _), _ = vector_data
    got = {}
    for path, solver in [("linear", "gram"), ("materialized", "gram"), ("materialized", "qr")]:
        targets, rank, finite = projection.span_projection(model, x_r, MSE, path=path, solver=solver)
        assert bool(finite) and int(rank) == len(x_r)
        got[path, solver] = torch.cat([t.flatten() for t in targets.values()])
    reference = got["materialized", "qr"]
    for key, value in got.items():
        assert (value - reference).norm() < 1e-5 * reference.norm(), key


def test_gradient_matrix_of_an_mlp_equals_the_per_sample_loop(sine_data):
    model = Wrapped(mlp(width=16))
    (x_r, _), _ = sine_data
    torch.testing.assert_close(mnog.output_gradients(model, x_r, MSE), loop_gradients(model, x_r, MSE),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bn_mode", ["batch", "eval"])
def test_gradient_matrix_of_a_batchnorm_cnn_equals_the_loop(bn_mode, two_head_data):
    (x_r, _), _ = two_head_data
    model = TwoHeadCNN()
    model.train()
    model(torch.randn(16, 3, 8, 8))  # non-trivial running statistics for eval mode
    G = mnog.output_gradients(model, x_r[:10], CE, bn_mode=bn_mode)
    assert G.shape == (20, sum(p.numel() for p in model.parameters()))       # 2 heads × 10 samples
    reference = loop_gradients(copy.deepcopy(model), x_r[:10], CE, per_sample_eval=bn_mode == "eval")
    torch.testing.assert_close(G, reference, rtol=1e-4, atol=1e-5)
    assert model.training  # the mode is restored


def test_batch_mode_couples_samples_through_batchnorm(two_head_data):
    (x_r, _), _ = two_head_data
    model = TwoHeadCNN().train()
    batch = mnog.output_gradients(model, x_r[:6], CE, bn_mode="batch")
    alone = torch.cat([mnog.output_gradients(model, x_r[i:i + 1], CE, bn_mode="batch") for i in range(6)])
    assert not torch.allclose(batch[:6], alone[0::2])  # a sample's gradient depends on its batch


def test_batch_mode_updates_batchnorm_running_statistics_once(two_head_data):
    (x_r, _), _ = two_head_data
    model = TwoHeadCNN().train()
    reference = copy.deepcopy(model)
    reference(x_r[:10])
    projection.project_out(model, x_r[:10], CE, 0.5)
    bn, ref_bn = model.trunk[1], reference.trunk[1]
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
    assert int(bn.num_batches_tracked) == 1


def test_ensemble_projection_equals_each_member_alone(vector_data):
    members = [mlp(width=24, inputs=5) for _ in range(3)]
    ensemble = mnog.Ensemble(members)
    (x_r, _), _ = vector_data
    inputs = torch.stack([x_r, x_r * 0.5, x_r + 1])
    projection.project_out(ensemble, inputs, MSE, 0.7)
    for i, member in enumerate(members):
        projection.project_out(member, inputs[i], MSE, 0.7)
        torch.testing.assert_close(flat(ensemble.member(i)), flat(member), rtol=1e-5, atol=1e-6)


def test_materialized_ensemble_projection_equals_each_member_alone(vector_data):
    members = [Wrapped(mlp(width=12, inputs=5)) for _ in range(2)]
    ensemble = mnog.Ensemble(members)
    (x_r, _), _ = vector_data
    inputs = torch.stack([x_r, -x_r])
    projection.project_out(ensemble, inputs, MSE, 1.0)
    for i, member in enumerate(members):
        projection.project_out(member, inputs[i], MSE, 1.0)
        torch.testing.assert_close(flat(ensemble.member(i)), flat(member), rtol=1e-4, atol=1e-5)


def test_rank_deficient_subsample_is_handled(vector_data):
    (x_r, _), _ = vector_data
    duplicated = torch.cat([x_r[:5], x_r[:5]])                          # G has rank 5, not 10
    model = mlp(width=16, inputs=5)
    targets, rank, finite = projection.span_projection(model, duplicated, MSE)
    assert int(rank) == 5 and bool(finite)
    reference, _, _ = projection.span_projection(model, x_r[:5], MSE)
    for name in targets:
        torch.testing.assert_close(targets[name], reference[name], rtol=1e-4, atol=1e-6)


def test_non_finite_gradients_are_rejected(sine_data):
    (x_r, _), _ = sine_data
    model = mlp(width=8)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(mnog.NonFiniteError, match="NaN/Inf"):
        projection.project_out(model, x_r, MSE, 0.5)


def test_strength_outside_unit_interval_is_rejected(sine_data):
    (x_r, _), _ = sine_data
    with pytest.raises(ValueError, match="strength"):
        projection.project_out(mlp(width=8), x_r, MSE, 1.5)
