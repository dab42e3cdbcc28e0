"""Data Poisoning (docs/protocol.md#data-poisoning): its settings, profiles, trials and θ*.

Two targets run this experiment, Table 5 (`artifact/table5_data_poisoning.py`: the sweep, the
fits of the selected configurations, the claims) and the ablation (`artifact/ablation.py`:
MinNorm-OG's variants on the same grids), so its declaration lives here, in the core, and both
build the same `DataPoisoning` from the same profiles: the ablation finds Table 5's θ* and
records because they are the same cache entries and record keys.

Per trial: 50 retain points y = sin(x) and 5 poisoned forget points y = 1.5, x ~ U[-5π, 5π]
(mnog.datasets.SinePoisoning); θ*, an MLP 1-300-300-1 (SiLU), trains on both for 100,000 epochs
of full-batch AdamW (lr 1e-3). The trials run together as one `mnog.Ensemble` (stacked
parameters, batched matrix products), θ* cached by a hash of everything that determines it.
A method unlearns with full data access for T epochs from its Table 7 grid (`jobs`); the metric
is sup_x |f(x) − sin(x)| on 1,000 evenly spaced points.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import numpy as np
import torch

import mnog
from mnog.compare import PAPER_TABLES
from mnog.config import field
from mnog.datasets import SinePoisoning
from mnog.errors import UserError
from mnog.experiment import Experiment, Prepared, Trial, job_seed
from mnog.loop import UnlearnResult
from mnog.methods import paper_methods
from mnog.metrics import sup_error
from mnog.models import mlp
from mnog.plan import Cost, ModelCost, Recipe, Sweep, Work, method_steps, variants
from mnog.results import RESULTS, stable_hash
from mnog.sweep import Job, MethodOptions, method_grid
from mnog.tasks import get_task
from mnog.training import cached_state, save_atomic, train_full_batch

METHODS = paper_methods(classifier=False)  # Table 5's columns: SCRUB, NPO and SalUn are for classifiers


@dataclass(frozen=True)
class Config(MethodOptions):  # + --minnorm-order, --minnorm-precision (mnog.sweep)
    trials: int = field(10, "number of trials", minimum=1)
    first_seed: int = field(1, "trials use seeds first_seed, first_seed + 1, ...", minimum=0)
    width: int = field(300, "hidden width of the 1-300-300-1 MLP", minimum=1)
    train_epochs: int = field(100_000, "full-batch AdamW epochs for the poisoned model θ*", minimum=1)
    train_lr: float = field(1e-3, "learning rate for θ*", above=0)
    budgets: tuple[int, ...] = field((10, 100, 1000), "unlearning budgets T (Table 7 has grids for 10, 100, 1000)",
                                     choices=(10, 100, 1000))
    methods: tuple[str, ...] = field(METHODS, "methods to run", choices=METHODS)
    grid_values: int = field(0, "keep at most this many values per Table 7 axis (0: all)", minimum=0)
    test_points: int = field(1000, "evenly spaced evaluation points on [-5π, 5π]", minimum=2)
    enforce: bool = field(True, "exit 1 when a cell misses its tolerance or a claim fails")
    device: str = field("cpu", "torch device; the MLP ensembles run well on a CPU", device=True)


PROFILES = {
    "smoke": Config(trials=4, train_epochs=2000, grid_values=1, enforce=False),
    "paper": Config(),
}
PROFILES["cpu"] = PROFILES["paper"]  # the paper's protocol runs on a laptop CPU
PROBLEM = SinePoisoning()
# Adam's second moments underflow into denormal floats (< 1.2e-38) over 100,000 epochs and
# slow a CPU's float arithmetic 2x by the end of training; flush them to zero.
FLUSH_DENORMAL = torch.set_flush_denormal(True)


# -- the experiment: trials, θ*, the metric ------------------------------------------------------

@dataclass(frozen=True)
class DataPoisoning(Experiment):
    """Data Poisoning: every trial's θ*, unlearned by a job on all its trials at once (one Ensemble)."""
    cfg: Config
    store = "table5"
    metrics = ("sup_error",)
    task = get_task("mse")

    def setting(self) -> dict:
        cfg = self.cfg
        return {"experiment": "table5", "mnog": mnog.__version__, "flush_denormal": FLUSH_DENORMAL,
                "problem": PROBLEM, "width": cfg.width, "train_epochs": cfg.train_epochs, "train_lr": cfg.train_lr,
                "test_points": cfg.test_points, "device": self.device().type}

    def data(self, seeds: list[int]):
        """(retain, forget) of `seeds`, stacked along a leading member dim: ((E, 50, 1), ...)."""
        retain, forget = PROBLEM.sample_trials(seeds)
        to = lambda pair: tuple(t.to(self.cfg.device) for t in pair)  # noqa: E731
        return to(retain), to(forget)

    def cache_spec(self) -> dict:
        """What determines θ*: its file's name hashes it, and the file stores it (cached_state).
        The device by its type: cpu and cpu:0 (or cuda and cuda:1) train the same models."""
        cfg = self.cfg
        return {"problem": PROBLEM, "width": cfg.width, "epochs": cfg.train_epochs, "lr": cfg.train_lr,
                "seeds": self.seeds(), "device": self.device().type, "flush_denormal": FLUSH_DENORMAL}

    def prepare(self) -> Prepared:
        """θ* of every trial as one Ensemble, trained once (100,000 full-batch AdamW epochs on
        D_r ∪ D_f), then cached; the test grid."""
        cfg, seeds = self.cfg, self.seeds()
        spec = self.cache_spec()
        model = mnog.Ensemble([_initial_mlp(cfg.width, seed) for seed in seeds]).to(cfg.device)

        def train(checkpoint) -> dict:
            retain, forget = self.data(seeds)
            inputs = torch.cat([retain[0], forget[0]], 1)    # D_r ∪ D_f: (E, 55, 1)
            targets = torch.cat([retain[1], forget[1]], 1)
            try:
                train_full_batch(model, inputs, targets, self.task, cfg.train_epochs, cfg.train_lr,
                                 checkpoint=checkpoint, desc="poisoned models θ*")
            except mnog.NonFiniteError as exc:
                raise UserError(f"{exc}: lower --train-lr (the paper's is 0.001)") from None
            return {"model": model.state_dict()}

        path = RESULTS / "cache" / f"poisoned-{stable_hash(spec)}.pt"
        model.load_state_dict(cached_state(path, "poisoned models θ*", train, cfg.device, spec=spec)["model"])
        retain, forget = self.data(seeds)
        trials = {seed: Trial(seed, model.member(i), (retain[0][i], retain[1][i]), (forget[0][i], forget[1][i]))
                  for i, seed in enumerate(seeds)}
        return Prepared(trials, (model, PROBLEM.test_grid(cfg.test_points).to(cfg.device)))

    def unlearned_ensemble(self, state: Prepared, job: Job, seeds: list[int]) -> tuple[mnog.Ensemble, UnlearnResult]:
        """θ* of `seeds` unlearned together by `job` (full data access, full batch), seeded as
        one run (job_seed's trial -1), and the run's result. A member that diverges to NaN gets
        a NaN sup error, recorded as diverged; the others stand."""
        poisoned = state.evaluation[0]
        index = [self.seeds().index(t) for t in seeds]
        model = (copy.deepcopy(poisoned) if len(index) == poisoned.num_members
                 else mnog.Ensemble([poisoned.member(i) for i in index]))
        retain, forget = self.data(seeds)
        result = mnog.unlearn(model, job.method, forget=forget, retain=retain, loss=self.task, epochs=job.epochs,
                              seed=job_seed(job, self.setting(), -1), on_nonfinite="ignore", **job.config)
        return model, result

    def run(self, state: Prepared, job: Job, seeds: list[int]) -> dict[int, dict[str, float]]:
        (model, _), grid = self.unlearned_ensemble(state, job, seeds), state.evaluation[1]
        errors = sup_error(model, grid)
        # The fits over the test grid, for Figures 1, 3-5 (Table 5's `fits` reads those of the selected jobs).
        save_atomic({"curves": torch.from_numpy(curves(model, grid)), "sup_error": errors}, self.fits_path(job, seeds))
        return {t: {"sup_error": float(e)} for t, e in zip(seeds, errors.tolist())}

    # -- costs (mnog.plan): one ensemble of every trial's MLP; a job runs its trials together
    def recipe(self) -> Recipe:
        cfg = self.cfg
        return Recipe("mlp", cfg.width, PROBLEM.n_retain + PROBLEM.n_forget, members=cfg.trials,
                      device=self.device().type, variants=variants(cfg.methods, cfg.method_options(),
                                                                   n_pert=PROBLEM.n_retain))

    def model_costs(self) -> list[ModelCost]:
        path = RESULTS / "cache" / f"poisoned-{stable_hash(self.cache_spec())}.pt"
        return [ModelCost(path, "poisoned models θ*", self.recipe(), self.cfg.train_epochs, count=self.cfg.trials)]

    def job_cost(self, job: Job, trials: int) -> Cost:
        return Cost(self.recipe(), method_steps(job, 1), scored=1, runs=((job.method, 1),))

    def fits_path(self, job: Job, seeds: list[int]):
        """Where a job's fits over the test grid are cached (results/cache/fits-<hash>.pt)."""
        return RESULTS / "cache" / f"fits-{stable_hash({'job': job.key(self.setting(), -1), 'seeds': seeds})}.pt"


def _initial_mlp(width: int, seed: int) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return mlp(width)


@torch.no_grad()
def curves(ensemble: mnog.Ensemble, grid: torch.Tensor) -> np.ndarray:
    """Each member's fit over the grid, (trials, points), each member run as a model of its own."""
    return np.stack([ensemble.member(i).eval()(grid).squeeze(1).cpu().numpy() for i in range(ensemble.num_members)])


# -- the sweep: every method's Table 7 grid at every budget ------------------------------------

def jobs(cfg: Config) -> list[Job]:
    table7 = json.loads((PAPER_TABLES / "table7.json").read_text())
    return [Job.of(method, budget, hyperparameters)
            for budget in cfg.budgets for method in cfg.methods
            for hyperparameters in method_grid(method, table7[str(budget)], cfg.grid_values, cfg.method_options(),
                                               budget)]


def plan(cfg: Config) -> Work:
    """What Table 5's `main` trains and runs (mnog.plan): θ* of every trial, then the sweep of `jobs`."""
    return Work(sweeps=(Sweep(DataPoisoning(cfg), jobs(cfg), "table5"),),
                note="and the selected fits (stored by the sweep)")
