"""Write a notebook from a list of cells: a tiny helper for authoring solution notebooks.

    from nbbuild import md, code, write
    write("solutions/00_x.ipynb", [md("# Title"), code("print(1)")])

Once written, the .ipynb in solutions/ is the source; this helper only saves typing JSON.
"""
import textwrap

import nbformat


def md(text):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text):
    return nbformat.v4.new_code_cell(textwrap.dedent(text).strip("\n"))


def write(path, cells):
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
