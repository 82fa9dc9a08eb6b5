"""What the built book links and holds (compressm.links, compressm.site): the repository only where its address is
set, every executed notebook inside the site and offline, launch notebooks that install before the page runs."""

import re
from types import SimpleNamespace

import nbformat
import pytest

from compressm import links, site
from compressm.records import REPO


@pytest.fixture
def book_config(tmp_path, monkeypatch):
    """Write a _config.yml for links to read: book_config('url: ...')."""
    def write(repository: str):
        path = tmp_path / "_config.yml"
        path.write_text(f"title: x\nrepository:\n  {repository}\n")
        monkeypatch.setattr(links, "BOOK_CONFIG", path)
        links._repository.cache_clear()
    yield write
    links._repository.cache_clear()


@pytest.mark.parametrize("line, url", [('url: ""', ""), ("url:", ""),
                                       ("url: https://github.com/o/n/", "https://github.com/o/n")])
def test_the_repository_address_is_read_from_the_book_config_and_empty_means_unset(book_config, line, url):
    book_config(line)
    assert links.repository_url() == url and links.repository_branch() == "main"


def test_the_repository_button_exists_only_where_the_address_is_set_and_the_launch_buttons_are_the_sites(book_config):
    for line, shown in (('url: ""', False), ("url: https://github.com/o/n", True)):
        book_config(line)
        hubs = {"binderhub_url": "https://mybinder.org", "colab_url": ""}
        config = SimpleNamespace(html_theme_options={"launch_buttons": dict(hubs)})
        site._take_over_buttons(None, config)
        assert config.html_theme_options == {"use_repository_button": shown} and config.launch_hubs == hubs


def test_a_notebook_link_points_into_the_site_from_a_page():
    assert links.notebook_link("runs/cpu/a@b=1/seed_8/train.ipynb") == (
        '<a href="../runs/cpu/a%40b%3D1/seed_8/train.html">view</a> · '
        '<a href="../runs/cpu/a%40b%3D1/seed_8/train.ipynb" download>download</a>')


def test_executed_notebooks_are_rendered_into_the_site_with_nothing_loaded_from_outside(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Training notebook"),
        nbformat.v4.new_code_cell("print('accuracy')", outputs=[nbformat.v4.new_output("stream", text="accuracy\n")]),
    ])
    run = tmp_path / "runs" / "cpu" / "smnist_tau0.02@reduction.tau=0.05" / "seed_8"
    run.mkdir(parents=True)
    nbformat.write(notebook, run / "train.ipynb")
    out = tmp_path / "html"
    assert site.render_notebooks(tmp_path / "runs", out) == 1
    copy = out / "runs" / run.relative_to(tmp_path / "runs") / "train.ipynb"
    html = copy.with_suffix(".html").read_text()
    assert "accuracy" in html and "Training notebook" in html
    assert not re.search(r"""((src|href)=["']?|import\(["'])(https?:)?//""", html)  # offline: nothing from a CDN
    assert nbformat.read(copy, as_version=4) == notebook
    assert site.render_notebooks(tmp_path / "runs", out) == 0  # up to date: not rendered again


def test_a_launch_notebook_is_the_page_after_an_install_cell():
    page = REPO / "book" / "method.md"
    launch = site.launch_notebook(page, "https://github.com/o/n", "main")
    install, *cells = launch.cells
    assert '"--branch", "main", "https://github.com/o/n", "companion"' in install.source
    assert 'find_spec("compressm") is None' in install.source
    code = [cell.source for cell in cells if cell.cell_type == "code"]
    assert code[0].startswith("import jax") and "jax_enable_x64" in code[0]
    assert all(cell.outputs == [] for cell in cells if cell.cell_type == "code")
    notebook = site.launch_notebook(REPO / "book" / "train.ipynb", "https://github.com/o/n", "dev")
    assert any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells)


def test_launch_buttons_open_the_launch_notebook_on_binder_and_colab():
    hubs = {"binderhub_url": "https://mybinder.org/", "colab_url": "https://colab.research.google.com"}
    buttons = site.launch_buttons("https://github.com/o/n", "main", "launch/book/method.ipynb", hubs)
    assert [(b["text"], b["url"]) for b in buttons] == [
        ("Binder", "https://mybinder.org/v2/gh/o/n/main?urlpath=lab/tree/launch/book/method.ipynb"),
        ("Colab", "https://colab.research.google.com/github/o/n/blob/main/launch/book/method.ipynb")]
    only_colab = site.launch_buttons("https://github.com/o/n", "main", "x", {"binderhub_url": "", "colab_url": "c"})
    assert [b["text"] for b in only_colab] == ["Colab"]
