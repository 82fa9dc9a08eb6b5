"""Reading records back for the book: benchmark records from where `compressm bench` writes them, and a paper
table's runs from a runs folder."""

import pytest

from compressm import bench, results
from compressm.errors import CompressmError
from compressm.paper import table_configs


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
    with pytest.raises(CompressmError, match="no benchmark named 'no-such-benchmark'"):
        bench.run_benchmarks(only=["no-such-benchmark"])


def test_an_empty_runs_folder_misses_every_config_of_a_table(tmp_path):
    assert results.table_aggregate(2, tmp_path).empty
    note = results.missing_note(2, "cpu", tmp_path)
    assert all(name in note for name in table_configs(2))
    assert results.reproduce_command(2, "cpu") in note
