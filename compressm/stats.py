"""Statistics over seeds, as the book reports them.

Over the seeds of one configuration: the mean of all seeds with the SAMPLE standard deviation (ddof = 1, the
unbiased variance), and, beside them, the paper's own aggregate, the mean of the top three seeds (which equals the
mean when there are three seeds or fewer, and can only rise as seeds are added).

Between two configurations (compressed against from scratch, compressed against the full model): the difference
of their means with a Welch t interval (unequal variances, Welch-Satterthwaite degrees of freedom; Welch 1947).
With three seeds a side the interval is wide: that is the honest size of what three seeds can tell.
"""

from typing import NamedTuple

import numpy as np
from scipy import stats as _scipy_stats

LEVEL = 0.95  # confidence level of every interval in the book


class SeedSummary(NamedTuple):
    """One configuration over its seeds."""

    n: int
    mean: float
    sd: float  # sample standard deviation (ddof = 1); nan for one seed
    top3: float  # mean of the three best seeds (the paper's aggregate); the mean itself for n <= 3


class Difference(NamedTuple):
    """mean(a) - mean(b) with its Welch interval; low = high = nan when a side has fewer than two seeds."""

    estimate: float
    low: float
    high: float
    df: float  # Welch-Satterthwaite degrees of freedom (nan where undefined)
    n_a: int
    n_b: int

    @property
    def tested(self) -> bool:
        """Whether the interval exists (two or more seeds on each side)."""
        return bool(np.isfinite(self.low) and np.isfinite(self.high))


def summarize(values) -> SeedSummary:
    """Mean, sample std (ddof = 1) and top-3 mean of a configuration's per-seed values (1-D, any length >= 1)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"summarize needs a non-empty 1-D sequence of per-seed values, got shape {x.shape}")
    sd = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return SeedSummary(int(x.size), float(x.mean()), sd, float(np.sort(x)[::-1][:3].mean()))


def welch_difference(a, b, level: float = LEVEL) -> Difference:
    """mean(a) - mean(b) and its Welch t interval at `level` (two-sided), from per-seed values a, b (1-D).

    Where both samples have zero variance the interval collapses to the point estimate (df is then nan).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    estimate = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Difference(estimate, float("nan"), float("nan"), float("nan"), int(a.size), int(b.size))
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0:
        return Difference(estimate, estimate, estimate, float("nan"), int(a.size), int(b.size))
    result = _scipy_stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(confidence_level=level)
    return Difference(estimate, float(interval.low), float(interval.high), float(result.df), int(a.size),
                      int(b.size))
