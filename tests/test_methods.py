"""Each method's step against its objective (docs/protocol.md#baselines), on cases checkable by hand."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

import mnog
from mnog import projection
from mnog.batches import as_batch
from mnog.methods import METHODS, perturbation_subsample
from mnog.models import mlp
from mnog.tasks import Task

from conftest import TwoHeadCNN

MSE, CE = Task("mse"), Task("cross_entropy")


def runner(name, model, task, epochs=4, seed=0, **hp):
    cls = METHODS[name]
    return cls(cls.build_config(hp), model, task, epochs, torch.Generator().manual_seed(seed))


def batches(data):
    retain, forget = data
    return as_batch(retain, None, "retain"), as_batch(forget, None, "forget")


def adamw_step(model, loss_fn, eta):
    """The reference: one plain AdamW step (PyTorch defaults, weight decay 0.01) on loss_fn()."""
    opt = torch.optim.AdamW(model.parameters(), lr=eta)
    opt.zero_grad()
    loss_fn().backward()
    opt.step()


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("name, hp, reference", [
    ("GD", {}, lambda m, r, f: MSE.loss(m(r.inputs), r.targets)),
    ("GA", {}, lambda m, r, f: -MSE.loss(m(f.inputs), f.targets)),
    ("NGP", {"lambda_ga": 0.3}, lambda m, r, f: MSE.loss(m(r.inputs), r.targets) - 0.3 * MSE.loss(m(f.inputs), f.targets)),
    ("NGD", {"sigma": 0.0}, lambda m, r, f: MSE.loss(m(r.inputs), r.targets)),
    ("Ridge", {"lambda_reg": 0.2, "gamma_reg": 0.5},
     lambda m, r, f: MSE.loss(m(r.inputs), r.targets) + 0.2 * sum(p.pow(2).sum() for p in m.parameters())),
    ("L1Sparse", {"lambda_reg": 0.05},   # epoch 0 of T = 4: λ_0 = 2·λ_reg
     lambda m, r, f: MSE.loss(m(r.inputs), r.targets) + 0.1 * sum(p.abs().sum() for p in m.parameters())),
])
def test_first_step_is_one_adamw_step_on_the_objective(name, hp, reference, sine_data):
    retain, forget = batches(sine_data)
    model, expected = mlp(width=16), None
    expected = copy.deepcopy(model)
    adamw_step(expected, lambda: reference(expected, retain, forget), eta=1e-2)
    runner(name, model, MSE, eta=1e-2, **hp).step(0, retain, forget)
    torch.testing.assert_close(params(model), params(expected), rtol=1e-5, atol=1e-7)


def test_ridge_weight_decays_geometrically_per_step(sine_data):
    retain, forget = batches(sine_data)
    model = mlp(width=8)
    r = runner("Ridge", model, MSE, eta=1e-3, lambda_reg=0.8, gamma_reg=0.5)
    norm2 = sum(p.pow(2).sum() for p in model.parameters())
    data = MSE.loss(model(retain.inputs), retain.targets)
    for k in range(4):
        r.steps = k
        torch.testing.assert_close(r.objective(0, retain, forget), data + 0.8 * 0.5 ** k * norm2)


def test_l1_weight_decays_linearly_over_epochs(sine_data):
    retain, forget = batches(sine_data)
    model = mlp(width=8)
    r = runner("L1Sparse", model, MSE, epochs=10, eta=1e-3, lambda_reg=0.1)
    norm1 = sum(p.abs().sum() for p in model.parameters())
    data = MSE.loss(model(retain.inputs), retain.targets)
    for epoch in (0, 3, 9):
        torch.testing.assert_close(r.objective(epoch, retain, forget), data + (2 - 2 * epoch / 10) * 0.1 * norm1)


def test_ngd_adds_gaussian_noise_of_standard_deviation_sigma(sine_data):
    retain, forget = batches(sine_data)
    model = mlp(width=64)
    r = runner("NGD", model, MSE, eta=1e-3, sigma=0.7)
    r.optimizer.zero_grad()
    r.objective(0, retain, forget).backward()
    clean = torch.cat([p.grad.flatten().clone() for p in model.parameters()])
    r.edit_gradients()
    noise = torch.cat([p.grad.flatten() for p in model.parameters()]) - clean
    assert abs(noise.std().item() - 0.7) < 0.02 and abs(noise.mean().item()) < 0.02


def test_retrain_reinitializes_reproducibly(sine_data):
    retain, forget = batches(sine_data)
    a, b = mlp(width=8), mlp(width=8)
    b.load_state_dict(a.state_dict())
    before = params(a)
    runner("Retrain", a, MSE, eta=1e-3, seed=3).start(forget, None)
    runner("Retrain", b, MSE, eta=1e-3, seed=3).start(forget, None)
    assert not torch.allclose(params(a), before)
    torch.testing.assert_close(params(a), params(b))


def test_retrain_reinitializes_ensemble_members_independently():
    ensemble = mnog.Ensemble([mlp(width=8) for _ in range(3)])
    mnog.models.reinitialize(ensemble, seed=1)
    members = [params(ensemble.member(i)) for i in range(3)]
    assert not torch.allclose(members[0], members[1]) and not torch.allclose(members[1], members[2])


def test_scrub_alternates_between_retain_kl_and_forget_ascent(two_head_data):
    retain, forget = batches(two_head_data)
    model = TwoHeadCNN().eval()  # eval: the teacher and student agree exactly at θ = θ*
    r = runner("SCRUB", model, CE, epochs=6, eta=1e-3, lambda_reg=0.5, lambda_ga=0.2, t_gd=2)
    r.start(forget, None)
    # At θ = θ* the KL terms vanish: even epochs give J(B_r), odd ones before T - T_GD give 0.
    torch.testing.assert_close(r.objective(0, retain, forget), CE.loss(model(retain.inputs), retain.targets))
    assert r.objective(1, retain, forget).abs() < 1e-6
    # In the last T_GD = 2 epochs, odd epochs are retain steps too.
    torch.testing.assert_close(r.objective(5, retain, forget), r.objective(4, retain, forget))
    with torch.no_grad():
        model.heads[0].weight.add_(0.5)
    teacher = r.teacher
    expected = -0.2 * sum(F.kl_div(s.log_softmax(-1), t.softmax(-1), reduction="batchmean")
                          for s, t in zip(model(forget.inputs), teacher(forget.inputs)))
    torch.testing.assert_close(r.objective(3, retain, forget), expected)


def test_npo_loss_at_the_reference_model_is_2_log2_over_beta_per_head(two_head_data):
    retain, forget = batches(two_head_data)
    model = TwoHeadCNN().eval()
    r = runner("NPO", model, CE, eta=1e-3, lambda_reg=0.5)
    r.start(forget, None)
    torch.testing.assert_close(r.objective(0, retain, forget), torch.tensor(2 * (2 / 0.5) * math.log(2)))
    # Its gradient lowers the likelihood of the forget labels.
    before = CE.loss(model(forget.inputs), forget.targets)
    r.step(0, retain, forget)
    assert CE.loss(model(forget.inputs), forget.targets) > before


def test_salun_updates_only_salient_entries_and_relabels_to_other_classes(two_head_data):
    retain, forget = batches(two_head_data)
    model = TwoHeadCNN()
    r = runner("SalUn", model, CE, eta=1e-2, lambda_ga=1.0)
    r.start(forget, batch_size=3)
    mask = torch.cat([m.flatten() for m in r.masks])
    assert 0.45 < mask.float().mean() < 0.6                   # |g| ≥ median: about half
    before = params(model)
    for _ in range(3):
        r.step(0, retain, forget)
    changed = params(model) != before
    assert changed[mask].float().mean() > 0.5 and not changed[~mask].any()
    labels = forget.targets[0]
    relabeled = r._other_label(torch.zeros(len(labels), 4), labels)
    assert (relabeled != labels).all() and ((0 <= relabeled) & (relabeled < 4)).all()


def test_salun_mask_equals_the_median_rule(two_head_data):
    retain, forget = batches(two_head_data)
    model = TwoHeadCNN()
    reference = copy.deepcopy(model)
    CE.loss(reference(forget.inputs), forget.targets).backward()
    grads = torch.cat([p.grad.abs().flatten() for p in reference.parameters()])
    r = runner("SalUn", model, CE, eta=1e-3, lambda_ga=1.0)
    r.start(forget, batch_size=None)
    torch.testing.assert_close(torch.cat([m.flatten() for m in r.masks]), grads >= grads.median())


def test_minnorm_og_projects_on_schedule_with_decaying_strength(vector_data):
    retain, forget = batches(vector_data)
    model = mlp(width=16, inputs=5)
    theta_star = copy.deepcopy(model)
    r = runner("MinNorm-OG", model, MSE, epochs=10, eta=1e-12, lambda_reg=1.0, gamma_reg=0.0,
               t_gd=3, t_proj=2, n_pert=100)
    for epoch in range(10):
        r.step(epoch, retain, forget)
    assert r.projections == 4                       # epochs 0, 2, 4, 6 (< T − T_GD = 7)
    # s = 1 then 0: θ is P_G(θ*) (η ≈ 0 makes the descent steps negligible).
    projection.project_out(theta_star, retain.inputs, MSE, 1.0)
    torch.testing.assert_close(params(model), params(theta_star), rtol=1e-4, atol=1e-6)


def test_minnorm_og_descends_with_a_fresh_gradient_after_projecting(vector_data):
    retain, forget = batches(vector_data)
    model = mlp(width=16, inputs=5)
    expected = copy.deepcopy(model)
    runner("MinNorm-OG", model, MSE, eta=1e-2, lambda_reg=0.5, gamma_reg=0.9, t_gd=0, t_proj=1,
           n_pert=100).step(0, retain, forget)
    projection.project_out(expected, retain.inputs, MSE, 0.5)
    adamw_step(expected, lambda: MSE.loss(expected(retain.inputs), retain.targets), eta=1e-2)
    torch.testing.assert_close(params(model), params(expected), rtol=1e-5, atol=1e-7)

    swapped = copy.deepcopy(expected)
    runner("MinNorm-OG", swapped, MSE, eta=1e-2, lambda_reg=0.5, gamma_reg=0.9, t_gd=0, t_proj=1,
           n_pert=100, order="descent_first").step(0, retain, forget)
    assert not torch.allclose(params(swapped), params(model))


def test_class_balanced_subsample():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    batch = as_batch((torch.randn(12, 2), labels), None, "retain")
    index = perturbation_subsample(batch, 7, CE, torch.Generator().manual_seed(0))   # 7 // 3 = 2 per class
    assert sorted(labels[index].tolist()) == [0, 0, 1, 1, 2, 2]
    index = perturbation_subsample(batch, 12, CE, torch.Generator().manual_seed(0))  # 4 per class, class 1 has 3
    assert sorted(labels[index].tolist()) == [0] * 4 + [1] * 3 + [2] * 4
    assert len(set(index.tolist())) == len(index)


@pytest.mark.parametrize("name, hp", [
    ("SCRUB", dict(lambda_reg=0.1, lambda_ga=0.1, t_gd=1)),
    ("NPO", dict(lambda_reg=0.5)),
    ("SalUn", dict(lambda_ga=0.1)),
    ("MinNorm-OG", dict(lambda_reg=0.5, gamma_reg=0.8, t_gd=1, t_proj=1, n_pert=8)),
    ("MinNorm-OG", dict(lambda_reg=0.5, gamma_reg=0.8, t_gd=1, t_proj=1, n_pert=8, bn_mode="eval")),
])
def test_classifier_methods_unlearn_a_two_head_cnn(name, hp, two_head_data):
    retain, forget = two_head_data
    model = TwoHeadCNN()
    before = params(model)
    result = mnog.unlearn(model, name, forget, retain, "cross_entropy", epochs=3, batch_size=4, eta=1e-2, **hp)
    assert result.steps == 3 * 2
    after = params(model)
    assert torch.isfinite(after).all() and not torch.allclose(after, before)
