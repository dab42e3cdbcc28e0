"""The authors' image protocol (docs/authors-code.md) and the options for the other readings, and the
projection defects found in review."""
import copy
import importlib
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

import mnog
from mnog import projection
from mnog.batches import as_batch
from mnog.colors import CIFAR_NORM, PALETTE, ColoredImages
from mnog.errors import NonFiniteError
from mnog.methods import METHODS
from mnog.models import ColorResNet, mlp, reinitialize
from mnog.experiment import Experiment, Trial
from mnog.sweep import Job, RELEASED_GRIDS, search_grid
from mnog.tasks import Task
from mnog.training import Phase, SGDConfig, crop_boxes, label_erasure_recipe, random_resized_crop_flip, \
    train_classifier

from conftest import TwoHeadCNN, Wrapped

MSE, CE = Task("mse"), Task("cross_entropy")


def runner(name, model, task, epochs=4, seed=0, bn_stats="loss", adamw="fused", **hp):
    cls = METHODS[name]
    return cls(cls.build_config(hp), model, task, epochs, torch.Generator().manual_seed(seed), bn_stats=bn_stats,
               adamw=adamw)


def batches(data):
    retain, forget = data
    return as_batch(retain, None, "retain"), as_batch(forget, None, "forget")


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def least_squares_projection(model, inputs, task):
    """P_G(θ) in float64 by least squares on G's rows (an independent reference)."""
    g = projection.output_gradients(model, inputs, task).double()                   # (k, d)
    theta = params(model).double()
    return g.T @ torch.linalg.lstsq(g.T, theta.unsqueeze(1)).solution.squeeze(1)


# -- D'_r per trial --------------------------------------------------------------------

def test_every_method_and_configuration_of_a_trial_sees_the_same_retain_subset(vector_data):
    jobs = [Job.of("GD", 2, {"eta": 1e-3}), Job.of("GD", 2, {"eta": 1e-4}),
            Job.of("MinNorm-OG", 2, dict(eta=1e-3, lambda_reg=0.5, gamma_reg=0.8, t_gd=0, t_proj=1, n_pert=4)),
            Job.of("MinNorm-OG", 3, dict(eta=1e-4, lambda_reg=0.1, gamma_reg=0.4, t_gd=1, t_proj=1, n_pert=4))]
    model = mlp(width=8, inputs=5)
    retain, forget = vector_data

    class Regression(Experiment):                                   # the core's unlearned copy, seeding and D'_r
        task = MSE

        def setting(self):
            return {"experiment": "test"}

        def protocol(self):
            return {"batch_size": 3, "p_retain": 0.5}

    subsets = {trial: [Regression().unlearned(job, Trial(trial, model, retain, forget))[1].retain_indices
                       for job in jobs] for trial in (1, 2)}
    for trial, indices in subsets.items():
        assert len(indices[0]) == 6 and all(torch.equal(i, indices[0]) for i in indices)
    assert not torch.equal(subsets[1][0], subsets[2][0])


def test_the_retain_seed_alone_draws_the_retain_subset(vector_data):
    retain, forget = vector_data
    runs = [mnog.unlearn(mlp(width=8, inputs=5), "GD", forget, retain, "mse", epochs=1, batch_size=3, p_retain=0.5,
                         seed=seed, retain_seed=7, eta=1e-3) for seed in (1, 2)]
    assert torch.equal(runs[0].retain_indices, runs[1].retain_indices)
    full = mnog.unlearn(mlp(width=8, inputs=5), "GD", forget, retain, "mse", epochs=1, eta=1e-3)
    assert full.retain_indices is None


# -- BatchNorm sees both batches ---------------------------------------------------------

def running_mean_after(model, *batches):
    """BatchNorm's running mean after train-mode forwards of `batches` in order."""
    reference = copy.deepcopy(model).train()
    with torch.no_grad():
        for batch in batches:
            reference(batch.inputs)
    return reference.trunk[1].running_mean


@pytest.fixture
def shifted_forget(two_head_data):
    retain, (x_f, y_f) = two_head_data
    return batches((retain, (x_f + 5.0, y_f)))                       # forget images far from the retain ones


@pytest.mark.parametrize("name, hp", [("GD", {}), ("GA", {}), ("NGP", {"lambda_ga": 0.1})])
def test_bn_stats_both_moves_the_running_mean_toward_the_forget_batch(name, hp, shifted_forget):
    retain, forget = shifted_forget
    model = TwoHeadCNN().train()
    both = running_mean_after(model, retain, forget)                 # the authors' loop: retain, then forget
    alone = running_mean_after(model, retain if name != "GA" else forget)
    for bn_stats, expected in (("both", both), ("loss", alone if name != "NGP" else both)):
        net = copy.deepcopy(model)
        runner(name, net, CE, eta=1e-3, bn_stats=bn_stats, **hp).step(0, retain, forget)
        torch.testing.assert_close(net.trunk[1].running_mean, expected)
    if name == "GD":                                                 # toward the forget batch's statistics
        forget_only = running_mean_after(model, forget)
        assert (both - forget_only).norm() < 0.5 * (alone - forget_only).norm()


def test_minnorm_og_forwards_retain_forget_and_subsample_in_the_authors_order(shifted_forget):
    retain, forget = shifted_forget
    model = TwoHeadCNN().train()
    hp = dict(eta=1e-3, lambda_reg=0.5, gamma_reg=0.8, t_gd=0, t_proj=1, n_pert=100)
    net = copy.deepcopy(model)
    runner("MinNorm-OG", net, CE, bn_stats="both", order="authors", **hp).step(0, retain, forget)
    # retain (the loss), forget (no gradient), then the subsample (every retain sample here), all at θ*.
    torch.testing.assert_close(net.trunk[1].running_mean, running_mean_after(model, retain, forget, retain))


def test_models_without_batchnorm_skip_the_extra_forward(vector_data):
    r = runner("GD", mlp(width=8, inputs=5), MSE, eta=1e-3, bn_stats="both")
    assert not r.forward_both
    with pytest.raises(ValueError, match="bn_stats"):
        runner("GD", mlp(width=8, inputs=5), MSE, eta=1e-3, bn_stats="all")


# -- models and training ---------------------------------------------

def test_retrain_starts_colorresnet50_from_random_weights(monkeypatch):
    constant = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v
                for k, v in torchvision.models.resnet50().state_dict().items()}
    monkeypatch.setattr(mnog.models, "imagenet_resnet50_weights", lambda: constant)
    model = ColorResNet(50, heads=(4, 3), imagenet=True)
    assert (model.trunk.conv1.weight == 0.5).all()
    reinitialize(model, seed=0)
    assert model.config["imagenet"] and (model.trunk.conv1.weight != 0.5).any()
    assert model.trunk.conv1.weight.std() > 0.01                    # torchvision's random (Kaiming) init


def test_tiny_imagenet_ground_truth_trains_on_both_heads_from_epoch_0():
    data = ColoredImages(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), colors=torch.zeros(4, dtype=torch.long),
                         labels=(torch.zeros(4, dtype=torch.long),) * 2, palette=PALETTE, norm=CIFAR_NORM)
    _, initial = label_erasure_recipe("tiny_imagenet", data)
    _, gt = label_erasure_recipe("tiny_imagenet", data, ground_truth=True)
    assert [(p.epochs, p.head_weights, p.augment) for p in initial] == [(10, (1.0, 0.0), True), (90, None, True)]
    assert [(p.epochs, p.head_weights, p.augment) for p in gt] == [(100, None, True)]
    _, cifar_gt = label_erasure_recipe("cifar10", data, ground_truth=True)
    assert [(p.epochs, p.head_weights) for p in cifar_gt] == [(100, None)]


def test_training_precision_float32_or_bfloat16():
    labels = torch.arange(32) % 4
    data = ColoredImages(torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator()
                                       .manual_seed(0)), colors=labels, labels=labels, palette=PALETTE, norm=CIFAR_NORM)
    trained = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        net = ColorResNet(18, heads=(4,), width=4)
        train_classifier(net, [Phase(data, 1)], SGDConfig(lr=0.05, batch_size=8), seed=0, precision=precision)
        trained[precision] = params(net)
    assert torch.isfinite(trained["bfloat16"]).all()
    assert not torch.equal(trained["float32"], trained["bfloat16"])            # bf16 autocast ran on the CPU
    with pytest.raises(ValueError, match="precision"):
        train_classifier(net, [Phase(data, 1)], SGDConfig(lr=0.05, batch_size=8), seed=0, precision="fp16")


def test_crop_boxes_are_drawn_as_torchvisions_random_resized_crop():
    n = 20_000
    top, left, h, w = crop_boxes(n, 64, 64, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    reference = torch.tensor([torchvision.transforms.RandomResizedCrop.get_params(torch.zeros(1, 64, 64),
                                                                                  (0.7, 1.0), (3 / 4, 4 / 3))
                              for _ in range(n)], dtype=torch.float32)          # (i, j, h, w)
    ours = torch.stack([top, left, h, w], 1)
    assert ((ours >= 0).all() and (top + h <= 64).all() and (left + w <= 64).all())
    area, ref_area = (h * w / 64 ** 2), reference[:, 2] * reference[:, 3] / 64 ** 2
    assert abs(area.mean() - ref_area.mean()) < 0.003 and abs(area.std() - ref_area.std()) < 0.003
    full, ref_full = ((h == 64) & (w == 64)).float().mean(), ((reference[:, 2:] == 64).all(1)).float().mean()
    assert abs(full - ref_full) < 0.01                                          # the fallback and exact fits
    for column in range(4):                                                      # offsets, heights, widths
        assert abs(ours[:, column].mean() - reference[:, column].mean()) < 0.15


def test_the_crop_is_torchvisions_resized_crop_of_that_box():
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    draws = torch.Generator().manual_seed(3)                         # the same draws as the call below
    top, left, h, w = crop_boxes(6, 16, 16, draws)
    flips = torch.rand(6, generator=draws)
    out = random_resized_crop_flip(images, torch.Generator().manual_seed(3))
    for k in range(6):
        expected = torchvision.transforms.functional.resized_crop(images[k], int(top[k]), int(left[k]), int(h[k]),
                                                                  int(w[k]), [16, 16], antialias=False)
        expected = expected.flip(-1) if flips[k] < 0.5 else expected
        # Inside the box both interpolate the same pixels (at the box's rim ours may reach one pixel beyond it).
        torch.testing.assert_close(out[k][:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5, rtol=0)


# -- grids -------------------------------------------------------------------------------

def test_released_grids_replace_the_papers_where_the_authors_released_one():
    paper = {"eta": [5e-4, 1e-4, 1e-5, 1e-6], "t_gd": [2, 3]}
    grid, source = search_grid("label_erasure", "7", paper, "released")
    assert grid["eta"] == [1e-4, 1e-5, 1e-6, 1e-7] and grid["t_gd"] == [0, 1, 2] and "Tiny" in source
    assert search_grid("label_erasure", "7", paper, "paper") == (paper, "the paper's table")
    assert search_grid("label_erasure", "8", paper, "released")[0] is paper      # no released config for Figure 8
    assert RELEASED_GRIDS["table2"]["0.001:5"]["t_gd"] == [0, 1, 2]
    with pytest.raises(ValueError, match="grids"):
        search_grid("label_erasure", "7", paper, "authors")


# -- MinNorm-OG: the authors' stale gradient; float64 G --------------------------------------------

def test_minnorm_og_authors_order_backpropagates_the_graph_recorded_before_the_projection(vector_data):
    retain, forget = batches(vector_data)
    model = mlp(width=16, inputs=5)
    hp = dict(eta=1e-2, lambda_reg=0.5, gamma_reg=0.9, t_gd=0, t_proj=1, n_pert=100)
    expected, fresh = copy.deepcopy(model), copy.deepcopy(model)
    runner("MinNorm-OG", model, MSE, order="authors", **hp).step(0, retain, forget)
    runner("MinNorm-OG", fresh, MSE, **hp).step(0, retain, forget)

    # The authors' loop: the loss's graph at θ*, θ overwritten through .data, then its backward.
    optimizer = torch.optim.AdamW(expected.parameters(), lr=1e-2)
    loss = MSE.loss(expected(retain.inputs), retain.targets)
    theta = params(expected).double()
    projected = theta + 0.5 * (least_squares_projection(expected, retain.inputs, MSE) - theta)
    for p, value in zip(expected.parameters(), projected.split([p.numel() for p in expected.parameters()])):
        p.data.copy_(value.view_as(p))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    torch.testing.assert_close(params(model), params(expected), rtol=1e-4, atol=1e-6)
    assert (params(model) - params(fresh)).abs().max() > 1e-4                      # not the fresh-gradient step


def test_minnorm_og_authors_order_runs_on_an_ensemble(vector_data):
    (x_r, y_r), (x_f, y_f) = vector_data
    members = [mlp(width=8, inputs=5) for _ in range(2)]
    ensemble = mnog.Ensemble(members)
    stack = lambda t: torch.stack([t, t])  # noqa: E731
    mnog.unlearn(ensemble, "MinNorm-OG", (stack(x_f), stack(y_f)), (stack(x_r), stack(y_r)), "mse", epochs=3,
                 eta=1e-2, lambda_reg=0.5, gamma_reg=0.9, t_gd=1, t_proj=1, n_pert=50, order="authors")
    alone = copy.deepcopy(members[1])
    mnog.unlearn(alone, "MinNorm-OG", (x_f, y_f), (x_r, y_r), "mse", epochs=3, eta=1e-2, lambda_reg=0.5,
                 gamma_reg=0.9, t_gd=1, t_proj=1, n_pert=50, order="authors")
    torch.testing.assert_close(params(ensemble.member(1)), params(alone), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("wrap", [False, True])
def test_float64_output_gradients_equal_a_float64_model(wrap, vector_data):
    (x, _), _ = vector_data
    model = mlp(width=16, inputs=5)
    model = Wrapped(model) if wrap else model
    ours, rank, _ = projection.span_projection(model, x, MSE, precision="float64")
    reference, _, _ = projection.span_projection(copy.deepcopy(model).double(), x.double(), MSE)
    assert int(rank) == 12
    for name in reference:
        assert ours[name].dtype == torch.float64
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-9, atol=1e-12)
    single, _, _ = projection.span_projection(model, x, MSE)
    assert single[name].dtype == torch.float32


# -- projection defects ----------------------------------------------------------------

def test_qr_solver_keeps_only_the_independent_rows_of_g():
    x6 = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    x = torch.cat([x6, x6[:3]])                                     # 9 rows of G, 3 of them repeated
    model = Wrapped(mlp(width=16, inputs=5))
    expected = least_squares_projection(model, x6, MSE)
    # G in float64: in float32 a repeated row's gradient may differ from its original by
    # rounding (~1e-7, by the row's place in the CPU's vector kernels), above √RTOL ≈ 3e-8,
    # so the count of independent rows would depend on the machine.
    for solver in ("qr", "gram"):
        targets, rank, finite = projection.span_projection(model, x, MSE, solver=solver, precision="float64")
        ours = torch.cat([targets[n].flatten() for n, _ in model.named_parameters()]).double()
        assert int(rank) == 6 and bool(finite), solver
        assert (ours - expected).norm() / expected.norm() < 1e-4, solver


def test_an_explicit_qr_solver_wins_over_the_linear_path(vector_data):
    (x, _), _ = vector_data
    model = mlp(width=16, inputs=5)                                  # a linear chain: "auto" would pick "linear"
    qr, _, _ = projection.span_projection(model, x, MSE, solver="qr")
    linear, _, _ = projection.span_projection(model, x, MSE)
    for name in linear:
        torch.testing.assert_close(qr[name], linear[name], rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="materialized"):
        projection.span_projection(model, x, MSE, solver="qr", path="linear")


@pytest.mark.parametrize("solver", ["gram", "qr"])
def test_a_nan_in_theta_stops_the_projection_before_it_spreads(solver, two_head_data):
    (x, _), _ = two_head_data
    model = TwoHeadCNN().eval()
    with torch.no_grad():
        model.heads[0].bias[0] = float("nan")                        # G stays finite: the bias enters Gᵀθ only
    before = params(model)
    with pytest.raises(NonFiniteError, match="θ holds NaN"):
        projection.project_out(model, x[:6], CE, 0.5, solver=solver)
    after = params(model)
    assert torch.equal(after.isnan(), before.isnan()) and torch.equal(after[~after.isnan()], before[~before.isnan()])


def test_a_named_sequential_is_a_linear_chain(vector_data):
    (x, y), _ = vector_data
    plain = mlp(width=16, inputs=5)
    named = nn.Sequential(OrderedDict(fc1=plain[0], act1=plain[1], fc2=plain[2], act2=plain[3], out=plain[4]))
    ours, _, _ = projection.span_projection(named, x, MSE)
    reference, _, _ = projection.span_projection(plain, x, MSE)
    for name, ref in zip(ours, reference.values()):
        torch.testing.assert_close(ours[name], ref)
    ensemble = mnog.Ensemble([named, copy.deepcopy(named)])
    torch.testing.assert_close(ensemble(ensemble.broadcast(x))[0], named(x))
    mnog.unlearn(ensemble, "MinNorm-OG", (ensemble.broadcast(x[:3]), ensemble.broadcast(y[:3])),
                 (ensemble.broadcast(x), ensemble.broadcast(y)), "mse", epochs=2, eta=1e-3, lambda_reg=0.5,
                 gamma_reg=0.9, t_gd=0, t_proj=1, n_pert=50)


# -- SalUn -----------------------------------------------------------------------------

def test_salun_batch_sum_mask_sums_batch_mean_losses_over_shuffled_batches(two_head_data):
    retain, forget = batches(two_head_data)                          # 8 forget samples in batches of 3: 3, 3, 2
    model = TwoHeadCNN()
    reference = copy.deepcopy(model)
    order = torch.rand(8, generator=torch.Generator().manual_seed(0)).argsort()   # the runner's first draw
    for index in order.split(3):
        CE.loss(reference(forget.inputs[index]), tuple(t[index] for t in forget.targets)).backward()
    grads = torch.cat([p.grad.abs().flatten() for p in reference.parameters()])
    r = runner("SalUn", model, CE, eta=1e-3, lambda_ga=1.0, mask_loss="batch_sum")
    r.start(forget, batch_size=3)
    torch.testing.assert_close(torch.cat([m.flatten() for m in r.masks]), grads >= grads.median())
    # With equal batches and no batch statistics (eval mode) the two rules agree: the median is scale-free.
    masks = []
    for mask_loss in ("mean", "batch_sum"):
        r = runner("SalUn", copy.deepcopy(reference).eval(), CE, eta=1e-3, lambda_ga=1.0, mask_loss=mask_loss)
        r.start(forget, batch_size=4)
        masks.append(torch.cat([m.flatten() for m in r.masks]))
    assert (masks[0] == masks[1]).float().mean() > 0.999


@pytest.mark.parametrize("unmasked", ["fixed", "decay"])
def test_salun_unmasked_entries_stay_or_decay(unmasked, two_head_data):
    retain, forget = batches(two_head_data)
    model = TwoHeadCNN()
    r = runner("SalUn", model, CE, eta=1e-2, lambda_ga=1.0, unmasked=unmasked)
    r.start(forget, batch_size=None)
    mask = torch.cat([m.flatten() for m in r.masks])
    before = params(model)
    r.step(0, retain, forget)
    after = params(model)
    expected = before if unmasked == "fixed" else before * (1 - 1e-2 * 0.01)        # AdamW's weight decay
    torch.testing.assert_close(after[~mask], expected[~mask])
    assert (after[mask] != before[mask]).float().mean() > 0.5


# -- ℓ1-Sparse's schedule, per-trial seeding, AdamW's kernel -------------------------------------

@pytest.mark.parametrize("schedule, expected", [("one_step_late", [1, 2, 2, 2, 2, 1, 1, 1]),
                                                ("per_epoch", [2, 2, 2, 2, 1, 1, 1, 1])])
def test_l1_sparse_weights_over_eight_steps(schedule, expected, two_head_data, monkeypatch):
    retain, forget = two_head_data                                   # 8 forget samples: 4 batches of 2 per epoch
    weights, weight = [], METHODS["L1Sparse"].weight
    monkeypatch.setattr(METHODS["L1Sparse"], "weight", lambda self, epoch: weights.append(weight(self, epoch))
                        or weights[-1])
    mnog.unlearn(TwoHeadCNN(), "L1Sparse", forget, retain, CE, epochs=2, batch_size=2, eta=1e-3, lambda_reg=0.05,
                 schedule=schedule)
    assert weights == [w * 0.05 for w in expected]


def test_l1_sparse_objective_adds_the_scheduled_weight_times_the_l1_norm(two_head_data):
    retain, forget = batches(two_head_data)
    model = TwoHeadCNN().eval()                                      # no batch statistics: the same data loss twice
    r = runner("L1Sparse", model, CE, epochs=2, eta=1e-3, lambda_reg=0.05, schedule="one_step_late")
    r.previous_epoch = 0
    with torch.no_grad():
        penalty = r.objective(1, retain, forget) - r.data_loss(retain)
    torch.testing.assert_close(penalty, 0.1 * params(model).abs().sum())


class Seeded(Experiment):
    """The core's unlearned copy with a config's seeding, recording the batches it drew."""
    task = CE

    def __init__(self, seeding):
        self.cfg = SimpleNamespace(seeding=seeding)

    def setting(self):
        return {"experiment": "test"}

    def protocol(self):
        return {"batch_size": 2, "p_retain": 0.5, "record_batches": True}


@pytest.mark.parametrize("seeding", ["trial", "job"])
def test_per_trial_seeding_gives_every_configuration_of_a_method_the_same_batches(seeding, two_head_data):
    retain, forget = two_head_data
    model = TwoHeadCNN()
    jobs = [Job.of("NGD", 2, {"eta": 1e-3, "sigma": 0.1}), Job.of("NGD", 2, {"eta": 1e-4, "sigma": 10.0})]

    def drawn(job, trial):
        batches = Seeded(seeding).unlearned(job, Trial(trial, model, retain, forget))[1].batches
        return torch.cat([torch.cat([r, f]) for _, r, f in batches])

    same = torch.equal(drawn(jobs[0], 1), drawn(jobs[1], 1))
    assert same == (seeding == "trial")
    assert not torch.equal(drawn(jobs[0], 1), drawn(jobs[0], 2))     # a new trial, new batches


@pytest.mark.parametrize("adamw, kernel", [("forloop", "_single_tensor_adam"), ("default", "_single_tensor_adam"),
                                           ("fused", "_fused_adam"), ("foreach", "_multi_tensor_adam")])
def test_the_chosen_adamw_kernel_runs(adamw, kernel, two_head_data, monkeypatch):
    adam = importlib.import_module("torch.optim.adam")               # AdamW's step calls adam.adam's kernels
    calls = []
    for name in ("_single_tensor_adam", "_multi_tensor_adam", "_fused_adam"):
        original = getattr(adam, name)
        monkeypatch.setattr(adam, name, lambda *a, _name=name, _f=original, **k: calls.append(_name) or _f(*a, **k))
    retain, forget = two_head_data
    mnog.unlearn(TwoHeadCNN(), "GD", forget, retain, CE, epochs=1, batch_size=4, eta=1e-3, adamw=adamw)
    assert calls == [kernel] * 2                                     # the CPU's default: the for-loop kernel
    with pytest.raises(ValueError, match="adamw"):
        mnog.unlearn(TwoHeadCNN(), "GD", forget, retain, CE, epochs=1, eta=1e-3, adamw="fast")


def test_the_adamw_kernels_and_npo_forms_compute_the_same_up_to_rounding(two_head_data):
    retain, forget = batches(two_head_data)
    model = TwoHeadCNN()
    ends = []
    for adamw in ("fused", "forloop"):
        net = copy.deepcopy(model)
        runner("GD", net, CE, eta=1e-3, adamw=adamw).step(0, retain, forget)
        ends.append(params(net))
    torch.testing.assert_close(ends[0], ends[1], rtol=0, atol=1e-6)
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        shifted.heads[0].bias.add_(1.0)                              # π_θ ≠ π_θ*: a ratio away from 1
    losses = []
    for form in ("softplus", "ratio"):
        r = runner("NPO", model, CE, eta=1e-3, lambda_reg=0.5, form=form)
        r.start(forget, None)
        r.model = shifted
        losses.append(r.objective(0, retain, forget))
    torch.testing.assert_close(losses[0], losses[1])


def test_records_of_different_options_get_different_keys():
    from dataclasses import replace

    from mnog.erasure import PROFILES, LabelErasure
    from mnog.sweep import method_grid, variant
    cpu, paper = PROFILES["cpu"], PROFILES["paper"]
    assert (paper.l1_schedule, paper.npo_form, paper.seeding, paper.adamw) == ("one_step_late", "ratio", "trial",
                                                                               "default")
    assert (cpu.l1_schedule, cpu.npo_form, cpu.seeding, cpu.adamw) == ("per_epoch", "softplus", "job", "fused")
    options = [cpu, replace(cpu, l1_schedule="one_step_late"), replace(cpu, seeding="trial"),
               replace(cpu, adamw="default"), replace(cpu, adamw="forloop")]
    keys = {Job.of("L1Sparse", 2, config).key(LabelErasure(cfg, "6").setting(), 1) for cfg in options
            for config in method_grid("L1Sparse", {"eta": [1e-3], "lambda_reg": [0.1]}, options=cfg.method_options())}
    assert len(keys) == len(options)
    # The cpu profile's records keep the keys they had before these options existed.
    assert not {"seeding", "adamw"} & set(LabelErasure(cpu, "6").setting())
    assert cpu.method_options()["L1Sparse"] == cpu.method_options()["NPO"] == {}
    assert paper.method_options()["NPO"] == {"form": "ratio"}
    assert [variant(cfg, cpu) for cfg in options[1:3]] == ["+l1_schedule=one_step_late", "+seeding=trial"]
