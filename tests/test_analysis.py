"""The ablation groups (ablations.yaml) and their configs, our runs aggregated and checked against the paper's
findings, the figures of the Ablations and dynamics pages, and reading a dynamics record. Records here are
written through the real writer with made-up summaries: they test the reading code, they are not results."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from compressm import analysis, analysis_plots, compression, dynamics, records
from compressm.configs import config_names, get_config
from compressm.findings import AS_FOUND, CONTRARY, UNTESTED
from compressm.paper import SOURCES, paper_values
from compressm.results import NBSP


def _record(root, config_name: str, seed: int, acc: float, size: float, profile: str = "cpu",
            rollbacks=(), history=(), arrays=None) -> None:
    """A complete record of (config, seed) with test accuracy `acc` and final size `size`, written by records."""
    config = get_config(config_name, profile)
    folder = records.run_dir(root, config, seed)
    summary = {"test_acc": acc, "best_val_acc": acc, "mean_state_size": size, "final_state_sizes": [size],
               "steps_done": config.steps, "train_time_s": 1.0, "wall_time_s": 2.0, "eval_time_s": 1.0,
               "reduction_time_s": 0.0}
    with records.claimed(folder, config, seed):
        metrics = records.metrics_record(config, seed, status="complete", recurrence="conv", summary=summary,
                                         history=history, rollbacks=rollbacks)
        records.save_run(folder, metrics, {}, {}, arrays)


# ---------------------------------------------------------------- the groups and their configs

def test_every_group_names_packaged_configs_known_sources_and_its_own_checks():
    names = set(config_names())
    for group in analysis.ablations().values():
        assert set(group.configs) <= names, group.name
        assert {source for source, _ in group.findings} <= set(SOURCES)
        for check in group.checks:
            assert {check.a, check.b} <= set(group.configs) and check.relation in ("same", "below", "above")
            assert check.metric in ("accuracy", "size_spread")
    for config, numbers in analysis.extra_numbers().items():
        assert config in names and numbers["source"] in SOURCES
        assert config not in paper_values(), f"{config}: Table 2/3 numbers live in paper_values.yaml only"


def test_the_selection_configs_cut_256_to_32_in_four_cuts():
    for name in ("smnist_select_largest", "smnist_select_smallest", "smnist_select_random"):
        for profile in ("paper", "cpu"):
            config = get_config(name, profile)
            sizes = [config.model.state_size]
            for _ in config.reduction.attempt_steps():
                sizes.append(compression.planned_rank(np.ones(sizes[-1]), sizes[-1], config.reduction))
            assert sizes == [256, 153, 91, 54, 32], (name, profile)
        assert config.reduction.selection == name.split("_")[-1]


@pytest.mark.parametrize("profile, window", [("paper", 200_000), ("cpu", 10_000)])
def test_attempt_counts_and_windows(profile, window):
    attempts = {name: get_config(name, profile).reduction.attempt_steps() for name in
                ("smnist_tau0.02_attempts1", "smnist_tau0.02_attempts4", "smnist_tau0.02_attempts16",
                 "smnist_tau0.02_late", "smnist_tau0.02")}
    assert [len(attempts[f"smnist_tau0.02_attempts{n}"]) for n in (1, 4, 16)] == [1, 4, 16]
    assert len(attempts["smnist_tau0.02"]) == 40
    for n in (1, 4, 16):
        assert attempts[f"smnist_tau0.02_attempts{n}"][-1] <= 0.1 * window  # the first 10 % of training
    late = attempts["smnist_tau0.02_late"]
    assert len(late) == 4 and 0.75 * window <= late[0] and late[-1] <= 0.85 * window
    for name in attempts:
        assert get_config(name, profile).reduction.tau == 0.02


def test_paper_numbers_carry_their_source():
    assert analysis.paper_numbers("smnist_tau0.02")["source"] == "paper"
    assert analysis.paper_numbers("smnist_tau0.005") | {} == {
        "accuracy": 96.9, "accuracy_std": None, "state_size": 76.3, "state_size_std": None, "source": "secondary"}
    assert analysis.paper_numbers("smnist_select_smallest") is None


# ---------------------------------------------------------------- with no runs, then with runs

def test_with_no_runs_every_row_is_there_and_the_note_gives_the_command(tmp_path):
    view = analysis.group_view("selection", tmp_path)
    assert analysis.lead_setting(view) is None
    table = analysis.group_table(view, None)
    assert list(table.config) == list(analysis.ablation("selection").configs)
    assert set(table["test accuracy %"]) == {"-"} and set(table.seeds) == {"-"}
    assert table["paper's source"].tolist() == ["the paper (Tables 2 and 3)", "-", "-", "-"]  # no C.1 numbers known
    note = analysis.missing_note("selection", tmp_path)
    assert "`smnist_select_largest` (seeds 42, 8, 123)" in note
    assert "python -m compressm reproduce --config smnist_baseline smnist_select_largest" in note
    assert note.endswith("--profile cpu --seeds 42 8 123`.")
    assert "**Not tested** yet" in analysis.verdict("selection", tmp_path)
    schedule = analysis.schedule_table("scifar_taus")
    assert schedule.loc[0, "mode"] == "no budget in this profile"
    figure = analysis_plots.group_accuracy(analysis.setting_rows(view, None), view.group)
    assert "no complete runs of ours yet" in [t.get_text() for t in figure.axes[0].texts]
    plt.close("all")


def _selection_runs(root, smallest_acc: float) -> None:
    accuracies = {"smnist_baseline": (0.900, 0.905, 0.895), "smnist_select_largest": (0.898, 0.902, 0.896),
                  "smnist_select_random": (0.85, 0.86, 0.84), "smnist_select_smallest": (smallest_acc, smallest_acc + 0.002, smallest_acc - 0.002)}
    for config, accs in accuracies.items():
        for seed, acc in zip(analysis.SEEDS, accs):
            _record(root, config, seed, acc, 256 if config == "smnist_baseline" else 32)


def test_the_selection_finding_holds_on_runs_that_show_it(tmp_path):
    _selection_runs(tmp_path, smallest_acc=0.2)
    view = analysis.group_view("selection", tmp_path)
    setting = analysis.lead_setting(view)
    checks = analysis.check_table(view, setting)
    assert checks.outcome.tolist() == [AS_FOUND] * 3
    assert checks.a[0] == pytest.approx(100 * np.mean([0.898, 0.902, 0.896]))
    sentence = analysis.verdict("selection", tmp_path)
    assert "at 10k of the paper's 200k steps (5 %, cpu profile), seeds 8, 42, 123: **Holds**" in sentence
    assert analysis.missing("selection", tmp_path) == {}
    assert analysis.missing_note("selection", tmp_path).startswith("Every configuration here has complete")
    table = analysis.group_table(view, setting)
    assert table.loc[3, "test accuracy %"] == f"20.0{NBSP}±{NBSP}0.2"
    assert table.loc[3, "state size N"] == f"32.0{NBSP}±{NBSP}0.0"
    figure = analysis_plots.group_accuracy(analysis.setting_rows(view, setting), view.group)
    assert len(figure.axes[0].texts) == 4  # the final size beside each of our four points
    plt.close("all")


def test_and_does_not_hold_on_runs_that_contradict_it(tmp_path):
    _selection_runs(tmp_path, smallest_acc=0.95)  # keeping the smallest HSVs does better than random
    view = analysis.group_view("selection", tmp_path)
    assert analysis.check_table(view, analysis.lead_setting(view)).outcome.tolist() == [AS_FOUND, AS_FOUND,
                                                                                        CONTRARY]
    assert "**Holds for 2 of 3, fails for 1**" in analysis.verdict("selection", tmp_path)


def test_one_seed_a_side_is_not_tested_and_a_missing_seed_is_named(tmp_path):
    for config in ("smnist_select_largest", "smnist_baseline"):
        _record(tmp_path, config, 42, 0.9, 32)
    view = analysis.group_view("selection", tmp_path)
    assert analysis.check_table(view, analysis.lead_setting(view)).outcome[0] == UNTESTED
    assert "`smnist_select_largest` (seeds 8, 123)" in analysis.missing_note("selection", tmp_path)


def test_smoke_runs_are_never_results(tmp_path):
    _record(tmp_path, "smnist_select_largest", 42, 0.5, 32, profile="smoke")
    view = analysis.group_view("selection", tmp_path)
    assert view.agg.empty and len(view.runs) == 1


def test_rollbacks_size_trajectories_and_the_spread_of_sizes(tmp_path):
    history = [{"step": 250 * k, "state_sizes": [s]} for k, s in enumerate([256, 230, 207, 230, 230], 1)]
    _record(tmp_path, "smnist_pragmatic", 42, 0.8, 230, rollbacks=[{"step": 1000, "val_acc": 0.7}], history=history)
    _record(tmp_path, "smnist_pragmatic", 8, 0.8, 20, history=history)
    table = analysis.rollback_table("smnist_pragmatic", tmp_path)
    assert table["rollback at step"].tolist() == ["none", 1000] and table["val. accuracy then %"][1] == "70.0"
    view = analysis.group_view("pragmatic", tmp_path)
    assert analysis.check_table(view, analysis.lead_setting(view)).outcome.tolist() == ["-"]  # no tolerance runs
    runs = {"pragmatic": analysis.result_records("smnist_pragmatic", tmp_path)}
    figure = analysis_plots.size_trajectories(runs)
    assert len(figure.axes[0].lines) == 3  # two runs and one rollback marker
    plt.close("all")
    _record(tmp_path, "smnist_pragmatic", 123, 0.8, 120)
    for seed, size in zip(analysis.SEEDS, (190, 195, 188)):
        _record(tmp_path, "smnist_tau0.001", seed, 0.8, size)
    view = analysis.group_view("pragmatic", tmp_path)
    check = analysis.check_table(view, analysis.lead_setting(view))
    assert check.outcome.tolist() == [AS_FOUND] and check.interval[0].startswith("ratio")


def test_tau_curve_draws_ours_and_the_papers(tmp_path):
    for config, acc, size in [("smnist_tau0.001", 0.9, 190), ("smnist_tau0.02", 0.88, 25), ("smnist_baseline", 0.9,
                                                                                              256)]:
        _record(tmp_path, config, 42, acc, size)
    view = analysis.group_view("taus", tmp_path)
    figure = analysis_plots.tau_curve(analysis.setting_rows(view, analysis.lead_setting(view)),
                                      [c for c in view.group.configs if "_tau" in c],
                                      [c for c in view.group.configs if "_scratch" in c], "smnist_baseline",
                                      ours_label="ours (cpu)")
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "compressed in training, ours (cpu)" in labels
    assert "compressed in training, paper" in labels  # Table 2's tau runs
    assert "compressed in training, unverified secondary summary" in labels  # tau = 0.001, 0.005
    plt.close("all")


# ---------------------------------------------------------------- a dynamics record

def _fake_trace(n: int = 8, records_: int = 6, every: int = 50) -> dict:
    """A synthetic trace in the layout of `dynamics.arrays`: HSVs that grow, small bounds, identity matches."""
    steps = np.arange(records_) * every
    hsv = np.linspace(10.0, 0.1, n)[None, None, :] * (1 + steps / 100.0)[:, None, None]
    bounds = np.r_[np.nan, np.full(records_ - 1, 0.01)][:, None]
    return {"step": steps, "hsv": hsv, "bound_step": bounds, "bound_interval": 5 * bounds,
            "match": np.tile(np.arange(n), (records_, 1, 1))}


def test_a_dynamics_record_is_found_summarised_and_drawn(tmp_path):
    assert analysis.dynamics_record(tmp_path) is None
    assert len(analysis_plots.dynamics_panels(None).axes) == 4  # the page's figure without a run
    arrays = _fake_trace()
    _record(tmp_path, "smnist_dynamics", 42, 0.5, 256, arrays=arrays)
    run, found = analysis.dynamics_record(tmp_path)
    assert run.path.endswith("cpu/smnist_dynamics/seed_42") and run.seed == 42
    np.testing.assert_equal(found, arrays)
    summary = dynamics.summary(found, at_steps=(0, 100, 999))
    assert summary.step.tolist() == [0, 100]
    margin = dynamics.cut_margin(found)
    assert np.isnan(margin[0]) and np.all(margin[1:] > 1)
    text = dynamics.reading(found, after_step=100)
    assert "at 100 % of the records" in text
    figure = analysis_plots.dynamics_panels(found)
    assert len(figure.axes) == 4
    plt.close("all")
