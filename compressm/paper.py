"""What the paper reports: which configs make up Tables 2 and 3, and the published numbers (paper_values.yaml).

This module is the one place that says which config is a table's baseline, which are its compressed (tau) runs
and which from-scratch run each of those is compared with. The values are shown BESIDE our measurements in the
book, never in place of them.
"""

from functools import cache
from importlib import resources
from typing import Literal, NamedTuple

import yaml

from compressm.errors import ConfigError

Role = Literal["baseline", "compressed", "scratch"]
SOURCES = {  # where a number or finding on the paper's side comes from: every one names its source
    "paper": "the paper (Tables 2 and 3)",
    "figure": "read off the paper's Fig. 2 (approximate)",
    "authors": "the authors' code",
    "secondary": "a secondary summary of the paper, not verified against it",
}
SOURCE_TAGS = {"paper": "paper", "figure": "paper's Fig. 2", "authors": "authors' code",
               "secondary": "unverified secondary summary"}  # the same, short, for legends and table cells


class PaperTable(NamedTuple):
    """The configs of one of the paper's LRU tables."""

    baseline: str
    compressed: tuple[str, ...]  # the tau runs, by increasing tau
    scratch: tuple[str, ...]  # trained from scratch at the size compressed[i] reaches in the paper


TABLES: dict[int, PaperTable] = {
    2: PaperTable("smnist_baseline", ("smnist_tau0.01", "smnist_tau0.02", "smnist_tau0.04"),
                  ("smnist_scratch_n47", "smnist_scratch_n28", "smnist_scratch_n13")),
    3: PaperTable("scifar_baseline", ("scifar_tau0.05", "scifar_tau0.10", "scifar_tau0.15"),
                  ("scifar_scratch_n161", "scifar_scratch_n93", "scifar_scratch_n57")),
}
SEEDS: dict[int, tuple[int, ...]] = {
    2: (8, 42, 123, 456, 789, 101, 202, 303, 404, 505),
    3: (8, 42, 123, 456, 789),
}


def paper_table(table: int) -> PaperTable:
    """The configs of a paper table (2: sMNIST, 3: sCIFAR)."""
    if table not in TABLES:
        raise ConfigError(f"unknown table {table}; the paper's LRU tables are 2 (sMNIST) and 3 (sCIFAR)")
    return TABLES[table]


def table_configs(table: int) -> tuple[str, ...]:
    """Config names of a paper table in the paper's row order: baseline, tau runs, then from-scratch runs."""
    t = paper_table(table)
    return (t.baseline, *t.compressed, *t.scratch)


def scratch_partners(table: int) -> dict[str, str]:
    """Each tau run of a table -> the from-scratch run at the size the paper's tau run reaches."""
    t = paper_table(table)
    return dict(zip(t.compressed, t.scratch))


def table_of(config: str) -> int:
    """The paper table that config `config` belongs to."""
    for table in TABLES:
        if config in table_configs(table):
            return table
    raise ConfigError(f"config {config!r} is in no paper table (2 or 3); give its seeds with --seeds")


def role(config: str) -> Role:
    """What a table's config is: the baseline, a compressed (tau) run, or a run trained from scratch."""
    t = paper_table(table_of(config))
    return "baseline" if config == t.baseline else ("compressed" if config in t.compressed else "scratch")


@cache
def _published() -> dict:
    return yaml.safe_load(resources.files("compressm").joinpath("paper_values.yaml").read_text())


def paper_values() -> dict[str, dict]:
    """Published numbers per config name: accuracy (%), accuracy_std, state_size, state_size_std, speedup."""
    return _published()["configs"]


def baseline_values() -> list[dict]:
    """The published numbers of the paper's baselines (distillation, Hankel regularisation), each labelled by its
    source (see the `baselines:` section of paper_values.yaml)."""
    return _published()["baselines"]


def hsv_picture() -> dict:
    """The paper's HSV picture: init_low/high, trained_low/high (HSV ranges), growth_from/to_steps,
    energy_flat_after_steps."""
    return _published()["hsv_picture"]


def hsv_picture_text() -> str:
    """The paper's HSV picture in words, its numbers from `hsv_picture`."""
    h = hsv_picture()
    return (f"HSVs growing from about {h['init_low']}-{h['init_high']} at initialisation to about "
            f"{h['trained_low']}-{h['trained_high']} after {h['growth_from_steps'] // 1000}-"
            f"{h['growth_to_steps'] // 1000}k steps and then levelling off, while the share of the energy held by the"
            f" smallest HSVs stays flat after about {h['energy_flat_after_steps'] // 1000}k steps")


def table_values(table: int) -> dict[str, dict]:
    """The published numbers of a table's configs (as `paper_values`), in the paper's row order."""
    return {name: paper_values()[name] for name in table_configs(table)}
