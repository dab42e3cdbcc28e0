"""The layer-wise per-sample Gram path of MinNorm-OG's projection (mnog.projection,
path="layerwise") against the materialized torch.func path and a float64 reference."""
import copy

import pytest
import torch
from torch import nn

import mnog
from mnog import projection
from mnog.models import ColorResNet, mlp
from mnog.tasks import Task

from conftest import TwoHeadCNN, Wrapped

MSE, CE = Task("mse"), Task("cross_entropy")


class ResidualCNN(nn.Module):
    """Conv-BN-ReLU(inplace) and an in-place residual sum (`out += x`), as in ResNet's blocks:
    the layer outputs are modified in place after the hooks see them."""

    def __init__(self, batchnorm=True, classes=5):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=not batchnorm), norm(6), nn.ReLU(inplace=True))
        self.conv1 = nn.Conv2d(6, 6, 3, padding=2, dilation=2, bias=False)
        self.bn1 = norm(6)
        self.relu = nn.ReLU(inplace=True)
        self.down = nn.Conv2d(6, 4, 1, stride=2)
        self.fc = nn.Linear(4 * 4 * 4, classes)

    def forward(self, x):
        x = self.stem(x)
        out = self.bn1(self.conv1(x))
        out += x
        out = self.relu(out)
        return self.fc(self.down(out).flatten(1))


class TokenMixer(nn.Module):
    """A Linear on (N, T, features) inputs (T positions per sample), called twice."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(4, 4)
        self.out = nn.Linear(12, 1)

    def forward(self, x):                                              # (N, 12) -> (N, 1)
        tokens = x.view(-1, 3, 4)
        return self.out(torch.tanh(self.mix(torch.tanh(self.mix(tokens)))).flatten(1))


class OutsideUse(nn.Module):
    """Uses its layer's weight outside the layer's forward: the hooks cannot see that use."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 5)
        self.head = nn.Linear(5, 1)

    def forward(self, x):
        return self.head(self.fc(x) + x @ self.fc.weight.T)


class ModifiedInput(nn.Module):
    """Modifies a layer's input in place after the layer ran. Training's backward pass would
    fail (the weight gradient needs that input); the layerwise path's backward (signals only,
    weights detached) would not, so it checks the inputs' versions itself."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(5, 6), nn.Linear(6, 1), nn.Linear(6, 1)

    def forward(self, x):
        h = self.fc1(x) * 2
        out = self.fc2(h)
        h += 1
        return out + self.fc3(h)


def with_running_statistics(model, x):
    """Non-trivial running statistics (a few train-mode forwards), then eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x + torch.randn_like(x))
    return model.eval()


def flat(targets):
    return torch.cat([t.flatten() for t in targets.values()])


def spans(model, x, task, **kw):
    """P_G(θ), rank and finiteness by the layerwise path, the materialized path (both float32)
    and the materialized path in float64 (the reference)."""
    got = {path: projection.span_projection(model, x, task, path=path, **kw) for path in ("layerwise", "materialized")}
    got["float64"] = projection.span_projection(model, x, task, path="materialized", precision="float64", **kw)
    return got


def relative(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def check_equal(got, rank):
    layerwise, materialized, reference = got["layerwise"], got["materialized"], got["float64"]
    assert int(layerwise[1]) == int(materialized[1]) == int(reference[1]) == rank
    assert bool(layerwise[2]) and bool(materialized[2])
    assert layerwise[0].keys() == materialized[0].keys()
    for name, target in layerwise[0].items():
        scale = float(materialized[0][name].abs().max())
        torch.testing.assert_close(target, materialized[0][name], rtol=1e-4, atol=1e-5 * scale + 1e-12)
        assert target.dtype == materialized[0][name].dtype and target.shape == materialized[0][name].shape
    # As close to the float64 projection as the materialized path itself.
    to_reference = relative(flat(layerwise[0]), flat(reference[0]))
    assert relative(flat(layerwise[0]), flat(materialized[0])) < 2e-5
    assert to_reference < 2e-5 and to_reference < 10 * relative(flat(materialized[0]), flat(reference[0])) + 1e-6


@pytest.fixture
def images():
    return torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("strategy", ["auto", "rows", "ghost", "small pieces"])
def test_cnn_without_batchnorm(strategy, images, monkeypatch):
    # Every layer by both Gram strategies, and in pieces of one sample / one channel.
    if strategy in ("rows", "ghost"):
        monkeypatch.setattr(projection, "_prefer_ghost", lambda layer, k: strategy == "ghost")
    if strategy == "small pieces":
        monkeypatch.setattr(projection, "LAYER_BUDGET", 600)
    model = ResidualCNN(batchnorm=False)
    check_equal(spans(model, images, CE), rank=10)


@pytest.mark.parametrize("strategy", ["auto", "ghost"])
def test_cnn_with_batchnorm_in_eval_mode(strategy, images, monkeypatch):
    if strategy == "ghost":
        monkeypatch.setattr(projection, "_prefer_ghost", lambda layer, k: True)
    model = with_running_statistics(ResidualCNN(), images)
    check_equal(spans(model, images, CE), rank=10)


@pytest.mark.parametrize("mode", ["eval model", "bn_mode eval"])
def test_two_head_cnn(mode, two_head_data):
    (x_r, _), _ = two_head_data
    model = with_running_statistics(TwoHeadCNN(), x_r)
    if mode == "bn_mode eval":
        model.train()                      # bn_mode="eval" evaluates G in eval mode, then restores train mode
    got = spans(model, x_r[:12], CE, bn_mode="eval" if mode == "bn_mode eval" else "batch")
    check_equal(got, rank=24)              # rows: 2 heads × 12 samples, head-major
    assert model.training == (mode == "bn_mode eval")


def test_resnet_with_two_heads(images):
    model = with_running_statistics(ColorResNet(18, heads=(4, 3), width=4), images[:6])
    check_equal(spans(model, images[:6], CE), rank=12)


def test_regression_models(vector_data):
    (x_r, _), _ = vector_data
    check_equal(spans(Wrapped(mlp(width=24, inputs=5)), x_r, MSE), rank=len(x_r))
    # A Linear on (N, T, features) and called twice: each sample's gradient sums both calls.
    tokens = torch.randn(9, 12, generator=torch.Generator().manual_seed(4))
    check_equal(spans(TokenMixer(), tokens, MSE), rank=9)


def test_frozen_parameters_and_a_linear_chain(vector_data):
    (x_r, _), _ = vector_data
    chain = mlp(width=16, inputs=5)
    chain[0].weight.requires_grad_(False)
    chain[2].bias.requires_grad_(False)
    got = {path: projection.span_projection(chain, x_r, MSE, path=path) for path in ("layerwise", "linear")}
    assert got["layerwise"][0].keys() == got["linear"][0].keys() == {"0.bias", "2.weight", "4.weight", "4.bias"}
    assert relative(flat(got["layerwise"][0]), flat(got["linear"][0])) < 1e-5


def test_float64_precision_agrees_with_the_materialized_path(images):
    model = with_running_statistics(ResidualCNN(), images)
    got = {path: projection.span_projection(model, images, CE, path=path, precision="float64")
           for path in ("layerwise", "materialized")}
    assert relative(flat(got["layerwise"][0]), flat(got["materialized"][0])) < 1e-10
    assert flat(got["layerwise"][0]).dtype == flat(got["materialized"][0]).dtype == torch.float64


def test_rank_deficient_subsample(images):
    model = with_running_statistics(ResidualCNN(), images)
    duplicated = torch.cat([images[:4], images[:4]])
    targets, rank, finite = projection.span_projection(model, duplicated, CE, path="layerwise")
    reference, _, _ = projection.span_projection(model, images[:4], CE, path="layerwise")
    assert int(rank) == 4 and bool(finite)
    assert relative(flat(targets), flat(reference)) < 1e-4


def test_non_finite_inputs_are_flagged_and_rejected(images):
    model = with_running_statistics(ResidualCNN(), images)
    images = images.clone()
    images[2, 0, 3, 3] = float("inf")
    for path in ("layerwise", "materialized"):
        _, _, finite = projection.span_projection(model, images, CE, path=path)
        assert not bool(finite), path
    before = flat(dict(model.named_parameters()))
    with pytest.raises(mnog.NonFiniteError, match="NaN/Inf"):
        projection.project_out(model, images, CE, 0.5, path="layerwise")
    assert torch.equal(flat(dict(model.named_parameters())), before)   # θ untouched


# ---- which path `auto` takes ----------------------------------------------------------

def test_auto_takes_the_layerwise_path_where_samples_are_independent():
    resolve = projection.resolve_path
    assert resolve(TwoHeadCNN().eval()) == "layerwise"
    assert resolve(TwoHeadCNN().train(), bn_mode="eval") == "layerwise"
    assert resolve(ResidualCNN(batchnorm=False).train()) == "layerwise"   # no BatchNorm: nothing couples
    assert resolve(ColorResNet(18, width=4).eval()) == "layerwise"
    assert resolve(mlp(width=8)) == "linear"                              # linear chains keep their path
    # Batch statistics couple the samples: G needs the batched Jacobian.
    assert resolve(TwoHeadCNN().train(), bn_mode="batch") == "materialized"
    untracked = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.Flatten(),
                              nn.Linear(4 * 36, 2)).eval()
    assert resolve(untracked, bn_mode="eval") == "materialized"
    # Layers without a per-sample rule here.
    for model in (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(36, 2)),
                  nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1)),
                  nn.Sequential(nn.Conv2d(3, 4, 3, padding="same"), nn.Flatten(), nn.Linear(4 * 64, 2))):
        assert resolve(model) == "materialized"
        with pytest.raises(ValueError, match="layerwise"):
            resolve(model, "layerwise")
    tied = Wrapped(nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3)))
    tied.inner[2].weight = tied.inner[0].weight
    assert resolve(tied) == "materialized"
    # Ensembles run under vmap: the materialized path (linear chains: the linear path).
    assert resolve(mnog.Ensemble([Wrapped(mlp(width=4)) for _ in range(2)])) == "materialized"
    assert resolve(mnog.Ensemble([mlp(width=4) for _ in range(2)])) == "linear"


def test_an_explicit_path_or_solver_is_honoured(two_head_data, monkeypatch):
    (x_r, _), _ = two_head_data
    model = with_running_statistics(TwoHeadCNN(), x_r)
    resolve = projection.resolve_path
    assert resolve(model, "materialized") == "materialized"
    assert resolve(model, solver="qr") == "materialized"                  # QR needs G itself
    assert resolve(mlp(width=8), "layerwise") == "layerwise"
    with pytest.raises(ValueError, match="qr"):
        resolve(model, "layerwise", solver="qr")
    with pytest.raises(ValueError, match="batch statistics"):
        resolve(model.train(), "layerwise", bn_mode="batch")
    with pytest.raises(ValueError, match="Ensemble"):
        resolve(mnog.Ensemble([mlp(width=4) for _ in range(2)]), "layerwise")
    model.eval()
    calls = []
    for name in ("_layerwise_span", "_materialized_span"):
        original = getattr(projection, name)
        monkeypatch.setattr(projection, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    for path, solver in [("auto", "gram"), ("materialized", "gram"), ("auto", "qr")]:
        projection.span_projection(model, x_r[:4], CE, path=path, solver=solver)
    assert calls == ["_layerwise_span", "_materialized_span", "_materialized_span"]


def test_a_parameter_used_outside_its_layer_falls_back(vector_data, monkeypatch):
    (x_r, _), _ = vector_data
    model = OutsideUse()
    assert projection.resolve_path(model) == "layerwise"               # only the forward can tell
    materialized = projection._materialized_span
    with pytest.raises(ValueError, match="outside its own layer"):
        projection.span_projection(model, x_r, MSE, path="layerwise")
    used = []
    monkeypatch.setattr(projection, "_materialized_span", lambda *a, **k: used.append(1) or materialized(*a, **k))
    targets, rank, _ = projection.span_projection(model, x_r, MSE)
    reference, ref_rank, _ = projection.span_projection(model, x_r, MSE, path="materialized")
    assert used and int(rank) == int(ref_rank)
    assert relative(flat(targets), flat(reference)) < 1e-6


def test_a_stale_layer_input_is_detected(vector_data):
    (x_r, _), _ = vector_data
    with pytest.raises(ValueError, match="modified in place"):
        projection.span_projection(ModifiedInput(), x_r, MSE, path="layerwise")


# ---- end to end -----------------------------------------------------------------------

def test_minnorm_og_unlearns_the_same_model_by_either_path(two_head_data, monkeypatch):
    retain, forget = two_head_data
    model = with_running_statistics(TwoHeadCNN(), retain[0]).train()
    # The convolution's bias before train-mode BatchNorm has a zero gradient up to rounding,
    # which AdamW's first steps turn into ±η: frozen, so that the runs compare at float precision.
    model.trunk[0].bias.requires_grad_(False)
    hp = dict(eta=1e-2, lambda_reg=0.5, gamma_reg=0.8, t_gd=1, t_proj=1, n_pert=8, bn_mode="eval")
    chosen = []
    resolve = projection.resolve_path
    monkeypatch.setattr(projection, "resolve_path", lambda *a, **k: chosen.append(resolve(*a, **k)) or chosen[-1])
    layerwise = copy.deepcopy(model)
    mnog.unlearn(layerwise, "MinNorm-OG", forget, retain, "cross_entropy", epochs=3, batch_size=4, **hp)
    assert chosen and set(chosen) == {"layerwise"}
    monkeypatch.setattr(projection, "resolve_path", lambda *a, **k: "materialized")
    materialized = copy.deepcopy(model)
    mnog.unlearn(materialized, "MinNorm-OG", forget, retain, "cross_entropy", epochs=3, batch_size=4, **hp)
    before, after = flat(dict(model.named_parameters())), flat(dict(layerwise.named_parameters()))
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, flat(dict(materialized.named_parameters())), rtol=1e-5, atol=1e-6)
    for a, b in zip(layerwise.buffers(), materialized.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
