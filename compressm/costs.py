"""What the paper's tables cost on a GPU, read from the records: GPU-hours per configuration, measured where a
full-length GPU run of it exists, else estimated as steps x the time of one training step (`compressm bench`).

An estimate counts training steps only (not evaluation, reductions or recompilation). A compressed (tau) run
is timed at the full state size up to its last reduction attempt and at the size the paper reports it
reaching afterwards (its from-scratch partner's size, `paper.scratch_partners`); for sMNIST, whose attempts run
to the end, that is the full size throughout (an upper bound).
"""

import numpy as np
import pandas as pd

from compressm import records
from compressm.configs import RunConfig, get_config
from compressm.lru import choose_recurrence
from compressm.paper import SEEDS, scratch_partners, table_configs
from compressm.results import load_bench

COLUMNS = ["config", "hardware", "steps", "ms_per_step", "estimate_h", "seeds", "estimate_total_h", "measured_h",
           "measured_runs"]


def _shape(config: RunConfig) -> tuple:
    """What a step's time depends on: data set, batch, blocks, width H, state size N, and the number of steps."""
    m = config.model
    return config.dataset, config.batch_size, m.num_blocks, m.width, m.state_size, config.steps


def step_phases(name: str, table: int) -> list[tuple[int, int]]:
    """[(steps, state size N), ...] that a paper-profile run of config `name` trains through (see the module)."""
    config = get_config(name)
    partner = scratch_partners(table).get(name)
    if partner is None:
        return [(config.steps, config.model.state_size)]
    last = max(config.reduction.attempt_steps())
    return [(last, config.model.state_size), (config.steps - last, get_config(partner).model.state_size)]


def _measured(root) -> pd.DataFrame:
    """Complete paper-profile GPU runs whose config has its packaged config's shape (`_shape`): any overrides
    (e.g. model.norm) leave the work of a step alone. Columns: config, hardware, wall_time_s, run."""
    runs = records.load_runs(records.runs_root(root))
    runs = runs[(runs.status == "complete") & (runs.profile == "paper")]
    keep = [hardware.startswith("gpu") and _shape(records.stored_identity(path)[0]) == _shape(get_config(name))
            for name, path, hardware in zip(runs.config, runs.path, runs.hardware)]
    runs = runs[np.array(keep, dtype=bool)]
    label = [f"{name}{'@' + o if o else ''} seed {s}" for name, o, s in zip(runs.config, runs.overrides, runs.seed)]
    return runs.assign(run=label)[["config", "hardware", "wall_time_s", "run"]]


def gpu_hours(table: int, root=None) -> pd.DataFrame:
    """GPU-hours of a paper table (2 or 3), one row per config and GPU: estimated from step records, measured from runs.

    Columns (COLUMNS): the milliseconds of a training step (step-weighted mean over `step_phases`), the estimated
    GPU-hours of one run and of the table's seeds (`paper.SEEDS`), and the measured wall-clock hours of
    full-length runs (mean; NaN where none) with the runs named.
    """
    bench = load_bench(root)
    bench = bench[(bench.kind == "train_step") & bench.hardware.str.startswith("gpu")]
    measured = _measured(root)
    rows = []
    for hardware in sorted(set(bench.hardware) | set(measured.hardware)):
        for name in table_configs(table):
            config = get_config(name)
            here = bench[(bench.hardware == hardware) & (bench.dataset == config.dataset)
                         & (bench.recurrence == choose_recurrence("gpu", config.model.width))
                         & (bench.width == config.model.width) & (bench.batch == config.batch_size)]
            ms = here.set_index("state_size").median_ms
            phases = step_phases(name, table)
            total_ms = sum(steps * ms.get(n, np.nan) for steps, n in phases)
            runs = measured[(measured.config == name) & (measured.hardware == hardware)]
            rows.append({"config": name, "hardware": hardware, "steps": config.steps,
                         "ms_per_step": total_ms / config.steps, "estimate_h": total_ms / 3.6e6,
                         "seeds": len(SEEDS[table]), "estimate_total_h": len(SEEDS[table]) * total_ms / 3.6e6,
                         "measured_h": runs.wall_time_s.mean() / 3600 if len(runs) else np.nan,
                         "measured_runs": ", ".join(runs.run)})
    return pd.DataFrame(rows, columns=COLUMNS)
