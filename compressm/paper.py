"""What the paper reports: which configs make up Tables 2 and 3, and the published numbers (paper_values.yaml).

These values are shown BESIDE our measurements in the book, never in place of them.
"""

from functools import cache
from importlib import resources

import yaml

from compressm.errors import ConfigError

TABLES: dict[int, tuple[str, ...]] = {
    2: ("smnist_baseline", "smnist_tau0.01", "smnist_tau0.02", "smnist_tau0.04",
        "smnist_scratch_n47", "smnist_scratch_n28", "smnist_scratch_n13"),
    3: ("scifar_baseline", "scifar_tau0.05", "scifar_tau0.10", "scifar_tau0.15",
        "scifar_scratch_n161", "scifar_scratch_n93", "scifar_scratch_n57"),
}
SEEDS: dict[int, tuple[int, ...]] = {
    2: (8, 42, 123, 456, 789, 101, 202, 303, 404, 505),
    3: (8, 42, 123, 456, 789),
}


def table_configs(table: int) -> tuple[str, ...]:
    """Config names of a paper table (2: sMNIST, 3: sCIFAR): baseline, tau runs, then from-scratch runs."""
    if table not in TABLES:
        raise ConfigError(f"unknown table {table}; the paper's LRU tables are 2 (sMNIST) and 3 (sCIFAR)")
    return TABLES[table]


@cache
def paper_values() -> dict[str, dict]:
    """Published numbers per config name: accuracy (%), accuracy_std, state_size, state_size_std, speedup."""
    text = resources.files("compressm").joinpath("paper_values.yaml").read_text()
    return yaml.safe_load(text)["configs"]
