"""The built book holds what it links: a Sphinx extension (`sphinx: extra_extensions` in _config.yml).

- Every executed training notebook under the runs folder (`<runs>/**/train.ipynb`) goes into the site at
  `runs/<its path under the runs folder>`, as a page (`train.html`, rendered by nbconvert, with nothing loaded
  from outside the site) beside a copy to download; `links.notebook_link` links both.
- The repository's header button and the pages' launch buttons exist only while `repository.url` is set. The
  launch buttons (the Binder and Colab addresses of `launch_buttons` in _config.yml) open `launch/<page>.ipynb`,
  the page as a notebook after an install cell, which the build writes into the repository: Colab and Binder
  read it from there, so it is committed with the page.
"""

import shutil
from pathlib import Path

import nbformat
from sphinx.util import logging

from compressm import links, records

NOTEBOOK = "train.ipynb"
LAUNCH = records.REPO / "launch"
_LOG = logging.getLogger(__name__)
_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""  # JupyterLab's look, without require.js, MathJax or Mermaid from a CDN (no maths or diagrams here)
_INSTALL = """# On Colab, or wherever compressm is not installed: fetch this companion (library and run records) and
# install it. Binder has installed it already: there this cell does nothing.
import importlib.util, os, subprocess, sys

if importlib.util.find_spec("compressm") is None:
    subprocess.run(["git", "clone", "--depth", "1", "--branch", "{branch}", "{url}", "companion"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "requirements.txt"], cwd="companion",
                   check=True)
    sys.path.insert(0, os.path.abspath("companion"))"""


def render_notebooks(root: Path, site: Path) -> int:
    """Write each `root/**/train.ipynb` to `site/runs/<path under root>`, rendered as `train.html` beside a copy of
    the notebook; notebooks whose copy is up to date are skipped. Returns how many were written."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", template_file="offline.html.j2",
                            extra_loaders=[DictLoader({"offline.html.j2": _OFFLINE_TEMPLATE})])
    written = 0
    for notebook in sorted(root.glob(f"**/{NOTEBOOK}")):
        copy = site / links.NOTEBOOKS / notebook.relative_to(root)
        if copy.is_file() and copy.stat().st_mtime >= notebook.stat().st_mtime:
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.with_suffix(".html").write_text(exporter.from_filename(str(notebook))[0])
        shutil.copy2(notebook, copy)
        written += 1
    return written


def launch_notebook(page: Path, url: str, branch: str) -> nbformat.NotebookNode:
    """A book page (MyST .md or .ipynb) as a notebook without outputs, after a cell that installs the companion
    from repository `url` at `branch` where it is not installed."""
    from myst_nb.core.read import read_myst_markdown_notebook

    if page.suffix == ".md":
        notebook = read_myst_markdown_notebook(page.read_text(), path=page)
    else:
        notebook = nbformat.read(page, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook.cells.insert(0, nbformat.v4.new_code_cell(_INSTALL.format(url=url, branch=branch)))
    return notebook


def launch_buttons(url: str, branch: str, launch_path: str, hubs: dict) -> list[dict]:
    """The header's launch buttons (sphinx-book-theme's format) opening `launch_path` (relative to the repository
    root) of GitHub repository `url` on Binder and Colab, for the hubs set in `hubs` (`launch_buttons`)."""
    repository = url.removeprefix("https://github.com/")
    addresses = {
        "Binder": hubs.get("binderhub_url") and
        f"{hubs['binderhub_url'].rstrip('/')}/v2/gh/{repository}/{branch}?urlpath=lab/tree/{launch_path}",
        "Colab": hubs.get("colab_url") and
        f"{hubs['colab_url'].rstrip('/')}/github/{repository}/blob/{branch}/{launch_path}",
    }
    icons = {"Binder": "_static/images/logo_binder.svg", "Colab": "_static/images/logo_colab.png"}
    return [{"type": "link", "text": name, "tooltip": f"Launch on {name}", "icon": icons[name], "url": address}
            for name, address in addresses.items() if address]


def _launch_path(docname: str) -> Path:
    return LAUNCH / f"{docname}.ipynb"


def _take_over_buttons(app, config) -> None:
    """The repository button only where the address is set; the launch buttons are ours (the theme's would open
    the .md source, which Colab cannot read), so the theme gets none."""
    options = config.html_theme_options
    options["use_repository_button"] = bool(links.repository_url())
    config.launch_hubs = options.pop("launch_buttons", {})


def _write_launch_notebooks(app, env) -> None:
    """With the address set, launch/<page>.ipynb for every page that is a notebook."""
    if links.repository_url():
        for docname in env.found_docs:
            if "kernelspec" in env.metadata[docname] or env.doc2path(docname).endswith(".ipynb"):
                _launch_path(docname).parent.mkdir(parents=True, exist_ok=True)
                notebook = launch_notebook(Path(env.doc2path(docname)), links.repository_url(),
                                           links.repository_branch())
                nbformat.write(notebook, _launch_path(docname))


def _add_launch_buttons(app, pagename, templatename, context, doctree) -> None:
    if links.repository_url() and _launch_path(pagename).is_file():
        buttons = launch_buttons(links.repository_url(), links.repository_branch(),
                                 str(_launch_path(pagename).relative_to(records.REPO)), app.config.launch_hubs)
        context["header_buttons"].append({"type": "group", "tooltip": "Launch interactive content",
                                          "icon": "fas fa-rocket", "buttons": buttons, "label": "launch-buttons"})


def _add_notebooks(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        count = render_notebooks(records.runs_root().resolve(), Path(app.outdir))
        _LOG.info(f"executed notebooks: {count} rendered into {links.NOTEBOOKS}/")


def setup(app):
    """Register the extension with Sphinx."""
    app.add_config_value("launch_hubs", {}, "html")
    app.connect("config-inited", _take_over_buttons)
    app.connect("env-updated", _write_launch_notebooks)
    app.connect("html-page-context", _add_launch_buttons, priority=502)  # after the theme's own buttons
    app.connect("build-finished", _add_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
