"""README.md and docs/ say only what is true of the code: every `make` target, module and flag they
show exists, every relative link and anchor resolves, every Python example is run by a test (or
marked as not run), the generated tables match their sources (`make docs`), the README's first
screen holds the claims table, and the project speaks only of itself."""
import contextlib
import importlib
import importlib.util
import io
import json
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

from artifact import docs
from mnog.targets import BY_NAME, CLAIMS, TARGETS

ROOT = Path(__file__).resolve().parent.parent
PAGES = docs.documents(ROOT)
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
# Flags of the other tools the pages show (Docker's), besides mnog's scripts.
OTHER_FLAGS = {"--build-arg", "--platform", "--gpus"}
# The project's own modules whose command lines the pages show, for the union of their flags.
SCRIPTS = sorted({f"artifact.{t.script}" for t in TARGETS} | {"artifact.report", "artifact.docs", "mnog.plan",
                  "mnog.download", "mnog.rehearse"} | {f"benchmarks.{p.stem}" for p in (ROOT / "benchmarks").glob("*.py")
                                     if not p.stem.startswith("_")})


def text(page: Path) -> str:
    return page.read_text()


def commands(page: Path) -> list[str]:
    """Every line of a fenced block and every inline code span outside them."""
    body = text(page)
    lines = [line for block in FENCE.findall(body) for line in block.splitlines()]
    return lines + SPAN.findall(FENCE.sub("", body))


def prose(page: Path) -> str:
    return FENCE.sub("", text(page))


def make_targets() -> set[str]:
    rules = re.findall(r"^([a-z0-9_]+):", (ROOT / "Makefile").read_text(), re.M)
    return set(rules) | set(BY_NAME)


@cache
def options(module: str, sub: tuple[str, ...] = ()) -> str:
    """The --help text of `python -m module [sub ...]` (and of the module alone), run in-process."""
    main = importlib.import_module(module).main
    found = ""
    for argv in {(*sub, "--help"), ("--help",)}:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), \
                contextlib.suppress(SystemExit):
            main(list(argv))
        found += out.getvalue()
    return found


def flags(line: str) -> list[str]:
    return re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line)


def is_option(flag: str, help_text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"`|\*", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", prose(page), re.M):
        s = slug(heading)
        found.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return found


def test_every_make_target_named_exists():
    known = make_targets()
    missing = []
    for page in PAGES:
        for line in commands(page):
            for found in re.finditer(r"\bmake ((?:[\w$()=\"'.-]+ ?)+)", line):
                for word in found.group(1).split():
                    word = word.strip("),.;:")
                    if not re.fullmatch(r"[a-z][a-z0-9_]*", word):
                        break
                    if word not in known:
                        missing.append(f"{page.name}: make {word}")
    assert not missing


def test_every_python_module_resolves():
    missing = [f"{page.name}: {module}" for page in PAGES for line in commands(page)
               for module in re.findall(r"python3? -m ([A-Za-z_][\w.]*)", line)
               if importlib.util.find_spec(module) is None]
    assert not missing


def test_every_flag_shown_is_an_option_of_its_script():
    union = "\n".join(options(m) for m in SCRIPTS)
    wrong = []
    for page in PAGES:
        for line in commands(page):
            if run := re.search(r"python3? -m ([\w.]+)((?: [a-z][\w-]*(?= |$))*)(.*)", line):
                module, sub, rest = run.group(1), tuple(run.group(2).split()), run.group(3)
                if module != "mnog.mkl":   # not argparse: `ld-preload` and the like
                    help_text = options(module, sub)
                    wrong += [f"{page.name}: python -m {module} {f}" for f in flags(rest) if not is_option(f, help_text)]
            elif made := re.search(r"\bmake ([a-z0-9_]+)\b.*ARGS=\"([^\"]*)\"", line):
                if made.group(1) in BY_NAME:
                    help_text = options(f"artifact.{BY_NAME[made.group(1)].script}")
                    wrong += [f"{page.name}: make {made.group(1)} ARGS {f}" for f in flags(made.group(2))
                              if not is_option(f, help_text)]
            elif line.startswith("--"):
                wrong += [f"{page.name}: {f}" for f in flags(line) if f not in OTHER_FLAGS and not is_option(f, union)]
    assert not wrong


def test_relative_links_and_anchors_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(page)):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken


def test_links_from_the_code_into_the_docs_resolve():
    broken = []
    for folder in ("mnog", "artifact", "benchmarks", "paper_tables", "tests"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".json", ".csv") or "__pycache__" in path.parts:
                continue
            for doc, anchor in re.findall(r"(docs/[\w/.-]+?\.md)(?:#([\w-]+))?", path.read_text()):
                if not (ROOT / doc).is_file() or (anchor and anchor not in anchors(ROOT / doc)):
                    broken.append(f"{path.relative_to(ROOT)}: {doc}#{anchor}")
    assert not broken


def test_every_python_block_is_run_by_a_test_or_marked_not_run():
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    unmarked, untested, names = [], [], []
    for page in PAGES:
        for found in re.finditer(r"(?:^(.*)\n)?```python\n", text(page), re.M):
            marker = re.fullmatch(r"<!-- (tested: ([\w-]+)|not run: .+) -->", (found.group(1) or "").strip())
            if marker is None:
                unmarked.append(f"{page.name}: a python block at offset {found.start()}")
            elif marker.group(2):
                names.append(marker.group(2))
                if f'example("{marker.group(2)}")' not in tests:
                    untested.append(marker.group(2))
    assert not unmarked and not untested
    assert len(names) == len(set(names)), "two examples share a name"


def test_generated_tables_match_their_sources():
    assert docs.stale(ROOT) == [], "run `make docs`"


def test_the_readme_is_short_and_opens_with_the_claims_table():
    lines = text(ROOT / "README.md").splitlines()
    assert len(lines) <= 200
    start = lines.index("<!-- generated: claims -->")
    end = lines.index("<!-- end generated -->", start)
    assert end < 60 and end - start - 3 == len(CLAIMS)      # the header, the rule, one row per claim


def test_the_project_speaks_only_of_itself():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # Written in pieces so that this file does not match itself.
    words = r"issues? [0-9]+|" + "sess" + r"ions?|development " + "machines?"
    def grep(*args: str) -> str:   # tracked files and new ones not yet added
        return subprocess.run(["git", "grep", "--untracked", "-n", "-I", *args], cwd=ROOT, capture_output=True,
                              text=True).stdout
    found = grep("-i", "-w", "-E", words)
    spec = grep("-F", "SPEC" + " §")
    shared = grep("-F", "../" + "shared", "--", "README.md", "docs", "mnog", "artifact")
    names = [n for n in subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
             if re.search(words, n, re.I)]
    assert not (found or spec or shared or names), found + spec + shared + "\n".join(names)


def test_a_reference_run_keeps_the_summaries_only_and_no_local_paths(tmp_path):
    run = tmp_path / "results" / "figure6" / "cpu"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"config": {"dataset": "folder:/home/me/data/cifar10-jpeg.tar.gz"}}')
    for name in ("figure6.csv", "claims.json", "claims.md", "figure6.png", "fits.npz", ".done"):
        (run / name).write_text("x")
    (run / "run.json").write_text('{"command": ["/home/me/mnog/.venv/bin/python", "-m", "artifact.x"], "wall_s": 3}')
    copied = docs.copy_reference(tmp_path / "results", "cpu", ["figure6"], tmp_path / "reference")
    assert sorted(p.name for p in copied) == ["claims.json", "claims.md", "config.json", "figure6.csv", "run.json"]
    assert (tmp_path / "reference" / "figure6" / "cpu" / "config.json").read_text() == (
        '{"config": {"dataset": "folder:PATH/cifar10-jpeg.tar.gz"}}')
    run = json.loads((tmp_path / "reference" / "figure6" / "cpu" / "run.json").read_text())
    assert run == {"command": ["python", "-m", "artifact.x"], "wall_s": 3}
    with pytest.raises(docs.UserError, match="run `make table2 PROFILE=cpu` first"):
        docs.copy_reference(tmp_path / "results", "cpu", ["table2"], tmp_path / "reference")
