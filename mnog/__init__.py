"""mnog: MinNorm-OG and ten unlearning baselines for any PyTorch model.

    import mnog
    mnog.unlearn(model, "MinNorm-OG", forget=(x_f, y_f), retain=(x_r, y_r), loss="mse",
                 epochs=100, eta=1e-3, lambda_reg=0.1, gamma_reg=0.9, t_gd=25, t_proj=2, n_pert=50)
    mnog.evaluate(classifier, forget=..., retain=..., test=..., reference=retrained)  # UA, RA, TA, MIA, gaps

`mnog.METHODS` maps every method name to its class; `METHODS[name].Config` lists its
hyperparameters. See README.md and docs/ for the paper's experiments.
"""
from mnog.ensemble import Ensemble
from mnog.errors import NonFiniteError
from mnog.evaluation import Evaluation, evaluate
from mnog.loop import UnlearnResult, unlearn
from mnog.methods import METHODS, Method, get_method, register
from mnog.projection import output_gradients, project_out
from mnog.tasks import Task

__all__ = ["METHODS", "Ensemble", "Evaluation", "Method", "NonFiniteError", "Task", "UnlearnResult", "evaluate",
           "get_method", "output_gradients", "project_out", "register", "unlearn"]
__version__ = "0.1.0"
