"""Course tooling for instructors: solutions/ is the single source of every notebook.

    python -m llmtap.course chapters            # regenerate chapters/ from solutions/
    python -m llmtap.course execute [NB ...]    # run notebooks in place, refreshing their outputs
    python -m llmtap.course build               # both, for every notebook
    python -m llmtap.course check               # exit 1 if chapters/ has drifted from solutions/
    python -m llmtap.course --root PATH check   # the same, for the course checkout at PATH

The tools work on a checkout of the course repository, the folder holding solutions/ and
chapters/: ``--root PATH`` when given, else the checkout around this package, else the current
directory.

In a solution notebook, the code of an exercise sits between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` (the nbgrader convention). The student copy replaces it with a stub that
raises ``NotImplementedError``; the checker cell catches that and says "not solved yet", so the
student notebook still runs top to bottom.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

from .widgets import STATIC_COPY

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", 'raise NotImplementedError("exercise not solved yet")')


def course_root(root=None) -> Path:
    """The course checkout: ``root`` when given, else the checkout this package sits in, else the
    current directory; the first of them that holds both solutions/ and chapters/.

    A pip-installed llmtap sits in site-packages, not in a checkout: the tools then need to be run
    from the checkout (or told where it is), since the notebooks are not part of the package."""
    candidates = [Path(root)] if root is not None else [Path(__file__).resolve().parent.parent, Path.cwd()]
    for folder in candidates:
        if (folder / "solutions").is_dir() and (folder / "chapters").is_dir():
            return folder
    raise FileNotFoundError(f"the course tools need a checkout of the course repository (a folder with "
                            f"solutions/ and chapters/); looked in {', '.join(map(str, candidates))}. "
                            f"Run them from the checkout, or pass --root PATH")


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace each BEGIN/END SOLUTION block of ``source`` by the stub, at the marker's indentation."""
    out, inside, indent = [], False, ""
    for n, line in enumerate(source.split("\n"), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {n}: '{BEGIN}' inside another solution block")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in STUB]
        elif marker == END:
            if not inside:
                raise ValueError(f"{where}, line {n}: '{END}' without a matching '{BEGIN}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '{BEGIN}' is never closed by '{END}'")
    return "\n".join(out)


def student_notebook(nb, name: str = "notebook"):
    """A copy of solution notebook ``nb`` with every solution stubbed out and all outputs cleared."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, f"{name}, cell {i}")
            cell.outputs, cell.execution_count = [], None
    return nb


# nbformat and nbclient are optional (the package's test extras): they are imported in the
# functions that read, write or run notebooks, so that importing llmtap never needs them.
def _read(path):
    import nbformat
    return nbformat.read(str(path), as_version=4)


def make_chapters(solutions_dir=None, chapters_dir=None) -> list[Path]:
    """Write chapters/NAME.ipynb for every solutions/NAME.ipynb whose cells it does not match yet;
    returns the written paths. The folders default to those of ``course_root()``.

    A chapter already in sync is left alone, outputs and all. A written one has its outputs
    cleared: run ``execute`` on it afterwards to refresh them.
    """
    import nbformat
    solutions_dir, chapters_dir = _folders(solutions_dir, chapters_dir)
    chapters_dir.mkdir(exist_ok=True)
    written = []
    for src in sorted(Path(solutions_dir).glob("*.ipynb")):
        dst = chapters_dir / src.name
        student = student_notebook(_read(src), src.name)
        if dst.is_file() and _cells(_read(dst)) == _cells(student):
            continue
        nbformat.write(student, str(dst))
        written.append(dst)
    return written


def _folders(solutions_dir, chapters_dir) -> tuple[Path, Path]:
    """(solutions_dir, chapters_dir), each defaulting to its folder in the course checkout."""
    if solutions_dir is None or chapters_dir is None:
        root = course_root()
        solutions_dir = root / "solutions" if solutions_dir is None else solutions_dir
        chapters_dir = root / "chapters" if chapters_dir is None else chapters_dir
    return Path(solutions_dir), Path(chapters_dir)


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def drift(solutions_dir=None, chapters_dir=None) -> list[str]:
    """Why chapters/ differs from what solutions/ generates (an empty list when in sync).
    The folders default to those of ``course_root()``."""
    solutions_dir, chapters_dir = _folders(solutions_dir, chapters_dir)
    problems = []
    sol = {p.name: p for p in solutions_dir.glob("*.ipynb")}
    chap = {p.name: p for p in chapters_dir.glob("*.ipynb")}
    problems += [f"chapters/{n} is missing (run `python -m llmtap.course build`)" for n in sorted(set(sol) - set(chap))]
    problems += [f"chapters/{n} has no solution notebook" for n in sorted(set(chap) - set(sol))]
    for name in sorted(set(sol) & set(chap)):
        want, have = _cells(student_notebook(_read(sol[name]), name)), _cells(_read(chap[name]))
        if want != have:
            first = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
            problems.append(f"chapters/{name} differs from solutions/{name} at cell {first}")
    return problems


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def without_widget_state(nb):
    """``nb`` with no saved widget state: neither the widgets' models (notebook metadata) nor the
    outputs that only point at them. Saved, they show as "Error displaying widget" in JupyterLab
    and as a text repr on GitHub; a running kernel builds the widgets afresh anyway."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
    return nb


def execute(paths, timeout: int = 600) -> None:
    """Run each notebook top to bottom in its own folder and save it with fresh outputs (and no
    widget state)."""
    import nbformat
    from nbclient import NotebookClient
    os.environ[STATIC_COPY] = "1"        # the kernels inherit it: every explorer saves a static figure too
    for path in map(Path, paths):
        nb = _read(path)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        # the client keeps widget state while it runs (its Output-widget hook needs it); none is saved
        nbformat.write(without_widget_state(nb), str(path))
        print(f"executed {path} in {time.perf_counter() - t0:.1f} s", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None, help="the course checkout (default: found as described above)")
    ap.add_argument("command", choices=["chapters", "execute", "build", "check"])
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args(argv)
    try:
        root = course_root(args.root)
    except FileNotFoundError as e:
        ap.error(str(e))
    solutions, chapters = root / "solutions", root / "chapters"
    if args.command == "check":
        problems = drift(solutions, chapters)
        print("\n".join(problems) or "chapters/ is in sync with solutions/")
        sys.exit(1 if problems else 0)
    if args.command in ("chapters", "build"):
        written = make_chapters(solutions, chapters)
        print(f"wrote {len(written)} chapter notebooks: {[p.name for p in written]}")
    if args.command == "execute":
        execute(args.notebooks or sorted(solutions.glob("*.ipynb")) + sorted(chapters.glob("*.ipynb")))
    if args.command == "build":
        execute(args.notebooks or sorted(solutions.glob("*.ipynb")) + written)


if __name__ == "__main__":
    main()
