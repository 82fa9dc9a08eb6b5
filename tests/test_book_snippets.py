"""Every snippet the book shows is complete: the visible code cells of the Method and API pages, run in a fresh
kernel outside the book, give the numbers their text states, and the README's Python snippet prints what the
README says it prints."""

import re
import subprocess
import sys

import pytest
from myst_nb.core.read import read_myst_markdown_notebook
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from compressm.records import REPO

HIDDEN = {"remove-cell", "remove-input"}  # tags of cells whose code the page does not show
STATED = re.compile(r"the layer keeps (\d+) of its (\d+) states")


@pytest.mark.parametrize("page", ["method", "api"])
def test_the_visible_cells_of_a_page_give_its_numbers_in_a_fresh_kernel(page, tmp_path):
    text = (REPO / "book" / f"{page}.md").read_text()
    kept, states = STATED.search(text).groups()
    notebook = read_myst_markdown_notebook(text)
    notebook.cells = [cell for cell in notebook.cells
                      if cell.cell_type == "code" and not HIDDEN & set(cell.metadata.get("tags", []))]
    notebook.cells.append(new_code_cell("print(lru.state_size(params), lru.state_size(reduced))"))
    NotebookClient(notebook, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert notebook.cells[-1].outputs[0].text.split() == [states, kept]


def test_the_readme_snippet_runs_and_prints_what_the_readme_says(tmp_path):
    readme = (REPO / "README.md").read_text()
    code, printed = re.search(r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", readme, re.DOTALL).groups()
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == printed
