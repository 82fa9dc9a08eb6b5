"""Where the book points to: the repository (its address is written once, as `repository.url` in _config.yml,
and read from there), and links to files in it."""

from functools import cache

import yaml

from compressm.records import REPO

BOOK_CONFIG = REPO / "_config.yml"


@cache
def _repository() -> dict:
    return yaml.safe_load(BOOK_CONFIG.read_text())["repository"]


def repository_url() -> str:
    """The repository's address, from `repository.url` in _config.yml."""
    return _repository()["url"].rstrip("/")


def pages_url() -> str:
    """Where GitHub Pages publishes the book: https://<owner>.github.io/<name>/ for github.com/<owner>/<name>."""
    owner, name = repository_url().removeprefix("https://github.com/").split("/")[:2]
    return f"https://{owner}.github.io/{name}/"


def file_url(path: str) -> str:
    """The address of a file of the repository (path relative to its root) on the branch the book is built from."""
    return f"{repository_url()}/blob/{_repository().get('branch', 'main')}/{path}"


def file_link(path: str) -> str:
    """A Markdown link to a file of the repository, its text the path."""
    return f"[{path}]({file_url(path)})"
