"""The generated parts of README.md and docs/: one source for every number they quote.

    python -m artifact.docs                  # rewrite every generated block of README.md and docs/
    python -m artifact.docs --check          # exit 1, naming them, if any block is stale (tests/test_docs.py)
    python -m artifact.docs reference --from results table2 figure6    # commit a run's summaries
    make docs                                # the first command

A generated block is the text between `<!-- generated: NAME -->` and `<!-- end generated -->`;
NAME says what renders it, from mnog/targets.py (the targets and the paper's claims) and the
committed reference runs in reference/<target>/<profile>/:

    claims                    every claim of the paper: targets, hardware, time, status here
    targets                   every target: what it needs, its reference wall time per profile
    verdict PROFILE           `make check`'s verdict line on the reference runs at PROFILE
    report TARGET PROFILE     the report's section of TARGET (artifact/report.py), on its reference run
    notes                     paper_tables/notes.json: every known deviation and unenforced profile

`reference` copies the small summaries a target wrote to results/<target>/<profile>/ (every
.csv, .json and .md file: comparison.csv, claims.json, config.json, run.json, the table or the
figure's CSV) into reference/<target>/<profile>/, never records, caches, models or images, and
names a folder data set by its file name (`folder:PATH/cifar10-jpeg.tar.gz`); then
`python -m artifact.docs` renders its rows. The machine, date and commit of the run are in its
config.json and run.json.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from artifact.report import load, render_markdown, target_blocks, verdict
from mnog.compare import load_notes
from mnog.config import OneLineParser
from mnog.errors import UserError, cli
from mnog.targets import BY_NAME, REFERENCE, ROOT, TARGETS, claims_markdown, targets_markdown

BLOCK = re.compile(r"(<!-- generated: (?P<spec>[^>]+?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
SUMMARIES = (".csv", ".json", ".md")   # what a reference run keeps
LARGEST = 512 * 1024                   # bytes: a summary larger than this is not a summary
FOLDER = re.compile(r"folder:(/[^\s\"',]*/)?([^/\s\"',]+)")


def documents(root: Path = ROOT) -> list[Path]:
    """README.md and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def render(spec: str, reference: Path = REFERENCE, page: Path = ROOT / "README.md") -> str:
    """The text of one generated block (without its markers) of `page` (its links are relative to it)."""
    name, *args = spec.split()
    if name == "claims" and not args:
        return claims_markdown(reference)
    if name == "targets" and not args:
        return targets_markdown(reference)
    if name == "verdict" and len(args) == 1:
        outcomes = [load(t, args[0], reference) for t in TARGETS]
        return f"`make check` on the reference runs at `{args[0]}`: {verdict(outcomes)}."
    if name == "report" and len(args) == 2 and args[0] in BY_NAME:
        outcome = load(BY_NAME[args[0]], args[1], reference)
        if not outcome.ran:
            return (f"No reference run at `{args[1]}` yet: `make {args[0]} PROFILE={args[1]}` makes one, "
                    f"`python -m artifact.docs reference --from results {args[0]}` commits it.")
        return render_markdown(target_blocks(outcome)[2:], reference).strip()  # without the heading and description
    if name == "notes" and not args:
        notes = load_notes()
        see = lambda n: f"[{n['see']}]({os.path.relpath(ROOT / n['see'], page.parent)})"  # noqa: E731
        rows = [f"| `{d['target']}` | all | known deviation, {', '.join(f'{k} {v}' for k, v in d['cell'].items())}: "
                f"{d['note']} | {see(d)} |" for d in notes["deviations"]]
        rows += [f"| {', '.join(f'`{t}`' for t in n['targets'])} | {', '.join(f'`{p}`' for p in n['profiles'])} "
                 f"| not enforced: {n['note']} | {see(n)} |" for n in notes["not_enforced"]]
        return "\n".join(["| targets | profiles | why a miss is not a failure | see |", "|---|---|---|---|", *rows])
    raise UserError(f"unknown generated block {spec!r}: claims, targets, verdict PROFILE, report TARGET PROFILE, notes")


def regenerate(page: Path, reference: Path = REFERENCE) -> str:
    """`page`'s text with every generated block rendered anew."""
    return BLOCK.sub(lambda m: f"{m[1]}{render(m['spec'], reference, page)}\n{m[4]}", page.read_text())


def stale(root: Path = ROOT, reference: Path = REFERENCE) -> list[str]:
    """The documents whose generated blocks differ from what their sources render now."""
    return [str(path.relative_to(root)) for path in documents(root) if regenerate(path, reference) != path.read_text()]


def copy_reference(results: Path, profile: str, targets: list[str], reference: Path = REFERENCE) -> list[Path]:
    """Copy each target's summaries at `profile` from `results` into `reference`; returns the files."""
    copied = []
    for target in targets:
        source = results / target / profile
        files = [f for f in sorted(source.glob("*")) if f.suffix in SUMMARIES and f.stat().st_size <= LARGEST]
        if not (source / "config.json").is_file():
            raise UserError(f"{source}: no config.json; run `make {target} PROFILE={profile}` first")
        destination = reference / target / profile
        shutil.rmtree(destination, ignore_errors=True)
        destination.mkdir(parents=True)
        for f in files:
            # A folder data set by its file name (as records name it), and the interpreter by its
            # name, not by this machine's paths.
            text = FOLDER.sub(r"folder:PATH/\2", f.read_text())
            if f.name == "run.json":
                run = json.loads(text)
                text = json.dumps({**run, "command": ["python", *run.get("command", [])[1:]]}, indent=2) + "\n"
            (destination / f.name).write_text(text)
            copied.append(destination / f.name)
    return copied


def main(argv=None) -> int:
    parser = OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated block is stale; write nothing")
    commands = parser.add_subparsers(dest="command", parser_class=OneLineParser)
    p = commands.add_parser("reference", help="copy a run's summaries into reference/ (then regenerate)")
    p.add_argument("--from", dest="results", type=Path, required=True, help="the results folder the run wrote")
    p.add_argument("--profile", default="cpu", help="the profile of the run")
    p.add_argument("targets", nargs="+", help="the targets to copy")
    args = parser.parse_args(argv)
    if args.command == "reference":
        if unknown := [t for t in args.targets if t not in BY_NAME]:
            parser.error(f"unknown target(s) {', '.join(unknown)}; the targets are {', '.join(BY_NAME)}")
        copied = copy_reference(args.results, args.profile, args.targets)
        print(f"copied {len(copied)} files into {REFERENCE.relative_to(ROOT)}/; now run `make docs`")
        return 0
    if args.check:
        if late := stale():
            print(f"stale generated blocks in {', '.join(late)}: run `make docs`", file=sys.stderr)
            return 1
        return 0
    for path in documents():
        if (new := regenerate(path)) != path.read_text():
            path.write_text(new)
            print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
