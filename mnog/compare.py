"""Our numbers beside the paper's: tolerance checks and rendering.

`paper_tables/<table>.csv` holds, per cell, the paper's value — median and central range
(`median, low, high`) or mean and standard error (`mean, se`) — and a `check`, the rule
our value must satisfy:

    overlap       our central range and the paper's overlap
    range         our median lies inside the paper's central range [low, high]
    at_least:<v>  our median is at least v (GA's divergence at T = 1000)
    sigma:<k>     our mean is within k combined standard errors, k·√(se² + se_paper²)

and `expected`: "pass", or "deviation" for a cell where we know and document
(paper_tables/notes.json, with the reason) that we do not reproduce the paper. A deviation is
still checked and shown, but does not fail the run. `compare` applies the rules; the rendering functions
turn the result into markdown; nothing parses stdout.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from mnog.results import ROOT, write_json, write_text

PAPER_TABLES = ROOT / "paper_tables"


def load_paper_table(name: str) -> pd.DataFrame:
    return pd.read_csv(PAPER_TABLES / f"{name}.csv", comment="#")


def load_notes() -> dict:
    """paper_tables/notes.json: why each known deviation and each profile that does not enforce the
    paper's numbers is not a failure ({"deviations": [...], "not_enforced": [...]})."""
    return json.loads((PAPER_TABLES / "notes.json").read_text())


def deviation_note(target: str, cell: dict) -> dict | None:
    """The note of a known deviation: the entry of notes.json whose cell `cell` matches."""
    return next((d for d in load_notes()["deviations"] if d["target"] == target
                 and all(str(cell.get(k)) == str(v) for k, v in d["cell"].items())), None)


def profile_note(target: str, profile: str) -> dict | None:
    """Why `target` does not enforce the paper's numbers at `profile` (notes.json), if it says."""
    return next((n for n in load_notes()["not_enforced"] if target in n["targets"] and profile in n["profiles"]), None)


def check(rule: str, ours: pd.Series, paper: pd.Series) -> bool:
    """Whether our row satisfies `rule` against the paper's row (both with the table's stats)."""
    if rule == "overlap":
        return bool(ours["low"] <= paper["high"] and paper["low"] <= ours["high"])
    if rule == "range":
        return bool(paper["low"] <= ours["median"] <= paper["high"])
    if rule.startswith("at_least:"):
        return bool(ours["median"] >= float(rule.removeprefix("at_least:")))
    if rule.startswith("sigma:"):
        band = float(rule.removeprefix("sigma:")) * math.hypot(ours["se"], paper["se"])
        return bool(abs(ours["mean"] - paper["mean"]) <= band)
    raise ValueError(f"unknown check {rule!r} in a paper table")


def describe(rule: str) -> str:
    if rule.startswith("sigma:"):
        return f"within {rule.removeprefix('sigma:')} combined SE"
    return {"overlap": "ranges overlap", "range": "median in paper's range"}.get(
        rule, f"median ≥ {rule.removeprefix('at_least:')}")


def stats(table: pd.DataFrame) -> tuple[str, ...]:
    """The statistics a paper table reports: ("mean", "se") or ("median", "low", "high"); for a
    comparison (`compare`'s output, which holds all of ours), those of its paper side."""
    columns = set(table.columns)
    if any(c.endswith("_paper") for c in columns):
        return ("mean", "se") if "se_paper" in columns else ("median", "low", "high")
    return ("mean", "se") if "se" in columns else ("median", "low", "high")


def compare(ours: pd.DataFrame, paper: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Join our best rows with the paper's on `keys` and apply every row's check.

    Adds `pass` (the check holds) and `ok` (it holds, or the cell is a known deviation)."""
    merged = paper.merge(ours, on=keys, how="left", suffixes=("_paper", ""))
    names = stats(paper)
    paper_part = lambda row: pd.Series({k: row[f"{k}_paper"] for k in names})  # noqa: E731
    merged["pass"] = [not pd.isna(row[names[0]]) and check(row["check"], row, paper_part(row))
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


def cell(row, names: tuple[str, ...], suffix: str = "") -> str:
    """"median (low, high)" or "mean ± se", from row[name + suffix]."""
    values = [row[f"{n}{suffix}"] for n in names]
    if names[0] == "mean":  # percentages, printed as the paper does: 49.1 ± 6.1
        return f"{values[0]:.1f} ± {values[1]:.1f}" if not pd.isna(values[0]) else "—"
    return f"{fmt(values[0])} ({fmt(values[1])}, {fmt(values[2])})"


# The field's metrics (mnog.evaluate; records hold them beside the paper's) that tables show,
# in this order, per head, each as a percentage.
FIELD_SHOWN = ("ua", "ra", "ta", "mia_efficacy", "loss_mia_forget_auc", "average_gap")
FIELD_LABELS = {"ua": "UA", "ra": "RA", "ta": "TA", "mia_efficacy": "MIA-eff.", "loss_mia_forget_auc": "loss-MIA AUC",
                "average_gap": "avg gap"}
FIELD_NOTE = ("The field's standard metrics of the same configurations, in % (mnog.evaluate, not compared with "
              "the paper, which has none): UA = 1 − forget accuracy, RA, TA = retain and test accuracy, MIA-eff. = "
              "SalUn's MIA-efficacy, loss-MIA AUC = the loss attack's AUC on forget vs test (50 is ideal), avg gap = "
              "the mean gap of UA, RA, TA and MIA-eff. to the GT (Retrain) model, means over the trials.")


def _field_split(name: str) -> tuple[str, str]:
    """("head0", "ua") for "head0_ua", ("", "ua") for "ua"."""
    head, _, rest = name.partition("_")
    return (head, rest) if head.startswith("head") and head[4:].isdigit() else ("", name)


def field_columns(names) -> list[str]:
    """The names among `names` that FIELD_SHOWN lists ("ua", or per head "head0_ua",
    "head1_ua", ...), head by head in FIELD_SHOWN's order."""
    found = [(_field_split(n), n) for n in set(names) if _field_split(n)[1] in FIELD_SHOWN]
    return [n for (head, base), n in sorted(found, key=lambda f: (f[0][0], FIELD_SHOWN.index(f[0][1])))]


def field_header(column: str, heads: tuple[str, ...] = ()) -> str:
    """"UA", or per head "color UA" (heads: the heads' names) / "head 1 UA"."""
    head, base = _field_split(column)
    if not head:
        return FIELD_LABELS[base]
    index = int(head[4:])
    return f"{heads[index] if index < len(heads) else f'head {index}'} {FIELD_LABELS[base]}"


def field_cell(value) -> str:
    return "—" if value is None or pd.isna(value) or not math.isfinite(value) else f"{100 * value:.1f}"


def comparison_markdown(comparison: pd.DataFrame, keys: list[str], names: tuple[str, ...],
                        heads: tuple[str, ...] = ()) -> str:
    """Ours beside the paper's, cell by cell, and the field's metrics of our configuration where
    the table holds them (`field_columns`)."""
    def mark(row):
        if row["expected"] == "deviation":
            return "✗ known deviation" if not row["pass"] else "✓ (known deviation not seen)"
        return "✓" if row["pass"] else "✗"
    extra = field_columns(comparison.columns)
    rows = [[*(row[k] for k in keys), cell(row, names), cell(row, names, "_paper"), describe(row["check"]),
             mark(row), *(field_cell(row[c]) for c in extra)] for _, row in comparison.iterrows()]
    return tabulate(rows, headers=[*keys, "ours", "paper", "tolerance", "pass", *(field_header(c, heads) for c in extra)],
                    tablefmt="github")


def wide_markdown(table: pd.DataFrame, index: list[str], columns: str, order: list[str],
                  names: tuple[str, ...]) -> str:
    """Our table in the paper's layout: one row per `index`, one column per method."""
    cells = table.assign(cell=[cell(r, names) for _, r in table.iterrows()])
    wide = cells.pivot(index=index, columns=columns, values="cell").reindex(columns=order)
    return tabulate(wide.reset_index().values.tolist(), headers=[*index, *wide.columns], tablefmt="github")


def claims_markdown(claims: list[tuple[str, bool, str]]) -> str:
    return tabulate([[text, "✓" if ok else "✗", detail] for text, ok, detail in claims],
                    headers=["paper claim", "holds", "our numbers"], tablefmt="github")


def write_claims(out: Path, claims: list[tuple[str, bool, str]]) -> None:
    """claims.json: [{"claim", "holds", "detail"}], what `make report` and `make check` read."""
    write_json(out / "claims.json", [{"claim": text, "holds": bool(ok), "detail": detail} for text, ok, detail in claims])


def publish(out: Path, table: str, title: str, caption: str, best: pd.DataFrame, comparison: pd.DataFrame,
            keys: list[str], order: list[str], names: tuple[str, ...], claims: list[tuple[str, bool, str]],
            enforce: bool) -> int:
    """Write <table>.csv, comparison.csv, claims.json and <table>.md to `out`, print the markdown, and
    return the exit status: 1 when a cell (known deviations aside) or a claim fails and
    `enforce` is set, else 0."""
    out.mkdir(parents=True, exist_ok=True)
    best.to_csv(out / f"{table}.csv", index=False)
    comparison.to_csv(out / "comparison.csv", index=False)
    index = [k for k in keys if k != "method"]
    beside = "Beside the paper:" + (" " + FIELD_NOTE if field_columns(comparison.columns) else "")
    text = "\n\n".join([f"# {title}", caption, wide_markdown(best, index, "method", order, names),
                         beside, comparison_markdown(comparison, keys, names),
                         "Claims:", claims_markdown(claims)])
    write_text(out / f"{table}.md", text + "\n")
    write_claims(out, claims)
    print(text)
    failed = int((~comparison["ok"]).sum()) + sum(not ok for _, ok, _ in claims)
    if failed and enforce:
        print(f"\n{failed} check(s) failed (tolerances: paper_tables/)", file=sys.stderr)
        return 1
    return 0
