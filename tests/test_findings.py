"""The paper's claims on fake run folders: which runs count, settings and variants, verdict rules, the
speedups that step times imply."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from fakes import write_fake_run

from compressm import findings, results, stats, tables
from compressm.paper import table_configs
from compressm.results import NBSP

ACC = {"smnist_baseline": 0.97, "smnist_tau0.01": 0.965, "smnist_tau0.02": 0.962, "smnist_tau0.04": 0.96,
       "smnist_scratch_n47": 0.95, "smnist_scratch_n28": 0.93, "smnist_scratch_n13": 0.90}
SIZE = {"smnist_tau0.01": 46.0, "smnist_tau0.02": 27.0, "smnist_tau0.04": 12.0}


def fake_table2(root, profile="cpu", seeds=(8, 42, 123), **kwargs):
    for name in table_configs(2):
        for i, seed in enumerate(seeds):
            write_fake_run(root, name, profile, seed, test_acc=ACC[name] + 0.001 * i, state_size=SIZE.get(name),
                           train_time_s=100.0 if name == "smnist_baseline" else 50.0, **kwargs)


def test_smoke_and_unfinished_runs_never_enter_a_table(tmp_path):
    fake_table2(tmp_path)
    for name in table_configs(2):
        write_fake_run(tmp_path, name, "smoke", 42, test_acc=0.07)
    write_fake_run(tmp_path, "smnist_tau0.02", "cpu", 7, status="failed", test_acc=float("nan"))
    view = results.table_view(2, tmp_path)
    assert set(view.agg.profile) == {"cpu"} and list(view.settings.profile) == ["cpu"]
    assert view.agg.n_seeds.tolist() == [3] * 7  # the failed seed 7 is not counted
    note = results.plumbing_note(view.runs)
    assert "Plumbing check: passed" in note and ":class: dropdown" in note
    provenance = tables.provenance(view)
    assert "smoke" not in set(provenance.profile)
    assert provenance[provenance.configuration == "smnist_tau0.02"]["not counted"].item() == "7 (failed)"
    for _, setting in view.settings.iterrows():
        assert "0.07" not in tables.accuracy_table(view, setting).to_string()


def test_variants_are_separate_settings_labelled_and_canonical_runs_come_first(tmp_path):
    fake_table2(tmp_path, norm=None)  # written before model.norm existed: trained with batch statistics
    fake_table2(tmp_path, seeds=(1, 2))
    view = results.table_view(2, tmp_path)
    assert view.settings.variant.tolist() == ["", "model.norm=batch"]
    assert "BatchNorm rule: batch (flax), earlier runs" in view.settings.label.iloc[1]
    assert "current defaults" in view.settings.label.iloc[0]
    runs = results.book_runs(tmp_path)
    assert runs.canonical.sum() == 14 and (~runs.canonical).sum() == 21


def test_paper_budget_settings_lead(tmp_path):
    fake_table2(tmp_path)
    write_fake_run(tmp_path, "smnist_tau0.02", "paper", 42, hardware="gpu: NVIDIA H100 80GB HBM3")
    view = results.table_view(2, tmp_path)
    assert view.settings.paper_budget.tolist() == [True, False]
    assert "the paper's budget" in view.settings.label.iloc[0] and "GPU" in view.settings.label.iloc[0]
    assert results.lead_setting(view).profile == "cpu"  # the first with a full model and a compressed run
    assert results.showcase_run(view).profile == "paper"


def test_tables_show_the_mean_with_its_interval_and_the_papers_statistic_on_our_seeds(tmp_path):
    fake_table2(tmp_path, seeds=(1, 2, 3))
    view = results.table_view(2, tmp_path)
    setting = view.settings.iloc[0]
    table = tables.accuracy_table(view, setting)
    base = table[table.configuration.str.startswith("full model")]
    values = 100 * np.array([0.97, 0.971, 0.972])
    low, high = scipy_stats.t.interval(0.95, 2, values.mean(), values.std(ddof=1) / np.sqrt(3))
    assert base["test accuracy %, mean [95 % interval]"].item() == f"{values.mean():.1f} [{low:.1f},\u00a0{high:.1f}]"
    assert base["sd"].item() == f"{values.std(ddof=1):.1f}"
    statistic = "paper's statistic on our seeds %"
    assert base[statistic].item() == f"{values.mean():.1f}\u00a0±\u00a0{values.std():.1f} (all 3)"
    timing = tables.timing_table(view, setting)
    assert timing["speedup over the full model"].tolist() == ["1.00x"] + ["2.00x"] * 6
    assert "paper speedup (GPU)" not in timing.columns  # the paper reports no sMNIST speedups

    fake_table2(tmp_path, seeds=(4, 5))
    view = results.table_view(2, tmp_path)
    row = tables.accuracy_table(view, view.settings.iloc[0]).iloc[0]
    values = 100 * np.array([0.97, 0.971, 0.972, 0.97, 0.971])
    assert row[statistic] == f"{np.sort(values)[-3:].mean():.1f}\u00a0±\u00a0{values.std():.1f}"
    assert row["collapsed seeds"] == "none"
    fake_table2(tmp_path / "two", seeds=(1, 2))
    two = results.table_view(2, tmp_path / "two")
    assert "descriptive, 2" in tables.accuracy_table(two, two.settings.iloc[0]).iloc[0, 2]


def test_verdicts_follow_the_intervals(tmp_path):
    fake_table2(tmp_path)
    view = results.table_view(2, tmp_path)
    verdicts = findings.verdicts(view).set_index("claim").verdict
    # compressed within 1.0 points of the full model (the paper's largest loss is 1.4), above scratch everywhere
    assert verdicts.to_dict() == {"close": "Holds", "scratch": "Holds"}
    detail = findings.verdicts(view).set_index("claim").detail["close"]  # each tau's difference and interval
    assert f"τ{NBSP}={NBSP}0.01 (-0.5 [-0.5,{NBSP}-0.5])" in detail  # paired: the fakes differ by a constant
    assert f"3 seeds per configuration, 95{NBSP}% paired intervals" in detail
    frame = findings.comparison_table(view, "scratch", 0)
    assert frame.outcome.tolist() == ["compressed better"] * 3
    markdown = findings.findings_markdown({2: view, 3: results.table_view(3, tmp_path)}, results.load_bench(tmp_path))
    assert "{doc}`table2`" in markdown and "**Holds**" in markdown and "**Not tested**" in markdown


def test_seeds_that_do_not_pair_get_welch_intervals_and_an_open_comparison_says_what_would_decide_it(tmp_path):
    for name in table_configs(2):
        seeds = (1, 2, 3) if name == "smnist_baseline" else (4, 5, 6)
        for i, seed in enumerate(seeds):
            write_fake_run(tmp_path, name, "cpu", seed, test_acc=ACC[name] + 0.01 * i * (-1) ** seed,
                           state_size=SIZE.get(name))
    view = results.table_view(2, tmp_path)
    frame = findings.comparisons(view)
    close = frame[frame.claim == "close"]
    assert not any(d.paired for d in close.difference) and all(d.tested for d in close.difference)
    table = findings.comparison_table(view, "close", 0)
    assert any("seeds a side would decide it" in outcome for outcome in table.outcome)


def test_one_seed_verdicts_give_the_difference_without_an_interval(tmp_path):
    fake_table2(tmp_path, seeds=(42,))
    found = findings.verdicts(results.table_view(2, tmp_path)).set_index("claim")
    assert found.verdict["close"] == "Not tested"
    assert f"τ{NBSP}={NBSP}0.04 (-1.0)" in found.detail["close"]
    assert "1 seed per configuration, no interval from one seed" in found.detail["close"]
    assert found.detail["close"].startswith("the difference alone at") and "not tested" not in found.detail["close"]


def test_outcome_rules():
    d = lambda low, high: stats.Difference((low + high) / 2, low, high, 3.0, 3, 3)
    untested = stats.Difference(1.0, float("nan"), float("nan"), float("nan"), 1, 3)
    assert findings.drop_outcome(d(-1.0, 0.5), 1.4) == "within the paper's losses"
    assert findings.drop_outcome(d(-3.0, 0.5), 1.4) == "not resolved"
    assert findings.drop_outcome(d(-3.0, -2.0), 1.4) == "larger loss than the paper's"
    assert findings.beats_outcome(d(0.1, 2.0)) == "compressed better"
    assert findings.beats_outcome(d(-2.0, -0.1)) == "scratch better"
    assert findings.beats_outcome(d(-2.0, 2.0)) == "not resolved"
    assert findings.beats_outcome(untested) == findings.drop_outcome(untested, 1.4) == findings.UNTESTED
    assert findings.verdict({"a": "compressed better", "b": "not resolved", "c": "not resolved"}) == \
        "Holds for 1 of 3, unresolved for 2"
    assert findings.verdict({"a": "scratch better", "b": "compressed better"}) == "Holds for 1 of 2, fails for 1"
    assert findings.verdict({"a": findings.UNTESTED}) == findings.verdict({}) == "Not tested"
    assert findings.claim_margin(2) == pytest.approx(1.4) and findings.claim_margin(3) == pytest.approx(2.1)


def test_implied_speedups_from_step_times():
    ms = {384: 40.0, 161: 30.0, 93: 25.0, 57: 20.0}
    bench = pd.DataFrame([{"kind": "train_step", "dataset": "scifar", "recurrence": "associative",
                           "hardware": "gpu: Some GPU", "state_size": n, "median_ms": t} for n, t in ms.items()])
    implied = findings.implied_speedups(bench, 3).set_index("configuration")
    # tau 0.05 ends at the paper's 161: 18k steps at full size, 162k at 161
    assert implied.loc["compressed, τ\u00a0=\u00a00.05", "implied speedup"] == \
        f"{180_000 * 40 / (18_000 * 40 + 162_000 * 30):.2f}x"
    assert implied.loc["from scratch, N\u00a0=\u00a057", "implied speedup"] == "2.00x"
    assert implied.loc["from scratch, N\u00a0=\u00a057", "paper speedup"] == "1.69x"


def test_variant_effects_pair_todays_defaults_with_a_variant_seed_by_seed(tmp_path):
    fake_table2(tmp_path, profile="paper", seeds=(8, 42, 123))
    for name in table_configs(2):  # the variant: 1.5 points lower on every seed
        for i, seed in enumerate((8, 42, 123)):
            write_fake_run(tmp_path, name, "paper", seed, test_acc=ACC[name] + 0.001 * i - 0.015, norm=None,
                           state_size=SIZE.get(name))
    view = results.table_view(2, tmp_path)
    effects = findings.variant_effects(view)
    assert len(effects) == 7 and effects["seeds compared"].unique().tolist() == ["3 pairs"]
    assert effects["difference, points [95 % interval]"].unique().tolist() == [f"+1.5 [+1.5,{NBSP}+1.5]"]
    assert "BatchNorm rule: batch" in effects.against.iloc[0]


def test_a_single_setting_page_shows_one_setting_per_profile_and_names_an_earlier_one(tmp_path):
    fake_table2(tmp_path, norm=None)  # an earlier setting with all seven configs
    write_fake_run(tmp_path, "smnist_baseline", "cpu", 42)  # today's defaults, one config only
    shown = results.shown_runs(results.book_runs(tmp_path), table_configs(2))
    assert shown.variant.unique().tolist() == ["model.norm=batch"] and len(shown) == 21
    assert "cpu profile: BatchNorm rule: batch (flax), earlier runs" in results.shown_note(shown)
    fake_table2(tmp_path, seeds=(1, 2, 3))
    shown = results.shown_runs(results.book_runs(tmp_path), table_configs(2))
    assert shown.variant.unique().tolist() == [""] and results.shown_note(shown) == ""


def test_selection_effects_compare_the_two_rules_on_the_same_runs(tmp_path):
    for i, seed in enumerate((8, 42, 123)):
        write_fake_run(tmp_path, "smnist_tau0.02", "paper", seed, test_acc=0.96 + 0.001 * i,
                       authors=(0.95 + 0.001 * i, 60000 if seed == 8 else 0))
    write_fake_run(tmp_path, "smnist_baseline", "paper", 8, test_acc=0.97)  # an older record: no authors' outcome
    row = findings.selection_effects(results.table_view(2, tmp_path)).iloc[0]
    assert row["configuration"].startswith("compressed") and row["stopped early"] == "1 of 3"
    assert (row["paper's rule %"], row["authors' rule %"]) == ("96.10", "95.10")
    assert row["difference, points [95 % interval]"] == f"-1.0 [-1.0,{NBSP}-1.0]"
    assert len(findings.selection_effects(results.table_view(2, tmp_path))) == 1
