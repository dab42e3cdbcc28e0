"""Hyperparameter sweeps: grids, resumable execution, and best-configuration selection."""
from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mnog.errors import NonFiniteError
from mnog.methods import get_method
from mnog.results import RecordStore, now, provenance, stable_hash


def grid(**axes: Sequence) -> list[dict]:
    """Every combination of the axes' values, e.g. grid(eta=[1e-3, 1e-4], sigma=[0.1, 1])."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def method_grid(method: str, axes: dict[str, Sequence], max_values: int = 0) -> list[dict]:
    """The configurations `method` sweeps: the product of the axes it takes (its required
    hyperparameters), at most `max_values` values per axis (0: all). Configurations the
    method rejects (MinNorm-OG's λ_reg > 1) are left out."""
    method_cls = get_method(method)
    names = method_cls.hyperparameters(required_only=True)
    missing = [n for n in names if n not in axes]
    if missing:
        raise ValueError(f"the grid has no axis for {method}'s {', '.join(missing)}")
    configs = []
    for config in grid(**{n: list(axes[n])[:max_values or None] for n in names}):
        try:
            method_cls.build_config(config)
        except ValueError:
            continue
        configs.append(config)
    return configs


@dataclass(frozen=True)
class Job:
    """One configuration of one method at one budget T, to be run on every trial."""
    method: str
    epochs: int
    hyperparameters: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, method: str, epochs: int, hyperparameters: dict) -> "Job":
        return cls(method, epochs, tuple(sorted(hyperparameters.items())))

    @property
    def config(self) -> dict:
        return dict(self.hyperparameters)

    def key(self, setting: dict, trial: int) -> str:
        return stable_hash({"setting": setting, "method": self.method, "epochs": self.epochs,
                            "config": self.config, "trial": trial})


# run(job, trials) -> {trial: {metric name: value}}
Runner = Callable[[Job, list[int]], dict[int, dict[str, float]]]


def run_sweep(jobs: Sequence[Job], trials: Sequence[int], run: Runner, store: RecordStore,
              setting: dict, desc: str = "sweep") -> list[dict]:
    """Run every job on every trial that `store` does not hold yet; return the jobs' records.

    Records are appended as soon as a job finishes, so an interrupted sweep resumes where it
    stopped. A job whose model turns non-finite is stored with NaN metrics and the error.
    """
    done = {r["key"]: r for r in store.load()}
    pending = [(job, [t for t in trials if job.key(setting, t) not in done]) for job in jobs]
    pending = [(job, missing) for job, missing in pending if missing]
    cost = lambda job, n: job.epochs * n  # noqa: E731  (bar and ETA in trial-epochs)
    total = sum(cost(job, len(trials)) for job in jobs)
    failures = 0
    with tqdm(total=total, initial=total - sum(cost(j, len(m)) for j, m in pending), desc=desc,
              unit=" trial-epochs", unit_scale=True, smoothing=0.05, dynamic_ncols=True) as bar:
        for job, missing in pending:
            start = time.perf_counter()
            error = None
            try:
                values = run(job, missing)
            except NonFiniteError as exc:
                values, error = {t: None for t in missing}, str(exc)
                failures += 1
            seconds = time.perf_counter() - start
            store.append([_record(job, t, values[t], error, seconds, len(missing), setting) for t in missing])
            bar.update(cost(job, len(missing)))
            bar.set_postfix_str(f"{job.method} T={job.epochs}" + (f", {failures} diverged" if failures else ""))
    wanted = {job.key(setting, t) for job in jobs for t in trials}
    return [r for r in store.load() if r["key"] in wanted]


def _record(job: Job, trial: int, metrics: dict | None, error: str | None, seconds: float,
            batch: int, setting: dict) -> dict:
    return {
        "key": job.key(setting, trial), "setting": setting, "method": job.method, "epochs": job.epochs,
        "config": job.config, "trial": trial, "metrics": metrics, "error": error,
        "wall_s": seconds / batch, "trials_run_together": batch, "time": now(), "provenance": provenance(),
    }


# ---------------------------------------------------------------------------------------
# Summaries and selection
# ---------------------------------------------------------------------------------------

def central_range(values: np.ndarray) -> tuple[float, float]:
    """The range left after discarding the ⌊n/4⌋ best and ⌊n/4⌋ worst values (SPEC §5)."""
    ordered = np.sort(values)
    k = len(ordered) // 4
    return float(ordered[k]), float(ordered[len(ordered) - 1 - k])


def summarize(records: list[dict], metric: str, higher_is_better: bool = False) -> pd.DataFrame:
    """One row per (method, epochs, config): n, median, central range, mean, standard error.

    A diverged run (NaN metric) counts as the worst possible value (±inf)."""
    worst = -math.inf if higher_is_better else math.inf
    rows = [{"method": r["method"], "epochs": r["epochs"], "config": json.dumps(r["config"], sort_keys=True),
             "trial": r["trial"], "value": _value(r, metric, worst)} for r in records]
    if not rows:
        return pd.DataFrame(columns=["method", "epochs", "config", "n", "median", "low", "high", "mean", "se"])
    out = []
    for (method, epochs, config), group in pd.DataFrame(rows).groupby(["method", "epochs", "config"], sort=False):
        values = group.sort_values("trial")["value"].to_numpy(float)
        low, high = central_range(values)
        finite = values[np.isfinite(values)]
        out.append({"method": method, "epochs": epochs, "config": config, "n": len(values),
                    "median": float(np.median(values)), "low": low, "high": high,
                    "mean": float(finite.mean()) if len(finite) == len(values) else worst,
                    "se": float(finite.std(ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else math.nan,
                    "values": values.tolist()})
    return pd.DataFrame(out)


def _value(record: dict, metric: str, worst: float) -> float:
    value = (record.get("metrics") or {}).get(metric)
    return worst if value is None or not math.isfinite(value) else float(value)


def select_best(summary: pd.DataFrame, n: int, by: str = "median", higher_is_better: bool = False) -> pd.DataFrame:
    """Per (method, epochs): the configuration with the best `by` ("median" or "mean") over
    its n trials, ties broken by the narrower central range (as the authors' code); only
    configurations with all n trials compete."""
    complete = summary[summary["n"] == n].assign(width=lambda d: d["high"] - d["low"],
                                                 key=lambda d: -d[by] if higher_is_better else d[by])
    best = complete.sort_values(["key", "width"]).groupby(["method", "epochs"], sort=False).head(1)
    return best.drop(columns=["width", "key"]).sort_values(["epochs", "method"]).reset_index(drop=True)
