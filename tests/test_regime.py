"""The `cpu` profiles keep the paper's regime, and the tools that check it: the
grid thinning rule, train-set fit, step-by-step callbacks and MinNorm-OG's projection trace."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import mnog
from mnog import projection
from mnog.collapse import PROFILES as TABLE2
from mnog.erasure import PROFILES as ERASURE, SETTINGS, Setting
from mnog.methods import ProjectionStep, squared_norm
from mnog.metrics import fit_accuracy
from mnog.sweep import method_grid, thin_axis
from mnog.tasks import Task

PAPER_TRAIN = {"cifar10": 50_000, "tiny_imagenet": 100_000}


def forget_batches(images: int, p_color: float, batch: int) -> int:
    """Forget batches per Label Erasure epoch: p_color of the red and of the green copies."""
    return math.ceil(2 * int(p_color * images) / batch)


@pytest.mark.parametrize("figure", [f for f, s in SETTINGS["settings"].items() if s["dataset"] == "cifar10"])
def test_the_cpu_profile_keeps_the_papers_forget_batches_per_epoch(figure):
    paper, cpu = Setting(ERASURE["paper"], figure), Setting(ERASURE["cpu"], figure)
    images = ERASURE["cpu"].per_class * 10
    assert forget_batches(images, cpu.p_color, cpu.batch_size) == forget_batches(PAPER_TRAIN["cifar10"],
                                                                                  paper.p_color, paper.batch_size)
    assert cpu.epochs == paper.epochs and cpu.p_retain == paper.p_retain
    assert int(cpu.p_retain * images) >= 1                      # D'_r holds at least one image


def test_table2s_cpu_profile_keeps_the_papers_forget_batches_and_its_row():
    cpu, paper = TABLE2["cpu"], TABLE2["paper"]
    ours = math.ceil(10 * int(cpu.p_forget * cpu.per_class) / cpu.unlearn_batch)
    theirs = math.ceil(10 * int(paper.p_forget * 5000) / paper.batch_size)
    assert ours == theirs == 2
    assert set(cpu.rows) <= set(paper.rows) and cpu.trials >= 3 and cpu.grid_values >= 2


def test_thinning_keeps_etas_largest_and_both_ends_of_every_other_axis():
    assert thin_axis("eta", [1e-4, 1e-3, 1e-6, 1e-5], 2) == [1e-3, 1e-4]
    assert thin_axis("lambda_reg", [0.001, 0.01, 0.05, 0.1], 2) == [0.001, 0.1]
    assert thin_axis("sigma", [0.1, 1.0, 10.0], 3) == [0.1, 1.0, 10.0]
    assert thin_axis("gamma_reg", [0.2, 0.4, 0.8], 1) == [0.2]
    assert thin_axis("gamma_reg", [0.2, 0.4, 0.8], 0) == [0.2, 0.4, 0.8]
    grid = method_grid("Ridge", {"eta": [1e-3, 1e-4, 1e-5], "lambda_reg": [1e-3, 1e-2, 1e-1],
                                 "gamma_reg": [0.2, 0.4, 0.8]}, 2)
    assert {(c["eta"], c["lambda_reg"], c["gamma_reg"]) for c in grid} == {
        (e, r, g) for e in (1e-3, 1e-4) for r in (1e-3, 1e-1) for g in (0.2, 0.8)}


class Fixed(nn.Module):
    """Two heads whose predictions are given: head 0 predicts `first`, head 1 `second`."""

    def __init__(self, first, second):
        super().__init__()
        self.first, self.second = first, second
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        index = x[:, 0].long()
        return (nn.functional.one_hot(self.first[index], 4).float() + self.weight,
                nn.functional.one_hot(self.second[index], 3).float())


def test_fit_accuracy_counts_each_head_and_both():
    inputs = torch.arange(6.0).unsqueeze(1)
    classes, colors = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([0, 0, 1, 1, 2, 2])
    model = Fixed(torch.tensor([0, 1, 2, 3, 1, 1]), torch.tensor([0, 0, 1, 2, 2, 2]))
    cls, col, both = fit_accuracy(model, inputs, (classes, colors), batch_size=4)
    assert (cls, col, both) == pytest.approx((5 / 6, 5 / 6, 4 / 6))
    single = nn.Linear(1, 2)
    with torch.no_grad():
        single.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        single.bias.zero_()
    assert fit_accuracy(single, torch.tensor([[-1.0], [2.0], [3.0]]), torch.tensor([0, 1, 0])) == pytest.approx((2 / 3,))
    assert model.training                                        # the mode is restored


def regression(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    x = torch.linspace(-2, 2, 12).unsqueeze(1)
    return model, (x[:8], torch.sin(x[:8])), (x[8:], torch.zeros(4, 1))


def test_on_step_sees_every_step_and_the_model_as_it_unlearns():
    model, retain, forget = regression()
    seen = []
    result = mnog.unlearn(model, "GD", forget=forget, retain=retain, loss="mse", epochs=3, batch_size=2,
                          eta=1e-2, on_step=lambda step, epoch: seen.append((step, epoch, model[0].weight.sum().item())))
    assert [s for s, _, _ in seen] == list(range(1, result.steps + 1)) and result.steps == 3 * 2
    assert [e for _, e, _ in seen] == [0, 0, 1, 1, 2, 2]
    assert len({w for _, _, w in seen}) == len(seen)             # every step moved θ


def test_the_projection_trace_measures_the_part_of_theta_outside_the_span():
    model, retain, _ = regression(1)
    task = Task("mse")
    inputs = retain[0][:3]
    span, _, _ = projection.span_projection(model, inputs, task)
    theta = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    inside = torch.cat([span[n].flatten() for n, _ in model.named_parameters()]).double()
    expected = float((theta - inside).norm() / theta.norm())
    before = squared_norm(model)
    rank = projection.project_out(model, inputs, task, 0.3)
    step = ProjectionStep(0, 3, rank, 0.3, before, squared_norm(model))
    assert float(step.orthogonal_share) == pytest.approx(expected, rel=1e-4)
    assert 0 < expected < 1 and int(rank) == 3


def test_minnorm_og_reports_one_trace_entry_per_projection():
    model, retain, forget = regression(2)
    result = mnog.unlearn(model, "MinNorm-OG", forget=forget, retain=retain, loss="mse", epochs=4, eta=1e-3,
                          lambda_reg=0.5, gamma_reg=0.5, t_proj=1, n_pert=4, t_gd=1)
    assert [p.step for p in result.projections] == [0, 1, 2]     # epochs 0-2 project, the last is GD
    assert [p.strength for p in result.projections] == pytest.approx([0.5, 0.25, 0.125])
    assert all(p.rows == 4 and int(p.rank) == 4 and 0 < float(p.orthogonal_share) <= 1 for p in result.projections)
    assert mnog.unlearn(regression()[0], "GD", forget=forget, retain=retain, loss="mse", epochs=1,
                        eta=1e-3).projections == ()
