"""Statistics over seeds: the sample std, the paper's top-3 mean, and Welch intervals checked against the formula."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from compressm import stats


def test_summary_uses_the_sample_std_and_the_top3_mean():
    values = [90.0, 92.0, 85.0, 97.0, 88.0]
    s = stats.summarize(values)
    assert s.n == 5 and s.mean == pytest.approx(np.mean(values))
    assert s.sd == pytest.approx(np.std(values, ddof=1))  # sample std, not the population one
    assert s.top3 == pytest.approx((97 + 92 + 90) / 3)


def test_with_three_seeds_or_fewer_the_top3_mean_is_the_mean_and_one_seed_has_no_std():
    assert stats.summarize([1.0, 2.0, 4.0]).top3 == pytest.approx(7 / 3)
    one = stats.summarize([0.5])
    assert one.mean == one.top3 == 0.5 and np.isnan(one.sd)
    with pytest.raises(ValueError):
        stats.summarize([])


def test_welch_interval_matches_the_welch_satterthwaite_formula():
    a, b = np.array([88.0, 85.9, 92.8]), np.array([81.2, 75.3, 79.4, 74.0])
    d = stats.welch_difference(a, b)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = scipy_stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    diff = a.mean() - b.mean()
    # two routes (scipy's ttest_ind and the formula) agree to rounding
    assert d.estimate == pytest.approx(diff, rel=1e-12)
    assert d.df == pytest.approx(df, rel=1e-10)
    assert (d.low, d.high) == pytest.approx((diff - half, diff + half), rel=1e-10)
    assert d.tested and (d.n_a, d.n_b) == (3, 4)


def test_one_seed_on_a_side_gives_no_interval_and_equal_constants_a_point():
    d = stats.welch_difference([0.9], [0.8, 0.7])
    assert not d.tested and d.estimate == pytest.approx(0.15)
    flat = stats.welch_difference([2.0, 2.0], [1.0, 1.0])
    assert flat.tested and flat.low == flat.high == 1.0


def test_sd_ratio_interval_is_the_f_interval_of_the_variance_ratio():
    a, b = np.array([20.0, 240.0, 100.0]), np.array([190.0, 195.0, 188.0])
    r = stats.sd_ratio(a, b)
    ratio = a.var(ddof=1) / b.var(ddof=1)
    f = scipy_stats.f(2, 2)
    assert r.estimate ** 2 == pytest.approx(ratio)
    assert (r.low ** 2, r.high ** 2) == pytest.approx((ratio / f.ppf(0.975), ratio / f.ppf(0.025)))
    assert r.tested and r.low > 1  # a spread this much larger is resolved even with three seeds a side
    assert not stats.sd_ratio([1.0], b).tested and not stats.sd_ratio([3.0, 3.0], [2.0, 2.0]).tested
    assert stats.sd_ratio([1.0, 5.0], [2.0, 2.0]).low == np.inf


def test_paired_interval_matches_scipy_on_the_shared_seeds():
    a = {8: 96.1, 42: 95.0, 123: 97.2, 7: 50.0}
    b = {8: 95.0, 42: 94.6, 123: 95.9, 9: 10.0}  # seeds 7 and 9 have no partner
    d = stats.paired_difference(a, b)
    diffs = np.array([1.1, 0.4, 1.3])
    ci = scipy_stats.ttest_rel([96.1, 95.0, 97.2], [95.0, 94.6, 95.9]).confidence_interval(0.95)
    assert d.paired and (d.n_a, d.n_b, d.df) == (3, 3, 2)
    assert d.estimate == pytest.approx(diffs.mean())
    assert (d.low, d.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert not stats.paired_difference({1: 1.0, 2: 2.0}, {2: 1.0, 3: 0.0}).tested  # one shared seed


def test_authors_aggregate_is_the_best_three_and_the_population_std():
    values = [97.1, 96.8, 95.0, 97.3, 90.2]
    top3, sd = stats.authors_aggregate(values)
    assert top3 == pytest.approx((97.3 + 97.1 + 96.8) / 3) and sd == pytest.approx(np.std(values, ddof=0))


def test_seeds_to_decide_follows_the_normal_power_formula():
    paired = stats.Difference(-0.5, -1.9, 0.9, 2.0, 3, 3, True)
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    assert stats.seeds_to_decide(paired, -1.4, 0.6) == int(np.ceil((z * 0.6 / 0.9) ** 2))
    welch = paired._replace(paired=False)
    assert stats.seeds_to_decide(welch, -1.4, 0.6) == int(np.ceil(2 * (z * 0.6 / 0.9) ** 2))
    assert stats.seeds_to_decide(paired, -0.5, 0.6) is None and stats.seeds_to_decide(paired, 0.0, 0.0) is None


def test_a_collapsed_seed_is_flagged_by_the_robust_sd_and_a_plain_sd_could_not():
    values = [96.9, 97.0, 96.8, 97.1, 96.7, 96.9, 97.2, 96.8, 97.0, 86.7]
    flags = stats.collapsed(values)
    assert flags.tolist() == [False] * 9 + [True]
    z = (np.mean(values) - 86.7) / np.std(values, ddof=1)
    assert z < 3  # 3 plain sds from the mean: never reached by one of 10 seeds (at most 9 / sqrt(10) = 2.85)
    assert not stats.collapsed([96.0, 96.5, 95.5, 96.2, 95.8]).any()
