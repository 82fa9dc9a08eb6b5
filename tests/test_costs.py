"""Tests for compressm.costs: GPU-hours of the paper's tables from benchmark and run records (written here)."""

import json

import numpy as np
import pytest

from compressm import costs, records, tables
from compressm.configs import get_config

GPU = "gpu: Test GPU"
STEP_MS = {384: 40.0, 161: 30.0, 93: 25.0, 57: 20.0}  # sCIFAR step times by state size N


def _write_bench(root, hardware: str, width: int = 512, batch: int = 50, slower: float = 1.0) -> None:
    folder = root / "bench" / f"{hardware.split(':')[0]}-{width}"
    folder.mkdir(parents=True, exist_ok=True)
    for n, ms in STEP_MS.items():
        ms *= slower
        record = {"name": f"train_step/scifar/associative/N{n}", "state_size": n, "width": width, "batch": batch,
                  "median_s": ms / 1e3, "environment": {"hardware": hardware, "commit": "abcdef0"}, "date": "today"}
        (folder / f"train_step__scifar__associative__N{n}.json").write_text(json.dumps(record))


def _write_run(root, overrides: dict, seed: int, wall_time_s: float, hardware: str) -> None:
    config = get_config("scifar_tau0.05", "paper", overrides)
    with records.claimed(records.run_dir(root, config, seed), config, seed) as folder:
        summary = {"wall_time_s": wall_time_s, "train_time_s": wall_time_s, "steps_done": config.steps}
        records.save_run(folder, records.metrics_record(config, seed, status="complete", summary=summary), {}, {})
    metrics = json.loads((folder / records.METRICS).read_text())
    metrics["environment"]["hardware"] = hardware
    (folder / records.METRICS).write_text(json.dumps(metrics))


def test_step_phases_time_a_compressed_run_at_full_size_until_its_last_attempt():
    assert costs.step_phases("scifar_baseline", 3) == [(180_000, 384)]
    assert costs.step_phases("scifar_tau0.05", 3) == [(18_000, 384), (162_000, 161)]  # attempts at 4.5k ... 18k
    assert costs.step_phases("smnist_tau0.02", 2) == [(200_000, 256), (0, 28)]  # attempts to the end


def test_gpu_hours_estimate_from_step_records_and_measure_full_length_gpu_runs(tmp_path):
    _write_bench(tmp_path, GPU)
    _write_bench(tmp_path, GPU, width=256, slower=9)  # another model shape: not used
    _write_bench(tmp_path, "cpu: 2-core CPU", slower=99)  # not a GPU: not used
    _write_run(tmp_path, {"model.norm": "batch"}, 1, 7200.0, GPU)  # same work per step: counted
    _write_run(tmp_path, {"model.norm": "batch"}, 2, 3600.0, "cpu: 2-core CPU")  # not a GPU
    _write_run(tmp_path, {"model.state_size": 64}, 3, 60.0, GPU)  # another shape
    hours = costs.gpu_hours(3, tmp_path).set_index("config")
    assert list(hours.columns) == costs.COLUMNS[1:] and (hours.hardware == GPU).all()
    assert hours.loc["scifar_baseline", "estimate_h"] == pytest.approx(180_000 * 0.040 / 3600, rel=1e-12)
    tau = hours.loc["scifar_tau0.05"]
    assert tau.estimate_h == pytest.approx((18_000 * 0.040 + 162_000 * 0.030) / 3600, rel=1e-12)
    assert tau.ms_per_step == pytest.approx(1e3 * tau.estimate_h * 3600 / 180_000, rel=1e-12)
    assert tau.estimate_total_h == pytest.approx(5 * tau.estimate_h, rel=1e-12) and tau.seeds == 5
    assert tau.measured_h == 2.0 and tau.measured_runs == "scifar_tau0.05@model.norm=batch seed 1"
    assert np.isnan(hours.loc["scifar_baseline", "measured_h"]) and hours.loc["scifar_baseline", "measured_runs"] == ""
    title, table = tables.gpu_hours_outputs(3, tmp_path)  # one GPU: one sentence and one table, in words
    assert title.data.startswith("**Table 3** on GPU (Test GPU)") and "x 5 seeds of 180k steps (estimate)." in title.data
    html = table.to_html()
    assert "hardware" not in html and "hours per run (measured)" in html and ">2.00<" in html and ">-<" in html


def test_gpu_hours_without_records_is_empty(tmp_path):
    assert costs.gpu_hours(2, tmp_path).empty
    [note] = tables.gpu_hours_outputs(2, tmp_path)
    assert note.data == "**Table 2**: no GPU records in this runs folder yet."
