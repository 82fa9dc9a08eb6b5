"""Where the book points to: the repository, whose address is written once, as `repository.url` in _config.yml
(empty while the repository has no public address: the book then links nothing there), and the executed
notebooks, which are part of the built site (`compressm.site` puts them there)."""

from functools import cache
from urllib.parse import quote

import yaml

from compressm.records import REPO

BOOK_CONFIG = REPO / "_config.yml"
NOTEBOOKS = "runs"  # the site's folder of executed notebooks, laid out as the runs folder
PAGE_TO_SITE = ".."  # from a page of the book (book/<page>.html) to the site's root


@cache
def _repository() -> dict:
    return yaml.safe_load(BOOK_CONFIG.read_text()).get("repository") or {}


def repository_url() -> str:
    """The repository's address, from `repository.url` in _config.yml; '' while it is unset."""
    return (_repository().get("url") or "").rstrip("/")


def repository_branch() -> str:
    """The branch the book is built from (`repository.branch`, default main)."""
    return _repository().get("branch") or "main"


def notebook_link(path: str) -> str:
    """Links, for a page of the book, to an executed notebook in the site: 'runs/cpu/x/seed_8/train.ipynb' (its path
    in the repository: the runs folder's layout) -> 'view · download' (raw HTML: the page and the file)."""
    target = f"{PAGE_TO_SITE}/{NOTEBOOKS}/{quote(path.removeprefix(NOTEBOOKS + '/'))}"
    return (f'<a href="{target.removesuffix(".ipynb")}.html">view</a> · '
            f'<a href="{target}" download>download</a>')
