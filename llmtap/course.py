"""Course tooling for instructors: solutions/ is the single source of every notebook.

    python -m llmtap.course chapters            # regenerate chapters/ from solutions/
    python -m llmtap.course execute [NB ...]    # run notebooks in place, refreshing their outputs
    python -m llmtap.course build               # both, for every notebook
    python -m llmtap.course check               # exit 1 if chapters/ has drifted from solutions/

In a solution notebook, the code of an exercise sits between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` (the nbgrader convention). The student copy replaces it with a stub that
raises ``NotImplementedError``; the checker cell catches that and says "not solved yet", so the
student notebook still runs top to bottom.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", 'raise NotImplementedError("exercise not solved yet")')
ROOT = Path(__file__).resolve().parent.parent


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


def _read(path):
    import nbformat
    return nbformat.read(str(path), as_version=4)


def make_chapters(solutions_dir=ROOT / "solutions", chapters_dir=ROOT / "chapters") -> list[Path]:
    """Write chapters/NAME.ipynb for every solutions/NAME.ipynb whose cells it does not match yet;
    returns the written paths.

    A chapter already in sync is left alone, outputs and all. A written one has its outputs
    cleared: run ``execute`` on it afterwards to refresh them.
    """
    import nbformat
    chapters_dir = Path(chapters_dir)
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


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def drift(solutions_dir=ROOT / "solutions", chapters_dir=ROOT / "chapters") -> list[str]:
    """Why chapters/ differs from what solutions/ generates (an empty list when in sync)."""
    problems = []
    sol = {p.name: p for p in Path(solutions_dir).glob("*.ipynb")}
    chap = {p.name: p for p in Path(chapters_dir).glob("*.ipynb")}
    problems += [f"chapters/{n} is missing (run `python -m llmtap.course build`)" for n in sorted(set(sol) - set(chap))]
    problems += [f"chapters/{n} has no solution notebook" for n in sorted(set(chap) - set(sol))]
    for name in sorted(set(sol) & set(chap)):
        want, have = _cells(student_notebook(_read(sol[name]), name)), _cells(_read(chap[name]))
        if want != have:
            first = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
            problems.append(f"chapters/{name} differs from solutions/{name} at cell {first}")
    return problems


def execute(paths, timeout: int = 600) -> None:
    """Run each notebook top to bottom in its own folder and save it with fresh outputs."""
    import nbformat
    from nbclient import NotebookClient
    for path in map(Path, paths):
        nb = _read(path)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(nb, str(path))
        print(f"executed {path} in {time.perf_counter() - t0:.1f} s", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["chapters", "execute", "build", "check"])
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args(argv)
    if args.command == "check":
        problems = drift()
        print("\n".join(problems) or "chapters/ is in sync with solutions/")
        sys.exit(1 if problems else 0)
    if args.command in ("chapters", "build"):
        written = make_chapters()
        print(f"wrote {len(written)} chapter notebooks: {[p.name for p in written]}")
    if args.command == "execute":
        execute(args.notebooks or sorted((ROOT / "solutions").glob("*.ipynb")) + sorted((ROOT / "chapters").glob("*.ipynb")))
    if args.command == "build":
        execute(args.notebooks or sorted((ROOT / "solutions").glob("*.ipynb")) + written)


if __name__ == "__main__":
    main()
