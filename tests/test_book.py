"""The product end to end, as a reader meets it after `make book` on a fresh clone: the committed runs plus smoke
runs made through the training notebook, the book built from them, and every page read in a real browser
(headless Chromium): no smoke run in a results table, no raw MyST on any page, no machine path, every figure
loaded, the Table 2 page's rows, the links the book promises.
"""

import re
import shutil
from pathlib import Path

import pytest

from conftest import SHARED_DATA, needs_mnist

from compressm import links
from compressm.errors import DataError
from compressm.experiment import build_book, reproduce
from compressm.records import REPO
from compressm.paper import table_configs
from compressm.results import config_label

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    needs_mnist,
]
RESULT_PAGES = ["intro", "table2", "table3", "tradeoffs", "baselines", "hsv_spectra", "one_run"]
RAW_MYST = re.compile(r"```|\{code-cell\}|\{literalinclude\}|\{(doc|ref|cite:[tp]|download|glue:text)\}`|^:::",
                      re.MULTILINE)
OUTSIDE_LINKS = re.compile(r"https://(arxiv\.org/abs/2510\.02823|github\.com/(camail-official/compressm"
                           r"|facebookincubator/submitit))/?$")  # the paper, the authors' code, a tool the book cites
MACHINE_PATH = re.compile(r"(?<![\w.])/(tmp|work|home|root|Users|private|var/folders)/|file:/")


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """The committed runs copied into a runs folder, smoke runs added beside them, and the book built from it."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(REPO / "runs", root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("smoke"))
    outcome = reproduce(table_configs(2), seeds=(42,), profile="smoke", root=root, data_dir=SHARED_DATA, jobs=2,
                        build=False)
    assert (outcome.status == "complete").all(), outcome
    for name in table_configs(2):  # each run keeps its executed notebook beside its record
        assert (root / "smoke" / name / "seed_42" / "train.ipynb").is_file()
    return root, build_book(root, output=tmp_path_factory.mktemp("book"))


def test_reproduce_skips_complete_runs(built_book):
    root, _ = built_book
    again = reproduce(table_configs(2), seeds=(42,), profile="smoke", root=root, data_dir=SHARED_DATA, build=False)
    assert set(again.status) == {"skipped (complete)"}


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _open(browser, page: Path) -> None:
    """Load a page and wait (up to 30 s) until its body holds the page's article: on a loaded machine headless
    Chromium can return from `get` before the DOM is there (a test once found no links at all on a page)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(Path(page).as_uri())
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "article"))


def _pages(html: Path) -> list[Path]:
    return sorted((Path(html) / "book").glob("*.html"))


def test_every_page_reads_clean_in_headless_chromium(built_book, browser):
    """No page shows raw MyST or a machine path, and every image on it has loaded."""
    from selenium.webdriver.common.by import By

    root, html = built_book
    pages = _pages(html)
    assert {p.stem for p in pages} >= set(RESULT_PAGES) | {"train", "reproducing", "speed", "api", "method"}
    for page in pages:
        _open(browser, page)
        text = browser.find_element(By.TAG_NAME, "article").get_attribute("textContent")
        assert not RAW_MYST.search(text), f"{page.name} shows raw MyST: {RAW_MYST.search(text).group(0)!r}"
        assert not MACHINE_PATH.search(text) and str(root) not in text, \
            f"{page.name} shows a machine path near {text[max(0, MACHINE_PATH.search(text).start() - 60):][:120]!r}"
        assert "lent GPU" not in text and "of this project" not in text, page.name  # the project's own machines
        assert "jaxlib" not in text and "_jax." not in text, page.name  # private type names
        for image in browser.find_elements(By.CSS_SELECTOR, "article img"):
            width = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
            assert width and width > 0, f"{page.name}: {image.get_attribute('src')} did not load"
        # a figure cell that printed nothing drops its figure, caption and all: every named figure must be there
        source = next((REPO / "book").glob(f"{page.stem}.*")).read_text()
        for name in re.findall(r"^\s+name: (fig-[\w-]+)", source, re.MULTILINE):
            images = browser.find_elements(By.CSS_SELECTOR, f"figure#{name} img")
            assert images, f"{page.name}: figure {name} has no image"


def test_no_results_table_has_a_smoke_row_and_the_plumbing_check_is_one_collapsed_line(built_book, browser):
    from selenium.webdriver.common.by import By

    _, html = built_book
    for name in RESULT_PAGES:
        _open(browser, Path(html) / "book" / f"{name}.html")
        for row in browser.find_elements(By.CSS_SELECTOR, "article table tbody tr"):
            text = row.get_attribute("textContent")
            assert "smoke" not in text, f"{name}: a results table row shows a smoke run: {text!r}"
    _open(browser, Path(html) / "book" / "table2.html")
    notes = browser.find_elements(By.CSS_SELECTOR, "article .admonition.dropdown")
    assert [n.find_element(By.CSS_SELECTOR, ".admonition-title").get_attribute("textContent").strip()
            for n in notes] == ["Plumbing check: passed"]


def test_table2_page_leads_with_verdicts_and_has_a_row_per_configuration(built_book, browser):
    from selenium.webdriver.common.by import By

    _, html = built_book
    _open(browser, Path(html) / "book" / "table2.html")
    assert "Table 2" in browser.title
    headings = [h.get_attribute("textContent").strip("#¶ \n").replace("\u2019", "'")
                for h in browser.find_elements(By.CSS_SELECTOR, "article h2")]
    assert headings[:2] == ["Verdict", "At the paper's budget"], headings
    rows = [row.get_attribute("textContent") for row in browser.find_elements(By.CSS_SELECTOR, "table tbody tr")]
    for name in table_configs(2):
        matching = [r for r in rows if config_label(name) in r]
        assert matching, f"no table row for {name}"
        assert any(re.search(r"\d+\.\d\u00a0±\u00a0\d+\.\d|\d+\.\d \(1\u00a0seed\)", r) for r in matching), matching


def test_no_link_leaves_the_book_but_to_the_paper_the_authors_code_and_references(built_book, browser):
    """Nor to the repository while its address is unset; the executed notebooks are in the site, to view and
    to download, and so is the training notebook."""
    from selenium.webdriver.common.by import By

    root, html = built_book
    leaving, repository = {}, links.repository_url() or "no address"
    for page in _pages(html):
        _open(browser, page)
        hrefs = browser.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")
        if page.stem == "intro":
            assert {"https://arxiv.org/abs/2510.02823", "https://github.com/camail-official/compressm"} <= set(hrefs)
        leaving[page.name] = {h for h in hrefs if re.match(r"https?:", h) and not OUTSIDE_LINKS.match(h)
                              and not h.startswith(repository)}
    assert not any(leaving.values()), {page: hrefs for page, hrefs in leaving.items() if hrefs}
    for notebook in root.glob("smoke/*/seed_42/train.ipynb"):
        copy = Path(html) / links.NOTEBOOKS / notebook.relative_to(root)
        assert copy.is_file() and copy.with_suffix(".html").is_file(), copy
    page = Path(html) / "book" / "train.html"
    _open(browser, page)
    hrefs = [a.get_attribute("href") or "" for a in browser.find_elements(By.TAG_NAME, "a")]
    downloads = [h for h in hrefs if "/_downloads/" in h and h.endswith("/train.ipynb")]
    assert downloads, f"no download link to the notebook on {page}; links: {hrefs}"
    assert Path(downloads[0].removeprefix("file://")).is_file()


def test_missing_data_stops_reproduce_before_any_run(tmp_path):
    with pytest.raises(DataError, match="smnist data not found"):
        reproduce(["smnist_baseline"], seeds=(1,), profile="smoke", root=tmp_path,
                  data_dir=tmp_path / "no-data-here", build=False)
    assert list(tmp_path.iterdir()) == []  # no failed records for runs that never started
