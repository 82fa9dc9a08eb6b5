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
