"""The public API: mnog.unlearn on any module, and one clear error for each bad input."""
import pytest
import torch
from torch import nn

import mnog
from mnog.methods import Method, register
from mnog.models import mlp

HP = dict(eta=1e-3, lambda_reg=0.1, gamma_reg=0.9, t_gd=1, t_proj=1, n_pert=50, lambda_ga=0.1, sigma=0.1)


def test_all_eleven_methods_are_registered():
    assert set(mnog.METHODS) == {"Retrain", "GD", "GA", "NGP", "NGD", "Ridge", "L1Sparse", "SCRUB", "NPO",
                                 "SalUn", "MinNorm-OG"}


@pytest.mark.parametrize("name", [n for n, m in mnog.METHODS.items() if not m.classification_only])
def test_every_regression_method_runs_through_unlearn(name, sine_data):
    retain, forget = sine_data
    model = mlp(width=16)
    hp = {k: v for k, v in HP.items() if k in mnog.METHODS[name].hyperparameters()}
    result = mnog.unlearn(model, name, forget, retain, "mse", epochs=3, **hp)
    assert result.steps == 3 and result.method == name
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_unknown_method_lists_the_known_ones(sine_data):
    retain, forget = sine_data
    with pytest.raises(ValueError, match="unknown method 'MinNorm'; known methods: .*SalUn, MinNorm-OG"):
        mnog.unlearn(mlp(8), "MinNorm", forget, retain, "mse", 2, eta=1e-3)


def test_unknown_hyperparameter_lists_the_valid_ones(sine_data):
    retain, forget = sine_data
    with pytest.raises(TypeError, match="GD: unknown hyperparameter.*lr.*GD takes eta"):
        mnog.unlearn(mlp(8), "GD", forget, retain, "mse", 2, lr=1e-3)


def test_missing_hyperparameter_is_named(sine_data):
    retain, forget = sine_data
    with pytest.raises(TypeError, match="MinNorm-OG: missing hyperparameter.*t_proj, n_pert"):
        mnog.unlearn(mlp(8), "MinNorm-OG", forget, retain, "mse", 2, eta=1e-3, lambda_reg=0.1, gamma_reg=0.9,
                     t_gd=1)


def test_bad_hyperparameter_values_are_rejected(sine_data):
    retain, forget = sine_data
    with pytest.raises(ValueError, match="lambda_reg <= 1"):
        mnog.unlearn(mlp(8), "MinNorm-OG", forget, retain, "mse", 2, eta=1e-3, lambda_reg=3.0, gamma_reg=0.9,
                     t_gd=1, t_proj=1, n_pert=5)
    with pytest.raises(TypeError, match="t_proj must be an integer"):
        mnog.unlearn(mlp(8), "MinNorm-OG", forget, retain, "mse", 2, eta=1e-3, lambda_reg=0.3, gamma_reg=0.9,
                     t_gd=1, t_proj=1.5, n_pert=5)


def test_non_finite_model_is_rejected(sine_data):
    retain, forget = sine_data
    model = mlp(8)
    with torch.no_grad():
        model[2].bias[0] = float("inf")
    with pytest.raises(mnog.NonFiniteError, match="2.bias"):
        mnog.unlearn(model, "GD", forget, retain, "mse", 2, eta=1e-3)


def test_empty_forget_set_is_rejected(sine_data):
    retain, _ = sine_data
    with pytest.raises(ValueError, match="the forget set is empty"):
        mnog.unlearn(mlp(8), "GA", (torch.zeros(0, 1), torch.zeros(0, 1)), retain, "mse", 2, eta=1e-3)


def test_classifier_only_method_on_a_regression_is_rejected(sine_data):
    retain, forget = sine_data
    with pytest.raises(ValueError, match="SCRUB is defined for classifiers only"):
        mnog.unlearn(mlp(8), "SCRUB", forget, retain, "mse", 2, eta=1e-3, lambda_reg=0.1, lambda_ga=0.1, t_gd=1)


def test_mismatched_data_is_rejected(sine_data):
    retain, forget = sine_data
    with pytest.raises(ValueError, match="retain set has 20 inputs but targets of lengths \\[19\\]"):
        mnog.unlearn(mlp(8), "GD", forget, (retain[0], retain[1][:19]), "mse", 2, eta=1e-3)
    with pytest.raises(TypeError, match="pair \\(inputs, targets\\)"):
        mnog.unlearn(mlp(8), "GD", forget, retain[0], "mse", 2, eta=1e-3)
    with pytest.raises(ValueError, match="unknown loss 'l2'"):
        mnog.unlearn(mlp(8), "GD", forget, retain, "l2", 2, eta=1e-3)


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        @register
        class Again(Method):
            name = "GD"


def test_works_on_any_module_not_only_ours(sine_data):
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.randn(1, 8))
            self.b = nn.Parameter(torch.randn(8, 1))

        def forward(self, x):
            return torch.tanh(x @ self.a) @ self.b

    retain, forget = sine_data
    model = Custom()
    mnog.unlearn(model, "MinNorm-OG", forget, retain, "mse", 4, eta=1e-2, lambda_reg=0.5, gamma_reg=0.9,
                 t_gd=1, t_proj=1, n_pert=10)
    with pytest.raises(ValueError, match="no reset_parameters"):
        mnog.unlearn(model, "Retrain", forget, retain, "mse", 2, eta=1e-3)
