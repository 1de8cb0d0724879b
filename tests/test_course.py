import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from llmtap import course
from llmtap.course import BEGIN, END, STUB, course_root, drift, make_chapters, strip_solutions, student_notebook

CHECKOUT = Path(course.__file__).resolve().parent.parent


def test_strip_replaces_block_with_stub():
    src = "\n".join(["import torch", "def f(x):", f"    {BEGIN}", "    y = x + 1", "    return y",
                     f"    {END}", "print(f)"])
    out = strip_solutions(src)
    assert out.split("\n") == ["import torch", "def f(x):", "    " + STUB[0], "    " + STUB[1], "print(f)"]
    assert "x + 1" not in out


def test_strip_top_level_and_several_blocks():
    src = f"a = 1\n{BEGIN}\nb = 2\n{END}\nc = 3\n  {BEGIN}\n  d = 4\n  {END}\n"
    out = strip_solutions(src).split("\n")
    assert out == ["a = 1", *STUB, "c = 3", *("  " + s for s in STUB), ""]


def test_strip_keeps_source_without_markers():
    src = "x = 1\n# BEGIN SOLUTION is just a comment here\n\nprint(x)"
    assert strip_solutions(src) == src
    assert strip_solutions("") == ""


def test_stubbed_code_raises_not_implemented():
    src = f"def f():\n    {BEGIN}\n    return 1\n    {END}\n"
    ns = {}
    exec(strip_solutions(src), ns)
    with pytest.raises(NotImplementedError):
        ns["f"]()


@pytest.mark.parametrize("src, words", [
    (f"x = 1\n{BEGIN}\ny = 2", ["never closed"]),
    (f"{BEGIN}\n{BEGIN}\n{END}", ["line 2", "inside another"]),
    (f"x = 1\n{END}", ["line 2", "without a matching"]),
    (f"{BEGIN}\n{END}\n{END}", ["line 3"]),
])
def test_strip_errors(src, words):
    with pytest.raises(ValueError) as info:
        strip_solutions(src, where="nb.ipynb, cell 4")
    msg = str(info.value)
    assert "nb.ipynb, cell 4" in msg
    for w in words:
        assert w in msg


def _solution_notebook():
    code = new_code_cell(f"def f():\n    {BEGIN}\n    return 42\n    {END}\nf", execution_count=3,
                         outputs=[new_output("execute_result", {"text/plain": "42"}, execution_count=3)])
    md = new_markdown_cell(f"Write `f`.\n{BEGIN}\nkept in markdown\n{END}")
    plain = new_code_cell("print('hi')", execution_count=4, outputs=[new_output("stream", text="hi\n")])
    return new_notebook(cells=[md, code, plain])


def test_student_notebook_clears_outputs_and_keeps_original():
    nb = _solution_notebook()
    st = student_notebook(nb, "x.ipynb")
    md, code, plain = st.cells
    assert md.source == nb.cells[0].source                   # markdown untouched
    assert "return 42" not in code.source and STUB[1] in code.source
    assert plain.source == "print('hi')"
    for c in (code, plain):
        assert c.outputs == [] and c.execution_count is None
    assert nb.cells[1].outputs and "return 42" in nb.cells[1].source   # a copy, not in place


def test_student_notebook_error_names_cell():
    nb = new_notebook(cells=[new_code_cell("x"), new_code_cell(f"{BEGIN}\nx = 1")])
    with pytest.raises(ValueError, match="bad.ipynb, cell 1"):
        student_notebook(nb, "bad.ipynb")


def test_make_chapters_and_drift(tmp_path):
    sol, chap = tmp_path / "solutions", tmp_path / "chapters"
    sol.mkdir()
    nbformat.write(_solution_notebook(), str(sol / "01_demo.ipynb"))
    nbformat.write(new_notebook(cells=[new_code_cell("1 + 1")]), str(sol / "02_other.ipynb"))
    assert drift(sol, chap) == ["chapters/01_demo.ipynb is missing (run `python -m llmtap.course build`)",
                                "chapters/02_other.ipynb is missing (run `python -m llmtap.course build`)"]
    written = make_chapters(sol, chap)
    assert [p.name for p in written] == ["01_demo.ipynb", "02_other.ipynb"]
    assert drift(sol, chap) == []
    nb = nbformat.read(str(chap / "01_demo.ipynb"), as_version=4)
    assert "return 42" not in nb.cells[1].source
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")

    # outputs in the chapter (from `execute`) are not drift
    nb.cells[2].outputs = [new_output("stream", text="hi\n")]
    nbformat.write(nb, str(chap / "01_demo.ipynb"))
    assert drift(sol, chap) == []

    # an edited chapter is drift, named with its cell
    nb.cells[2].source = "print('edited by hand')"
    nbformat.write(nb, str(chap / "01_demo.ipynb"))
    problems = drift(sol, chap)
    assert len(problems) == 1 and "01_demo.ipynb" in problems[0] and "cell 2" in problems[0]

    # an edited solution is drift too, until the chapters are rebuilt
    assert [p.name for p in make_chapters(sol, chap)] == ["01_demo.ipynb"]     # only the edited one
    assert drift(sol, chap) == []
    nb = nbformat.read(str(chap / "01_demo.ipynb"), as_version=4)
    nb.cells[2].outputs = [new_output("stream", text="kept\n")]
    nbformat.write(nb, str(chap / "01_demo.ipynb"))
    assert make_chapters(sol, chap) == []                                      # in sync: outputs kept
    assert nbformat.read(str(chap / "01_demo.ipynb"), as_version=4).cells[2].outputs[0]["text"] == "kept\n"
    s = nbformat.read(str(sol / "02_other.ipynb"), as_version=4)
    s.cells.append(new_code_cell("2 + 2"))
    nbformat.write(s, str(sol / "02_other.ipynb"))
    problems = drift(sol, chap)
    assert len(problems) == 1 and "02_other.ipynb" in problems[0] and "cell 1" in problems[0]

    # a chapter without a solution
    nbformat.write(new_notebook(cells=[]), str(chap / "99_stray.ipynb"))
    assert "chapters/99_stray.ipynb has no solution notebook" in drift(sol, chap)


def test_chapters_in_sync_with_solutions():
    assert drift() == [], "chapters/ has drifted: run `python -m llmtap.course chapters`"


def test_check_command_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(course, "drift", lambda *folders: ["chapters/x.ipynb differs"])
    with pytest.raises(SystemExit) as info:
        course.main(["check"])
    assert info.value.code == 1
    assert "differs" in capsys.readouterr().out
    monkeypatch.setattr(course, "drift", lambda *folders: [])
    with pytest.raises(SystemExit) as info:
        course.main(["check"])
    assert info.value.code == 0


def test_every_solution_notebook_has_three_checked_exercises():
    for path in sorted((course_root() / "solutions").glob("*.ipynb")):
        cells = nbformat.read(str(path), as_version=4).cells
        code = [c.source for c in cells if c.cell_type == "code"]
        exercises = [i for i, src in enumerate(code) if BEGIN in src]
        assert len(exercises) >= 3, f"{path.name} has {len(exercises)} exercises, the course asks for 3"
        for i in exercises:   # a checker cell follows every exercise
            assert i + 1 < len(code) and "check_" in code[i + 1], f"{path.name}: exercise cell {i} has no checker cell after it"


# ----------------------------------------------------------------------------- finding the course checkout
def _fake_checkout(folder: Path) -> Path:
    (folder / "solutions").mkdir(parents=True)
    (folder / "chapters").mkdir()
    return folder


def test_course_root_is_the_checkout_around_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                           # no checkout here: found from the package
    assert course_root() == CHECKOUT
    assert (CHECKOUT / "llmtap" / "course.py").is_file()
    other = _fake_checkout(tmp_path / "elsewhere")
    assert course_root(other) == other                    # an explicit root wins
    with pytest.raises(FileNotFoundError, match="checkout of the course repository"):
        course_root(tmp_path)


def _installed_copy(tmp_path: Path) -> Path:
    """A site-packages folder with llmtap/course.py in it, as pip installs it: no solutions/ around it.
    (An empty __init__.py: the rest of the package plays no part in finding the checkout.)"""
    package = tmp_path / "site-packages" / "llmtap"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(CHECKOUT / "llmtap" / "course.py", package / "course.py")
    return package.parent


def _run_installed(site: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run([sys.executable, "-m", "llmtap.course", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_installed_package_uses_the_current_directory_or_root(tmp_path):
    site = _installed_copy(tmp_path)
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    done = _run_installed(site, nowhere, "check")
    assert done.returncode == 2
    assert "need a checkout of the course repository" in done.stderr
    assert str(site) in done.stderr and str(nowhere) in done.stderr        # says where it looked
    assert "--root" in done.stderr
    checkout = _fake_checkout(tmp_path / "course")
    nbformat.write(new_notebook(cells=[new_code_cell("1 + 1")]), str(checkout / "solutions" / "01_a.ipynb"))
    done = _run_installed(site, checkout, "check")                     # from the checkout: its notebooks
    assert done.returncode == 1 and "chapters/01_a.ipynb is missing" in done.stdout
    done = _run_installed(site, nowhere, "--root", str(checkout), "chapters")
    assert done.returncode == 0 and (checkout / "chapters" / "01_a.ipynb").is_file()
    assert _run_installed(site, nowhere, "--root", str(checkout), "check").returncode == 0


def test_saved_notebooks_carry_no_widget_state():
    nb = new_notebook(cells=[new_code_cell("explorer()"), new_code_cell("print(1)")])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.cells[0].outputs = [new_output("display_data", data={course.WIDGET_VIEW: {"model_id": "abc"},
                                                            "text/plain": "VBox(children=(...))"}),
                           new_output("stream", name="stdout", text="drawn\n")]
    nb.cells[1].outputs = [new_output("stream", name="stdout", text="1\n")]
    clean = course.without_widget_state(nb)
    assert "widgets" not in clean.metadata
    assert [o.output_type for o in clean.cells[0].outputs] == ["stream"]          # the view is gone, text stays
    assert clean.cells[1].outputs[0].text == "1\n"


def test_committed_notebooks_carry_no_widget_state():
    for path in sorted(Path(course.course_root()).glob("*/[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        assert "widgets" not in nb.metadata, f"{path} has saved widget state; run python -m llmtap.course execute"
        assert not any(course.WIDGET_VIEW in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs), f"{path} saves a widget view; run python -m llmtap.course execute"
