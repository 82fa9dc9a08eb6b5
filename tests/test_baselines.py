"""Tests for compressm.baselines (the Baselines page's reader) on hand-made records: aggregation with the teacher's
time, verdicts (on stats.welch_difference), the paper's numbers by source, and the regularised runs' truncation."""

import numpy as np
import pytest

from compressm import baselines, distill, records
from compressm.configs import get_config

PROFILE = "cpu"
SEEDS = (8, 42, 123)


def write_record(root, name, seed, *, acc, time, size, teacher=None, history=(), reductions=(), hsvs=None):
    """A complete record of packaged config `name` (cpu profile) with the given test accuracy (fraction), training
    time (s) and final size; no training."""
    config = get_config(name, PROFILE)
    folder = records.run_dir(root, config, seed)
    with records.claimed(folder, config, seed):
        summary = {"test_acc": acc, "mean_state_size": size, "final_state_sizes": [size], "train_time_s": time,
                   "wall_time_s": 2 * time, "steps_done": config.steps}
        metrics = records.metrics_record(config, seed, status="complete", recurrence="conv", summary=summary,
                                         history=history, reductions=reductions, teacher=teacher)
        records.save_run(folder, metrics, hsvs or {}, {"params": {"w": np.full(1, seed, np.float32)}})
    return folder


def fake_runs(root):
    """Three seeds of every sMNIST config of the page at N = 28 and of the full model, with made-up numbers:
    CompreSSM clearly ahead of distillation, the regularised run truncated at step 9500."""
    rng = np.random.default_rng(0)
    for seed in SEEDS:
        teacher = write_record(root, "smnist_baseline", seed, acc=0.90, time=400.0, size=256)
        identity = distill.identity_of(teacher, get_config("smnist_baseline", PROFILE), seed)
        write_record(root, "smnist_tau0.02", seed, acc=0.88 + 0.002 * rng.normal(), time=380.0, size=27)
        write_record(root, "smnist_scratch_n28", seed, acc=0.86 + 0.002 * rng.normal(), time=300.0, size=28)
        write_record(root, "smnist_distill_n28", seed, acc=0.84 + 0.002 * rng.normal(), time=350.0, size=28,
                     teacher=identity)
        hsvs = {records.hsv_key(step, 0): np.linspace(10, 1, 256) * (1 + step / 1e4) for step in (0, 5000, 9500)}
        history = [{"step": 9250, "val_acc": 0.85}, {"step": 9500, "val_acc": 0.86, "val_acc_after_reduction": 0.80},
                   {"step": 10000, "val_acc": 0.855}]
        reductions = [{"step": 9500, "block": 0, "old_size": 256, "new_size": 28, "hsv_key": records.hsv_key(9500, 0),
                       "discarded_energy": 0.05, "error_bound": 1.0}]
        write_record(root, "smnist_hankel_n28", seed, acc=0.85 + 0.002 * rng.normal(), time=4000.0, size=28,
                     history=history, reductions=reductions, hsvs=hsvs)
    return root


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return fake_runs(tmp_path_factory.mktemp("runs"))


def test_run_table_adds_the_teachers_time_to_a_distillation_run(runs_root):
    runs = baselines.run_table(runs_root)
    assert len(runs) == 5 * len(SEEDS) and set(runs.profile) == {PROFILE}
    students = runs[runs.method == "distillation"]
    assert (students.time_s == 750.0).all() and (students.teacher_time_s == 400.0).all()
    assert set(students.teacher) == {f"smnist_baseline seed {seed}" for seed in SEEDS}
    others = runs[runs.method != "distillation"]
    assert (others.time_s == others.train_time_s).all()


def test_a_replaced_teacher_leaves_the_pipeline_time_unknown(tmp_path):
    root = fake_runs(tmp_path)
    folder = records.run_dir(root, get_config("smnist_baseline", PROFILE), 8)
    (folder / "params.msgpack").write_bytes(b"another teacher")
    students = baselines.run_table(root).query("method == 'distillation'").set_index("seed")
    assert np.isnan(students.loc[8, "time_s"]) and students.loc[8, "teacher"].endswith("(record replaced since)")
    assert students.loc[42, "time_s"] == 750.0


def test_aggregate_speed_is_the_full_models_time_over_the_methods(runs_root):
    agg = baselines.aggregate(baselines.run_table(runs_root)).set_index("config")
    assert agg.loc["smnist_baseline", "speed"] == 1.0
    assert agg.loc["smnist_distill_n28", "speed"] == pytest.approx(400 / 750)
    assert agg.loc["smnist_hankel_n28", "speed"] == pytest.approx(0.1)
    assert agg.loc["smnist_tau0.02", "n"] == 3 and agg.loc["smnist_tau0.02", "seeds"] == "8 42 123"


def test_verdicts_and_the_ranking(runs_root):
    table = baselines.verdicts(baselines.run_table(runs_root)).set_index(["method", "against"])
    assert table.loc[("distillation", "compressm"), "verdict"] == "CompreSSM ahead"
    assert table.loc[("distillation", "scratch"), "verdict"] == "from scratch ahead"
    hankel = table.loc[("regularisation", "compressm")]
    assert hankel["time ratio"] == pytest.approx(4000 / 380, abs=0.01)
    assert hankel["paper difference (source)"] == "-1.1 (unverified secondary summary)"
    assert table.loc[("regularisation", "scratch"), "paper difference (source)"] == (  # scratch: Table 2
        "-0.2 (unverified secondary summary, against the paper)")
    text = baselines.ranking_text(table.reset_index())
    assert "Hankel regularisation**: on accuracy the ranking holds" in text
    assert "CompreSSM trains 10.53x faster" in text


def test_published_numbers_carry_their_sources():
    paper = baselines.published()
    kd = paper[(paper.source == "authors") & (paper["size"] == 58)].iloc[0]
    assert kd.accuracy == pytest.approx(79.37, abs=0.005) and kd.n == 5  # the authors' top-3 mean
    assert kd.accuracy_std == pytest.approx(np.std([76.13, 79.13, 79.76, 79.23, 78.89], ddof=1))
    assert set(paper.source) == {"paper", "authors", "secondary"}
    table6 = paper[(paper.source == "secondary") & (paper.method == "regularisation")].iloc[0]
    assert (table6.table, table6.accuracy, table6.speed) == (6, 95.8, 0.06)


def test_side_by_side_and_truncations(runs_root):
    runs = baselines.run_table(runs_root)
    table = baselines.side_by_side(baselines.aggregate(runs), baselines.published())
    row = table[(table.config == "smnist_hankel_n28")].iloc[0]
    assert row["paper (source)"] == "95.8 at N = 28, 0.06x (secondary, Table 6)"
    assert row["ours: speed"] == "0.10x" and "(3 seeds)" in row["ours: accuracy %"]
    assert (table[table.config == "smnist_distill_n47"]["ours: accuracy %"] == "-").all()
    cut = baselines.truncations(runs)
    assert len(cut) == 3 and (cut.step == 9500).all() and list(cut.val_after) == pytest.approx([80.0] * 3)
    assert list(cut.discarded_energy) == pytest.approx([5.0] * 3) and (cut.final_size == 28).all()  # % and N
    assert (cut.hsv_weight == f"{get_config('smnist_hankel_n28').objective.hsv_weight:g}").all()
    totals = baselines.hsv_totals(runs[runs.method == "regularisation"].path.iloc[0], rank=28)
    assert list(totals.step) == [0, 5000, 9500] and (totals.beyond < 1).all()


def test_missing_commands_list_teachers_first(tmp_path):
    commands = baselines.missing_commands(PROFILE, root=tmp_path)
    assert commands[0] == "python -m compressm reproduce --config smnist_baseline --profile cpu --seeds 8 42 123"
    assert commands[-1].startswith("python -m compressm reproduce --config smnist_hankel_n28")
