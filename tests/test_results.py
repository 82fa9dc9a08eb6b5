"""Reading records back for the book: benchmark records from where `compressm bench` writes them, an empty runs
folder, and what the book prints about itself (the API table, escaped table text)."""

import os
import re

import pandas as pd
import pytest

from compressm import apidoc, bench, results, tables
from compressm.errors import CompressmError
from compressm.paper import table_configs
from fakes import write_fake_run


def test_bench_writes_its_records_where_results_reads_them(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSM_RUNS", str(tmp_path))
    measured = {"median_s": 0.5, "state_size": 8}
    fake = [("streaming/smnist/N8", lambda repeats: measured)]
    monkeypatch.setattr(bench, "_benchmarks", lambda backend, authors=None: fake)
    (record,) = bench.run_benchmarks(repeats=1)  # writes through the real writer, measures nothing
    (folder,) = results.bench_root().iterdir()
    assert folder.parent == tmp_path / "bench" and record["name"] == "streaming/smnist/N8"
    frame = results.load_bench()
    assert frame.name.tolist() == ["streaming/smnist/N8"] and frame.median_ms.tolist() == [500.0]
    assert 0 <= record["other_cores"] <= 2 * os.cpu_count()  # what else ran while it was measured
    assert tables.bench_provenance(frame)["other processes (cores, at most)"].tolist() == [
        f"{record['other_cores']:.2f}"]
    with pytest.raises(CompressmError, match="no benchmark named 'no-such-benchmark'"):
        bench.run_benchmarks(only=["no-such-benchmark"])


def test_run_phases_say_what_else_ran_and_where_a_run_resumed(tmp_path):
    write_fake_run(tmp_path, "smnist_tau0.01", "paper", 42, train_time_s=2500.0, other_cpu_s=260.1, resumes=[])
    write_fake_run(tmp_path, "smnist_tau0.02", "paper", 42, other_cpu_s=0.0, resumes=[100000])
    write_fake_run(tmp_path, "smnist_tau0.04", "paper", 42)  # a record from before both were kept
    write_fake_run(tmp_path, "smnist_tau0.02", "cpu", 42)  # another profile
    phases = tables.run_phases("paper", tmp_path)
    assert phases.config.tolist() == [f"smnist_tau0.0{k}" for k in (1, 2, 4)] and phases.seed.tolist() == [42] * 3
    assert phases["others (cores)"].tolist() == ["0.10", "0.00", "not recorded"]  # 260.1 s / 2501 s
    assert phases["resumed at"].tolist() == ["-", "100000", "not recorded"]
    assert phases["wall-clock"][0] == "41.7\u00a0min" and phases.training[0] == "41.7\u00a0min"
    write_fake_run(tmp_path, "smnist_baseline", "paper", 42, hardware="gpu: Test GPU")
    cpu_title, cpu, gpu_title, gpu = tables.run_phase_outputs("paper", tmp_path)  # one table per hardware
    assert (cpu_title.data, gpu_title.data) == ("**CPU (2 cores)**", "**GPU (Test GPU)**")
    assert "hardware" not in cpu.data.columns and gpu.data.config.tolist() == ["smnist_baseline"]


def test_an_empty_runs_folder_shows_the_commands_that_make_the_runs(tmp_path):
    view = results.table_view(2, tmp_path)
    assert view.agg.empty and view.settings.empty and results.lead_setting(view) is None
    for paper_budget, profile in ((True, "paper"), (False, "cpu")):
        (note,) = tables.section_outputs(view, paper_budget)
        assert results.reproduce_command(2, profile) in note.data
    panels = results.figure_panels(view, True)
    assert len(panels) == 1 and panels[0][1] is None and set(panels[0][2]) == set(table_configs(2))


def test_the_api_table_shows_no_machine_paths_or_private_type_names():
    table = apidoc.api_table(["lru", "reduction", "experiment", "results", "findings"])
    text = table.to_string()
    assert not re.search(r"/work/|/tmp/|/home/|jaxlib|_jax\.", text)
    [row] = [call for call in table.call if call.startswith("experiment.reproduce(")]
    assert "notebook='book/train.ipynb'" in row
    assert all(not s.endswith(("the", "a", "of", ",")) for s in table["what it does"] if s)  # whole paragraphs


def test_run_times_are_one_table_per_setting_the_papers_budget_first(tmp_path):
    write_fake_run(tmp_path, "smnist_tau0.01", "cpu", 42, train_time_s=100.0)
    write_fake_run(tmp_path, "smnist_tau0.01", "cpu", 8, train_time_s=300.0)
    write_fake_run(tmp_path, "smnist_tau0.01", "paper", 42, hardware="gpu: NVIDIA H100 80GB HBM3")
    write_fake_run(tmp_path, "smnist_scratch_n28", "paper", 42)
    outputs = tables.run_time_outputs(tmp_path)
    labels = [item.data for item in outputs[::2]]
    assert labels[0].startswith("**`paper` profile · CPU (2 cores)") and "GPU (NVIDIA H100" in labels[1]
    assert labels[2].startswith("**`cpu` profile · CPU (2 cores)") and len(labels) == 3
    cpu = outputs[5].data  # the Styler's frame; 3.3 min: the mean of 100 s and 300 s
    assert cpu.config.tolist() == ["smnist_tau0.01"] and cpu.runs.tolist() == [2]
    assert cpu["training time per run"].item() == "3.3\u00a0min" and "profile" not in cpu.columns
    assert cpu["fastest run"].item() == "101\u00a0s"  # wall-clock: training + 1 s in the fakes


def test_styled_tables_escape_text_and_show_a_dash_for_missing_values():
    html = tables.styled(pd.DataFrame({"where": ["runs/<profile>/"], "value": [float("nan")]})).to_html()
    assert "&lt;profile&gt;" in html and ">-<" in html


def test_styled_tables_name_the_hardware_in_words_once():
    raw = ["cpu: 2-core CPU", "gpu: NVIDIA H100 80GB HBM3", "CPU (2 cores)"]  # the last is labelled already
    html = tables.styled(pd.DataFrame({"hardware": raw, "ms": [1.0, 2.0, 3.0]})).to_html()
    assert "cpu: 2-core" not in html and "gpu: NVIDIA" not in html
    assert html.count("CPU (2 cores)") == 2 and "GPU (NVIDIA H100 80GB HBM3)" in html
    assert results.hardware_label("CPU (2 cores)") == "CPU (2 cores)"


def test_the_most_other_load_of_several_runs_says_how_many_recorded_it():
    nan = float("nan")
    assert tables.most_cores_label([0.1, 0.4]) == "0.40"
    assert tables.most_cores_label([nan, 0.4]) == "≥ 0.40 (1 of 2 recorded)"
    assert tables.most_cores_label([nan, nan]) == "not recorded"
