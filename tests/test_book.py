"""The product end to end: smoke runs through the training notebook, the book built from them, and the Table 2
page checked in a real browser (headless Chromium): a row per configuration with numbers, and its figures loaded.
"""

import re
import shutil
from pathlib import Path

import pytest

from conftest import SHARED_DATA, needs_mnist

from compressm.errors import DataError
from compressm.experiment import build_book, reproduce
from compressm.paper import table_configs

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    needs_mnist,
]


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
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


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_table2_page_in_headless_chromium(built_book):
    _, html = built_book
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get((Path(html) / "book" / "table2.html").as_uri())
        assert "Table 2" in driver.title
        rows = [row.text for row in driver.find_elements(By.CSS_SELECTOR, "table tbody tr")]
        for name in table_configs(2):
            matching = [r for r in rows if re.search(rf"\b{re.escape(name)}\b", r) and "smoke profile" in r]
            assert matching, f"no table row for {name}"
            assert re.search(r"\d+\.\d ± \d+\.\d|\d+\.\d \(1 seed\)", matching[0]), matching[0]
        images = driver.find_elements(By.CSS_SELECTOR, "figure img, .cell_output img")
        assert images, "the page has no figures"
        for image in images:
            width = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
            assert width and width > 0, image.get_attribute("src")
    finally:
        driver.quit()


def test_missing_data_stops_reproduce_before_any_run(tmp_path):
    with pytest.raises(DataError, match="smnist data not found"):
        reproduce(["smnist_baseline"], seeds=(1,), profile="smoke", root=tmp_path,
                  data_dir=tmp_path / "no-data-here", build=False)
    assert list(tmp_path.iterdir()) == []  # no failed records for runs that never started
