"""Our numbers beside the paper's: tolerance checks and rendering.

`paper_tables/<table>.csv` holds, per cell, the paper's value (median and central range)
and a `check`, the rule our value must satisfy:

    overlap       our central range and the paper's overlap
    range         our median lies inside the paper's central range [low, high]
    at_least:<v>  our median is at least v (GA's divergence at T = 1000)

and `expected`: "pass", or "deviation" for a cell where we know and document (README,
"Known deviations") that we do not reproduce the paper. A deviation is still checked and
shown, but does not fail the run. `compare` applies the rules; the rendering functions
turn the result into markdown; nothing parses stdout.
"""
from __future__ import annotations

import math

import pandas as pd
from tabulate import tabulate

from mnog.results import ROOT

PAPER_TABLES = ROOT / "paper_tables"


def load_paper_table(name: str) -> pd.DataFrame:
    return pd.read_csv(PAPER_TABLES / f"{name}.csv", comment="#")


def check(rule: str, ours: pd.Series, paper: pd.Series) -> bool:
    """Whether our row (median, low, high) satisfies `rule` against the paper's row."""
    if rule == "overlap":
        return bool(ours["low"] <= paper["high"] and paper["low"] <= ours["high"])
    if rule == "range":
        return bool(paper["low"] <= ours["median"] <= paper["high"])
    if rule.startswith("at_least:"):
        return bool(ours["median"] >= float(rule.removeprefix("at_least:")))
    raise ValueError(f"unknown check {rule!r} in a paper table")


def describe(rule: str) -> str:
    return {"overlap": "ranges overlap", "range": "median in paper's range"}.get(
        rule, f"median ≥ {rule.removeprefix('at_least:')}")


def compare(ours: pd.DataFrame, paper: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Join our best rows with the paper's on `keys` and apply every row's check.

    Adds `pass` (the check holds) and `ok` (it holds, or the cell is a known deviation)."""
    merged = paper.merge(ours, on=keys, how="left", suffixes=("_paper", ""))
    paper_part = lambda row: pd.Series({k: row[f"{k}_paper"] for k in ("median", "low", "high")})  # noqa: E731
    merged["pass"] = [not pd.isna(row["median"]) and check(row["check"], row, paper_part(row))
                      for _, row in merged.iterrows()]
    merged["ok"] = merged["pass"] | (merged["expected"] == "deviation")
    return merged


def fmt(x: float) -> str:
    """Three significant digits, as the paper prints them (1.50, 23.8, 1400)."""
    if x is None or pd.isna(x):
        return "—"
    if not math.isfinite(x):
        return "∞"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}" if abs(x) >= 10 else f"{x:.2f}"


def cell(median: float, low: float, high: float) -> str:
    return f"{fmt(median)} ({fmt(low)}, {fmt(high)})"


def comparison_markdown(comparison: pd.DataFrame, keys: list[str]) -> str:
    def mark(row):
        if row["expected"] == "deviation":
            return "✗ known deviation" if not row["pass"] else "✓ (known deviation not seen)"
        return "✓" if row["pass"] else "✗"
    rows = [[*(row[k] for k in keys), cell(row["median"], row["low"], row["high"]),
             cell(row["median_paper"], row["low_paper"], row["high_paper"]), describe(row["check"]), mark(row)]
            for _, row in comparison.iterrows()]
    return tabulate(rows, headers=[*keys, "ours", "paper", "tolerance", "pass"], tablefmt="github")


def wide_markdown(table: pd.DataFrame, index: str, columns: str, order: list[str]) -> str:
    """Our table in the paper's layout: one row per `index`, one column per method."""
    cells = table.assign(cell=[cell(r["median"], r["low"], r["high"]) for _, r in table.iterrows()])
    wide = cells.pivot(index=index, columns=columns, values="cell").reindex(columns=order)
    return tabulate(wide.reset_index().values.tolist(), headers=[index, *wide.columns], tablefmt="github")


def claims_markdown(claims: list[tuple[str, bool, str]]) -> str:
    return tabulate([[text, "✓" if ok else "✗", detail] for text, ok, detail in claims],
                    headers=["paper claim", "holds", "our numbers"], tablefmt="github")
